#include "ltk/serve/server.h"

#include <c10/core/InferenceMode.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <future>
#include <optional>
#include <set>

#include "ltk/core/log.h"
#include "ltk/core/version.h"
#include "ltk/data/utf8.h"

namespace ltk::serve {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

/// One request's texts on their way through the batcher.
struct Server::Job {
  std::shared_ptr<const Servable> model;  ///< the model current when the request arrived
  TextDataset data;                       ///< its valid texts, encoded
  std::vector<int64_t> top_k;             ///< per sample
  std::vector<ojson> answers;             ///< per sample, filled by the model thread
  int64_t taken = 0;                      ///< samples handed to a batch (queue lock)
  int64_t finished = 0;                   ///< samples answered (model thread only)
  std::string error;                      ///< the model failed on a batch with this job
  Clock::time_point arrived;
  std::promise<void> done;
};

namespace {

// An invalid UTF-8 byte in a request body becomes this noncharacter (U+FDD0, "for internal use")
// so that the JSON still parses and the text that held it is answered with an error in place.
const std::string kInvalidByte = "\xEF\xB7\x90";

std::string with_invalid_bytes_marked(const std::string& body) {
  std::string out;
  std::string_view rest(body);
  for (;;) {
    size_t bad = utf8::find_invalid(rest);
    if (bad == std::string::npos) break;
    out.append(rest.substr(0, bad)).append(kInvalidByte);
    rest.remove_prefix(bad + 1);
  }
  out.append(rest);
  return out;
}

HttpResponse json_response(int status, const ojson& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpResponse error_response(int status, const std::string& message) { return json_response(status, {{"error", message}}); }

/// A request field that is wrong: the status and the message naming the field.
struct FieldError {
  int status;
  std::string message;
};

// JSON nests at most this deep in a request: copying, printing and walking a value recurse, so a
// small body of nested brackets must not reach them.
constexpr int kMaxDepth = 32;

// The deepest nesting of arrays and objects in `body`, outside strings (stops counting past kMaxDepth).
int nesting_depth(const std::string& body) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size() && deepest <= kMaxDepth; ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

json parse_body(const std::string& body, bool& marked) {
  if (nesting_depth(body) > kMaxDepth)
    throw FieldError{400, "invalid JSON: nested deeper than " + std::to_string(kMaxDepth) + " levels"};
  marked = utf8::find_invalid(body) != std::string::npos;
  try {
    return json::parse(marked ? with_invalid_bytes_marked(body) : body);
  } catch (const json::exception& e) {  // parse errors, and numbers out of range (1e999)
    std::string what = e.what();
    size_t tag = what.find("] ");
    throw FieldError{400, "invalid JSON: " + (tag == std::string::npos ? what : what.substr(tag + 2))};
  }
}

// A value for an error message, cut short.
std::string shown(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

const char* type_name(const json& j) { return j.type_name(); }

/// The text of a request field, as an input: an invalid byte (marked, when the body had one) is an
/// error of that text.
TextInput input_of(const std::string& text, const std::string& pair, bool pairs, bool marked) {
  size_t bad = marked ? text.find(kInvalidByte) : std::string::npos;
  if (bad != std::string::npos) return TextInput{"", "", "invalid UTF-8 at byte " + std::to_string(bad)};
  if (pairs && marked) {
    size_t bad_pair = pair.find(kInvalidByte);
    if (bad_pair != std::string::npos)
      return TextInput{"", "", "invalid UTF-8 at byte " + std::to_string(bad_pair) + " (the second text of the pair)"};
  }
  return make_input(text, pair, pairs);
}

bool is_loopback(const std::string& addr) {
  return addr == "::1" || addr.rfind("127.", 0) == 0 || addr.rfind("::ffff:127.", 0) == 0;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

Server::Server(ServeOptions options)
    : options_(std::move(options)),
      metrics_(options_.max_batch),
      http_(options_.http, [this](const HttpRequest& r) { return handle(r); },
            [this](const std::string& path, int status) { metrics_.response(path, status); },
            [this] { return std::vector<std::pair<std::string, std::string>>{{"X-Model-Version", std::to_string(current()->version)}}; }) {
  if (options_.max_batch < 1) throw UsageError("--max-batch must be >= 1");
  if (options_.max_delay_ms < 0) throw UsageError("--max-delay-ms must be >= 0");
  if (options_.max_queue < 1) throw UsageError("--max-queue must be >= 1");
  name_ = options_.model_name;
  if (name_.empty()) name_ = std::filesystem::path(options_.run_dir).lexically_normal().filename().string();
  if (name_.empty() || name_ == "." || name_ == "..")
    name_ = std::filesystem::weakly_canonical(options_.run_dir).filename().string();
  if (name_.find('/') != std::string::npos) throw UsageError("--model-name must not contain '/'");
  auto loaded = std::make_shared<Servable>(Servable{Predictor(load_run(options_.run_dir, options_.checkpoint, options_.device)),
                                                    next_version_++, options_.run_dir, "", options_.checkpoint});
  loaded->checkpoint = loaded->predictor.run().checkpoint_path;
  model_ = loaded;
  metrics_.model(loaded->version, name_, loaded->run_dir, loaded->checkpoint);
}

Server::~Server() {
  shutdown();
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (batcher_.joinable()) batcher_.join();
}

void Server::bind() {
  http_.bind();
  if (!batcher_.joinable()) batcher_ = std::thread([this] { batch_loop(); });
}

void Server::run() {
  http_.run();
  // Every connection thread has returned, so every accepted request has been answered; the
  // model thread stops once the queue is empty (it is, then).
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (batcher_.joinable()) batcher_.join();
}

void Server::shutdown() {
  draining_ = true;
  hold(false);  // a held model thread would keep the requests it holds, and run(), waiting
  http_.stop();
}

std::shared_ptr<const Servable> Server::current() const {
  std::lock_guard<std::mutex> lock(model_mutex_);
  return model_;
}

ReloadResult Server::reload(const std::string& run_dir, const std::string& checkpoint) {
  std::lock_guard<std::mutex> one_at_a_time(reload_mutex_);
  const auto t0 = Clock::now();
  auto old = current();
  ReloadResult r;
  const std::string dir = run_dir.empty() ? old->run_dir : run_dir;
  const std::string which = checkpoint.empty() ? (run_dir.empty() ? old->checkpoint_spec : "best") : checkpoint;
  try {
    auto loaded = std::make_shared<Servable>(
        Servable{Predictor(load_run(dir, which, options_.device)), next_version_, dir, "", which});
    loaded->checkpoint = loaded->predictor.run().checkpoint_path;
    ++next_version_;
    {
      std::lock_guard<std::mutex> lock(model_mutex_);
      model_ = loaded;
    }
    r.ok = true;
    r.version = loaded->version;
    metrics_.model(loaded->version, name_, loaded->run_dir, loaded->checkpoint);
    log::info("reload: serving version {} ({}, {})", loaded->version, dir, loaded->checkpoint);
  } catch (const std::exception& e) {
    r.version = old->version;
    r.error = e.what();
    log::warn("reload of {} ({}) failed, still serving version {}: {}", dir, which, old->version, r.error);
  }
  metrics_.reload(r.ok);
  r.seconds = seconds_since(t0);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Dynamic batching

void Server::hold(bool on) {
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    held_ = on;
  }
  queue_cv_.notify_all();
}

int64_t Server::queued_texts() const {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  return queued_texts_;
}

Server::Arrival::Arrival(Server& server) : server_(server) {
  std::lock_guard<std::mutex> lock(server_.queue_mutex_);
  ++server_.arriving_;
}

Server::Arrival::~Arrival() {
  if (!counted_) return;
  {
    std::lock_guard<std::mutex> lock(server_.queue_mutex_);
    --server_.arriving_;
  }
  server_.queue_cv_.notify_all();
}

Server::Submit Server::run_job(const std::shared_ptr<Job>& job, Arrival& arrival, std::string& error) {
  const int64_t n = job->data.size();
  job->answers.resize(static_cast<size_t>(n));
  auto done = job->done.get_future();
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    --arriving_;  // queued (or refused) now, under the lock the batcher's wait reads it with
    arrival.counted_ = false;
    if (stopping_ || queued_texts_ + n > options_.max_queue) {
      queue_cv_.notify_all();  // one fewer on its way: the batcher need not wait for it
      return stopping_ ? Submit::stopping : Submit::full;
    }
    job->arrived = Clock::now();
    queue_.push_back(job);
    queued_texts_ += n;
    metrics_.queue_depth(queued_texts_);
  }
  queue_cv_.notify_all();
  done.wait();
  if (!job->error.empty()) {
    error = job->error;
    return Submit::failed;
  }
  return Submit::answered;
}

std::optional<HttpResponse> Server::answer_job(const std::shared_ptr<Job>& job, Arrival& arrival) {
  std::string error;
  switch (run_job(job, arrival, error)) {
    case Submit::answered: return std::nullopt;
    case Submit::full: {
      metrics_.texts(0, job->data.size());
      auto r = error_response(503, "the server is busy: its queue holds --max-queue " + std::to_string(options_.max_queue) +
                                       " texts; retry later");
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    case Submit::stopping: return error_response(503, "the server is shutting down");
    case Submit::failed: break;
  }
  return error_response(500, "the model failed: " + error);
}

void Server::batch_loop() {
  const auto max_delay = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(options_.max_delay_ms));
  struct Part {
    std::shared_ptr<Job> job;
    int64_t start, count;
  };
  for (;;) {
    std::vector<Part> parts;
    std::shared_ptr<const Servable> model;
    int64_t n = 0;
    {
      std::unique_lock<std::mutex> lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return (!queue_.empty() && (!held_ || stopping_)) || (stopping_ && queue_.empty()); });
      if (queue_.empty()) return;  // stopping, and nothing left to answer
      // Wait for more texts until the batch is full, the first text has waited max_delay, or no
      // other request is on its way (so that a lone client never waits for nothing).
      const auto deadline = queue_.front()->arrived + max_delay;
      queue_cv_.wait_until(lock, deadline,
                           [&] { return queued_texts_ >= options_.max_batch || arriving_ == 0 || stopping_; });
      model = queue_.front()->model;
      while (!queue_.empty() && n < options_.max_batch) {
        auto& job = queue_.front();
        if (job->model != model) break;  // a request that arrived after a reload: the next batch
        const int64_t take = std::min(job->data.size() - job->taken, options_.max_batch - n);
        parts.push_back(Part{job, job->taken, take});
        job->taken += take;
        n += take;
        if (job->taken == job->data.size()) queue_.pop_front();
      }
      queued_texts_ -= n;
      metrics_.queue_depth(queued_texts_);
    }
    const auto t0 = Clock::now();
    std::string error;
    try {
      TextDataset batch;
      std::vector<int64_t> top_k;
      top_k.reserve(static_cast<size_t>(n));
      for (const auto& p : parts)
        for (int64_t i = p.start; i < p.start + p.count; ++i) {
          append_sample(batch, p.job->data, i);
          top_k.push_back(p.job->top_k[static_cast<size_t>(i)]);
        }
      c10::InferenceMode inference;
      auto answers = model->predictor.answer(batch, top_k, options_.max_batch);
      size_t row = 0;
      for (const auto& p : parts)
        for (int64_t i = p.start; i < p.start + p.count; ++i) p.job->answers[static_cast<size_t>(i)] = std::move(answers[row++]);
    } catch (const std::exception& e) {
      error = e.what();
      log::error("a batch of {} texts failed: {}", n, error);
    }
    metrics_.batch(n, seconds_since(t0));
    metrics_.texts(error.empty() ? n : 0, 0);
    for (const auto& p : parts) {
      if (!error.empty()) p.job->error = error;
      p.job->finished += p.count;
      if (p.job->finished == p.job->data.size()) p.job->done.set_value();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Endpoints

HttpResponse Server::handle(const HttpRequest& request) {
  const auto t0 = Clock::now();
  auto model = current();
  HttpResponse response;
  const std::string& path = request.path;
  auto only = [&](const char* method) {
    if (request.method == method) return true;
    response = error_response(405, request.method + " " + path + ": use " + method);
    response.headers.emplace_back("Allow", method);
    return false;
  };
  const std::string v2_model = "/v2/models/" + name_;
  try {
    if (path == "/v1/predict") {
      if (only("POST")) response = predict_v1(request, model);
    } else if (path == "/v1/model") {
      if (only("GET")) {
        const auto& run = model->predictor.run();
        ojson j{{"name", name_}, {"version", model->version}, {"run", model->run_dir},
                {"checkpoint", model->checkpoint}, {"task", run.config.task.type},
                {"model", run.config.model.type}, {"pairs", model->predictor.pairs()}};
        if (model->predictor.pairs()) j["pair_field"] = model->predictor.pair_field();
        j["labels"] = run.labels.names();
        j["max_batch"] = options_.max_batch;
        response = json_response(200, j);
      }
    } else if (path == "/v2/health/live") {
      if (only("GET")) response = json_response(200, {{"live", true}});
    } else if (path == "/v2/health/ready") {
      if (only("GET")) response = json_response(draining_ ? 503 : 200, {{"ready", !draining_}});
    } else if (path == "/v2") {
      if (only("GET"))
        response = json_response(200, {{"name", "ltk"}, {"version", ltk::version()}, {"extensions", json::array()}});
    } else if (path == "/metrics") {
      if (only("GET")) {
        response.body = metrics_.render();
        response.content_type = "text/plain; version=0.0.4; charset=utf-8";
      }
    } else if (path == "/admin/reload") {
      if (only("POST")) response = admin_reload(request);
    } else if (path.rfind("/v2/models/", 0) == 0) {
      // /v2/models/NAME[/versions/V][/ready|/infer]
      std::string rest = path.substr(11);
      std::string name = rest.substr(0, rest.find('/'));
      std::string tail = rest.substr(name.size());
      if (tail.rfind("/versions/", 0) == 0) {
        size_t next = tail.find('/', 10);
        std::string version = tail.substr(10, next == std::string::npos ? std::string::npos : next - 10);
        if (version != std::to_string(model->version))
          throw FieldError{404, "model '" + name + "' has no version '" + version + "' (serving version " +
                                    std::to_string(model->version) + ")"};
        tail = next == std::string::npos ? "" : tail.substr(next);
      }
      if (name != name_) {
        response = error_response(404, "unknown model '" + name + "' (this server serves '" + name_ + "')");
      } else if (tail.empty()) {
        if (only("GET")) response = model_v2(model);
      } else if (tail == "/ready") {
        if (only("GET")) response = json_response(draining_ ? 503 : 200, {{"name", name_}, {"ready", !draining_}});
      } else if (tail == "/infer") {
        if (only("POST")) response = infer_v2(request, model);
      } else {
        response = error_response(404, "no such endpoint: " + path);
      }
    } else {
      response = error_response(404, "no such endpoint: " + path +
                                         " (POST /v1/predict, GET /v1/model, /v2/..., GET /metrics, POST /admin/reload)");
    }
  } catch (const FieldError& e) {
    response = error_response(e.status, e.message);
  } catch (const std::exception& e) {
    log::error("{} {}: {}", request.method, path, e.what());
    response = error_response(500, std::string("internal error: ") + e.what());
  }
  bool has_version = false;
  for (const auto& h : response.headers) has_version |= h.first == "X-Model-Version";
  if (!has_version) response.headers.emplace_back("X-Model-Version", std::to_string(current()->version));
  metrics_.latency(path, seconds_since(t0));
  return response;
}

HttpResponse Server::predict_v1(const HttpRequest& request, const std::shared_ptr<const Servable>& model) {
  Arrival arrival(*this);
  const Predictor& predictor = model->predictor;
  bool marked = false;
  const json body = parse_body(request.body, marked);
  if (!body.is_object())
    throw FieldError{422, std::string("the body must be a JSON object with \"texts\" or \"instances\", got ") + type_name(body)};
  for (const auto& [key, value] : body.items())
    if (key != "texts" && key != "instances" && key != "top_k")
      throw FieldError{422, "unknown field '" + key + "' (known: texts, instances, top_k)"};
  if (body.contains("texts") == body.contains("instances"))
    throw FieldError{422, "give either \"texts\": [text, ...] or \"instances\": [{\"text\": ..., \"id\": ...}, ...]"};
  int64_t top_k = 0;
  if (body.contains("top_k")) {
    const auto& k = body["top_k"];
    if (!k.is_number_integer() || k.get<int64_t>() < 0)
      throw FieldError{422, std::string("top_k: expected an integer >= 0, got ") + (k.is_number() ? shown(k) : type_name(k))};
    top_k = k.get<int64_t>();
  }
  std::vector<TextInput> inputs;
  std::vector<json> ids;
  if (body.contains("texts")) {
    const auto& texts = body["texts"];
    if (!texts.is_array()) throw FieldError{422, std::string("texts: expected an array of strings, got ") + type_name(texts)};
    if (predictor.pairs())
      throw FieldError{422, "this model reads sentence pairs: send \"instances\": [{\"text\": ..., \"" +
                                predictor.pair_field() + "\": ...}]"};
    for (size_t i = 0; i < texts.size(); ++i) {
      if (!texts[i].is_string())
        throw FieldError{422, "texts[" + std::to_string(i) + "]: expected a string, got " + type_name(texts[i])};
      inputs.push_back(input_of(texts[i].get_ref<const std::string&>(), "", false, marked));
    }
  } else {
    const auto& instances = body["instances"];
    if (!instances.is_array())
      throw FieldError{422, std::string("instances: expected an array of objects, got ") + type_name(instances)};
    for (size_t i = 0; i < instances.size(); ++i) {
      const auto& in = instances[i];
      const std::string where = "instances[" + std::to_string(i) + "]";
      if (!in.is_object()) throw FieldError{422, where + ": expected an object, got " + type_name(in)};
      if (!in.contains("text") || !in["text"].is_string())
        throw FieldError{422, where + ".text: expected a string, got " + (in.contains("text") ? type_name(in["text"]) : "nothing")};
      std::string pair;
      if (predictor.pairs()) {
        const std::string& f = predictor.pair_field();
        if (!in.contains(f) || !in[f].is_string())
          throw FieldError{422, where + "." + f + ": expected a string (this model reads sentence pairs), got " +
                                    (in.contains(f) ? type_name(in[f]) : "nothing")};
        pair = in[f].get<std::string>();
      }
      ids.push_back(in.contains("id") ? in["id"] : json());
      inputs.push_back(input_of(in["text"].get_ref<const std::string&>(), pair, predictor.pairs(), marked));
    }
  }
  // Tokenised here, on the connection's thread; the model thread only batches and runs the model.
  auto job = std::make_shared<Job>();
  job->model = model;
  std::vector<const TextInput*> valid;
  for (const auto& in : inputs)
    if (in.error.empty()) valid.push_back(&in);
  if (static_cast<int64_t>(valid.size()) > options_.max_queue)
    throw FieldError{413, std::to_string(valid.size()) + " texts in one request: more than the server queues (--max-queue " +
                              std::to_string(options_.max_queue) + "); split the request"};
  job->data = predictor.encode(valid);
  job->top_k.assign(valid.size(), top_k);
  if (!valid.empty())
    if (auto refused = answer_job(job, arrival)) return *refused;
  ojson predictions = ojson::array();
  size_t row = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ojson j;
    if (!ids.empty() && !ids[i].is_null()) j["id"] = ids[i];
    if (!inputs[i].error.empty()) {
      j["error"] = inputs[i].error;
    } else {
      for (auto& [k, v] : job->answers[row].items()) j[k] = std::move(v);
      ++row;
    }
    predictions.push_back(std::move(j));
  }
  auto r = json_response(200, ojson{{"model_version", model->version}, {"predictions", std::move(predictions)}});
  r.headers.emplace_back("X-Model-Version", std::to_string(model->version));
  return r;
}

HttpResponse Server::model_v2(const std::shared_ptr<const Servable>& model) const {
  const auto& run = model->predictor.run();
  ojson inputs = ojson::array({{{"name", "text"}, {"datatype", "BYTES"}, {"shape", {-1}}}});
  if (model->predictor.pairs())
    inputs.push_back({{"name", model->predictor.pair_field()}, {"datatype", "BYTES"}, {"shape", {-1}}});
  ojson outputs = ojson::array();
  const std::string& task = run.config.task.type;
  const int64_t C = run.labels.size();
  if (task == "multiclass" || task == "binary") {
    outputs.push_back({{"name", "label"}, {"datatype", "BYTES"}, {"shape", {-1}}});
    outputs.push_back({{"name", "score"}, {"datatype", "FP32"}, {"shape", {-1}}});
    outputs.push_back({{"name", "scores"}, {"datatype", "FP32"}, {"shape", {-1, C}}});
  } else if (task == "multilabel") {
    outputs.push_back({{"name", "labels"}, {"datatype", "BYTES"}, {"shape", {-1}}});
    outputs.push_back({{"name", "scores"}, {"datatype", "FP32"}, {"shape", {-1, C}}});
  } else if (task == "regression") {
    outputs.push_back({{"name", "value"}, {"datatype", "FP32"}, {"shape", {-1}}});
  }
  ojson j{{"name", name_}, {"versions", {std::to_string(model->version)}}, {"platform", "ltk_libtorch"},
          {"inputs", inputs}, {"outputs", outputs}};
  j["parameters"] = {{"task", task}, {"labels", run.labels.names()}, {"run", model->run_dir}, {"checkpoint", model->checkpoint}};
  return json_response(200, j);
}

HttpResponse Server::infer_v2(const HttpRequest& request, const std::shared_ptr<const Servable>& model) {
  Arrival arrival(*this);
  const Predictor& predictor = model->predictor;
  if (predictor.masked_lm())
    throw FieldError{400, "a masked-LM model answers on POST /v1/predict (its answers are not tensors)"};
  bool marked = false;
  json body;
  try {
    body = parse_body(request.body, marked);
  } catch (const FieldError& e) {
    throw FieldError{400, e.message};  // the protocol answers every bad request with 400
  }
  if (!body.is_object() || !body.contains("inputs") || !body["inputs"].is_array())
    throw FieldError{400, "inputs: expected an array of input tensors ({\"name\", \"shape\", \"datatype\": \"BYTES\", \"data\"})"};
  // The texts of an input tensor, flattened (data may be nested by its shape).
  auto texts_of = [&](const json& tensor, const std::string& where) {
    if (!tensor.is_object()) throw FieldError{400, where + ": expected an object"};
    if (!tensor.contains("datatype") || tensor["datatype"] != "BYTES")
      throw FieldError{400, where + ".datatype: expected \"BYTES\" (texts), got " +
                                (tensor.contains("datatype") ? shown(tensor["datatype"]) : "nothing")};
    if (!tensor.contains("data") || !tensor["data"].is_array()) throw FieldError{400, where + ".data: expected an array"};
    std::vector<std::string> out;
    std::function<void(const json&)> walk = [&](const json& j) {
      if (j.is_array()) {
        for (const auto& e : j) walk(e);
      } else if (j.is_string()) {
        out.push_back(j.get<std::string>());
      } else {
        throw FieldError{400, where + ".data: expected strings, got " + std::string(type_name(j))};
      }
    };
    walk(tensor["data"]);
    if (tensor.contains("shape")) {
      const auto& shape = tensor["shape"];
      int64_t n = 1;
      bool ok = shape.is_array() && !shape.empty();
      for (const auto& d : shape) {
        ok = ok && d.is_number_integer() && d.get<int64_t>() >= 0 && d.get<int64_t>() <= (int64_t{1} << 30);
        if (ok) n = std::min<int64_t>(n * d.get<int64_t>(), int64_t{1} << 40);  // no overflow
      }
      if (!ok || n != static_cast<int64_t>(out.size()))
        throw FieldError{400, where + ".shape " + shown(shape) + " does not hold the " + std::to_string(out.size()) +
                                  " strings of its data"};
    }
    return out;
  };
  const auto& in = body["inputs"];
  const std::string pair_name = predictor.pair_field();
  std::vector<std::string> texts, pairs;
  bool have_text = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const std::string where = "inputs[" + std::to_string(i) + "]";
    std::string name = in[i].is_object() && in[i].contains("name") && in[i]["name"].is_string() ? in[i]["name"].get<std::string>() : "";
    if (predictor.pairs() && name == pair_name) {
      pairs = texts_of(in[i], where);
    } else if (!have_text && (name == "text" || in.size() == 1)) {
      texts = texts_of(in[i], where);
      have_text = true;
    } else {
      throw FieldError{400, where + ": unknown input '" + name + "' (this model takes \"text\"" +
                                (predictor.pairs() ? " and \"" + pair_name + "\"" : std::string()) + ")"};
    }
  }
  if (!have_text) throw FieldError{400, "inputs: no input named \"text\""};
  if (predictor.pairs() && pairs.size() != texts.size())
    throw FieldError{400, "inputs: \"" + pair_name + "\" must hold one text per text (" + std::to_string(texts.size()) + ")"};
  std::vector<TextInput> inputs;
  for (size_t i = 0; i < texts.size(); ++i) {
    inputs.push_back(input_of(texts[i], predictor.pairs() ? pairs[i] : "", predictor.pairs(), marked));
    if (!inputs.back().error.empty())
      throw FieldError{400, "inputs[text].data[" + std::to_string(i) + "]: " + inputs.back().error};
  }
  if (static_cast<int64_t>(inputs.size()) > options_.max_queue)
    throw FieldError{413, std::to_string(inputs.size()) + " texts in one request: more than --max-queue " +
                              std::to_string(options_.max_queue)};
  auto job = std::make_shared<Job>();
  job->model = model;
  std::vector<const TextInput*> all;
  for (const auto& t : inputs) all.push_back(&t);
  job->data = predictor.encode(all);
  job->top_k.assign(all.size(), 0);
  if (!all.empty())
    if (auto refused = answer_job(job, arrival)) return *refused;
  // Each field of the answers becomes an output tensor: strings BYTES, numbers FP32, a list of
  // labels BYTES (joined by ","), the scores object an FP32 [N, C] tensor.
  const int64_t N = static_cast<int64_t>(job->answers.size());
  std::set<std::string> wanted;
  if (body.contains("outputs") && body["outputs"].is_array())
    for (const auto& o : body["outputs"])
      if (o.is_object() && o.contains("name") && o["name"].is_string()) wanted.insert(o["name"].get<std::string>());
  ojson outputs = ojson::array();
  std::set<std::string> available;
  if (N > 0) {
    for (auto& [key, first] : job->answers[0].items()) {
      available.insert(key);
      if (!wanted.empty() && !wanted.count(key)) continue;
      ojson tensor{{"name", key}};
      ojson data = ojson::array();
      if (first.is_object()) {
        const int64_t C = static_cast<int64_t>(first.size());
        ojson names = ojson::array();
        for (auto& [label, v] : first.items()) names.push_back(label);
        for (const auto& a : job->answers)
          for (auto& [label, v] : a.at(key).items()) data.push_back(v);
        tensor["datatype"] = "FP32";
        tensor["shape"] = {N, C};
        tensor["parameters"] = {{"labels", names}};
      } else if (first.is_array()) {
        for (const auto& a : job->answers) {
          std::string joined;
          for (const auto& l : a.at(key)) joined += (joined.empty() ? "" : ",") + l.get<std::string>();
          data.push_back(joined);
        }
        tensor["datatype"] = "BYTES";
        tensor["shape"] = {N};
      } else {
        for (const auto& a : job->answers) data.push_back(a.at(key));
        tensor["datatype"] = first.is_string() ? "BYTES" : "FP32";
        tensor["shape"] = {N};
      }
      tensor["data"] = std::move(data);
      outputs.push_back(std::move(tensor));
    }
  }
  for (const auto& w : wanted)
    if (N > 0 && !available.count(w)) {
      std::string names;
      for (const auto& a : available) names += (names.empty() ? "" : ", ") + a;
      throw FieldError{400, "outputs: unknown output '" + w + "' (this model has: " + names + ")"};
    }
  ojson j{{"model_name", name_}, {"model_version", std::to_string(model->version)}};
  if (body.contains("id")) j["id"] = body["id"];
  j["outputs"] = std::move(outputs);
  auto r = json_response(200, j);
  r.headers.emplace_back("X-Model-Version", std::to_string(model->version));
  return r;
}

HttpResponse Server::admin_reload(const HttpRequest& request) {
  if (!options_.admin_token.empty()) {
    if (request.header("Authorization") != "Bearer " + options_.admin_token)
      return error_response(401, "reload needs the header \"Authorization: Bearer <the server's --admin-token>\"");
  } else if (!is_loopback(request.remote_addr)) {
    return error_response(403, "reload is only accepted from loopback unless the server has an --admin-token");
  }
  std::string run_dir, checkpoint;
  if (!request.body.empty()) {
    bool marked = false;
    json body = parse_body(request.body, marked);
    if (!body.is_object()) throw FieldError{422, "the body must be a JSON object ({\"run\": DIR, \"checkpoint\": C})"};
    for (const auto& [key, value] : body.items()) {
      if (key != "run" && key != "checkpoint")
        throw FieldError{422, "unknown field '" + key + "' (known: run, checkpoint)"};
      if (!value.is_string()) throw FieldError{422, key + ": expected a string, got " + type_name(value)};
    }
    run_dir = body.value("run", "");
    checkpoint = body.value("checkpoint", "");
  }
  ReloadResult r = reload(run_dir, checkpoint);
  auto model = current();
  ojson j{{"ok", r.ok}, {"version", r.version}, {"run", model->run_dir}, {"checkpoint", model->checkpoint},
          {"seconds", std::round(r.seconds * 1000) / 1000}};
  if (!r.ok) j["error"] = "reload failed, still serving version " + std::to_string(r.version) + ": " + r.error;
  return json_response(r.ok ? 200 : 500, j);
}

}  // namespace ltk::serve
