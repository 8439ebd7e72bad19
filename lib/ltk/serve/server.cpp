// ltk-serve's server: its lifecycle, the model it serves and its reloads, and the routing of
// requests to the endpoints. What a body means is in requests.cpp (v1) and kserve.cpp (KServe v2);
// the batching of texts in batcher.cpp.
#include "ltk/serve/server.h"

#include <dlfcn.h>
#include <malloc.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>

#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/core/version.h"
#include "ltk/io/run.h"
#include "ltk/serve/kserve.h"
#include "ltk/serve/requests.h"

namespace ltk::serve {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

bool is_loopback(const std::string& addr) {
  return addr == "::1" || addr.rfind("127.", 0) == 0 || addr.rfind("::ffff:127.", 0) == 0;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

HttpResponse with_version(HttpResponse r, int64_t version) {
  r.headers.emplace_back("X-Model-Version", std::to_string(version));
  return r;
}

/// Hands the allocator's free pages back to the system: tcmalloc's when ltk-serve runs on it
/// (apps/CMakeLists.txt, looked up at run time), glibc's otherwise.
void release_free_memory() {
  static auto* tcmalloc_release =
      reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"));
  if (tcmalloc_release) tcmalloc_release();
  malloc_trim(0);
}

}  // namespace

Server::Server(ServeOptions options)
    : options_(std::move(options)),
      metrics_(options_.max_batch),
      http_(
          options_.http, [this](const HttpRequest& r) { return handle(r); },
          [this](const std::string& path, int status) { metrics_.response(path, status); },
          [this] {
            return std::vector<std::pair<std::string, std::string>>{
                {"X-Model-Version", std::to_string(current()->version)}};
          }),
      batcher_(BatcherOptions{options_.max_batch, options_.max_delay_ms, options_.max_queue, options_.workers},
               &metrics_) {
  if (options_.max_batch < 1) throw UsageError("--max-batch must be >= 1");
  if (options_.max_delay_ms < 0) throw UsageError("--max-delay-ms must be >= 0");
  if (options_.max_queue < 1) throw UsageError("--max-queue must be >= 1");
  if (options_.workers < 1) throw UsageError("--workers must be >= 1");
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
  batcher_.stop();
}

void Server::bind() {
  http_.bind();
  batcher_.start();
}

void Server::run() {
  http_.run();
  // Every handler thread has returned, so every request that arrived has been answered; the
  // model thread stops once the queue is empty (it is, then).
  batcher_.stop();
}

void Server::shutdown() {
  draining_ = true;
  batcher_.hold(false);  // a held model thread would keep the requests it holds, and run(), waiting
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
  // The old model is freed here, or by the last request it answers; either way the allocator
  // keeps the pages (glibc: in the arena of the thread that loaded it, one of many handler
  // threads): handing them back keeps RSS flat over a reload every few seconds (+70 MB a reload
  // without it, soak_serve.sh).
  old.reset();
  release_free_memory();
  r.seconds = seconds_since(t0);
  return r;
}

void Server::hold(bool on) {
  batcher_.hold(on);
}

int64_t Server::queued_texts() const {
  return batcher_.queued_texts();
}

std::optional<HttpResponse> Server::answer(const std::shared_ptr<const Servable>& model,
                                           const std::vector<TextInput>& inputs, int64_t top_k,
                                           Batcher::Arrival& arrival, std::vector<ojson>& answers) {
  auto job = std::make_shared<BatchJob>();
  job->model = model;
  std::vector<const TextInput*> valid;
  for (const auto& in : inputs)
    if (in.error.empty()) valid.push_back(&in);
  // Tokenised here, on a handler thread; the model thread only batches and runs the model.
  job->data = model->predictor.encode(valid);
  job->top_k.assign(valid.size(), top_k);
  if (valid.empty()) return std::nullopt;
  std::string error;
  switch (batcher_.submit(job, arrival, error)) {
    case Batcher::Submit::answered:
      answers = std::move(job->answers);
      return std::nullopt;
    case Batcher::Submit::full: {
      auto r = error_response(503, "the server is busy: its queue holds --max-queue " + std::to_string(options_.max_queue) +
                                       " texts; retry later");
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    case Batcher::Submit::stopping:
      return error_response(503, "the server is shutting down");
    case Batcher::Submit::failed:
      break;
  }
  return error_response(500, "the model failed: " + error);
}

// ---------------------------------------------------------------------------------------------
// Routing

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
        ojson j{{"name", name_},
                {"version", model->version},
                {"run", model->run_dir},
                {"checkpoint", model->checkpoint},
                {"task", run.config.task.type},
                {"model", run.config.model.type},
                {"precision", run.precision},
                {"pairs", model->predictor.pairs()}};
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
        response.body = metrics_.render() + render_connections(http_.stats());
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
        if (only("GET"))
          response = json_response(
              200, v2_model_metadata(model->predictor, name_, model->version, model->run_dir, model->checkpoint));
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
  Batcher::Arrival arrival(batcher_);
  V1Request parsed = parse_v1_request(request.body, model->predictor);
  int64_t texts = 0;
  for (const auto& in : parsed.inputs) texts += in.error.empty();
  if (texts > options_.max_queue)
    throw FieldError{413, std::to_string(texts) + " texts in one request: more than the server queues (--max-queue " +
                              std::to_string(options_.max_queue) + "); split the request"};
  std::vector<ojson> answers;
  if (auto refused = answer(model, parsed.inputs, parsed.top_k, arrival, answers)) return *refused;
  return with_version(
      json_response(200, ojson{{"model_version", model->version}, {"predictions", v1_predictions(parsed, answers)}}),
      model->version);
}

HttpResponse Server::infer_v2(const HttpRequest& request, const std::shared_ptr<const Servable>& model) {
  Batcher::Arrival arrival(batcher_);
  V2Request parsed = parse_v2_request(request.body, model->predictor);
  if (static_cast<int64_t>(parsed.inputs.size()) > options_.max_queue)
    throw FieldError{413, std::to_string(parsed.inputs.size()) + " texts in one request: more than --max-queue " +
                              std::to_string(options_.max_queue)};
  std::vector<ojson> answers;
  if (auto refused = answer(model, parsed.inputs, 0, arrival, answers)) return *refused;
  ojson j{{"model_name", name_}, {"model_version", std::to_string(model->version)}};
  if (parsed.id) j["id"] = *parsed.id;
  j["outputs"] = v2_outputs(answers, parsed.outputs);
  return with_version(json_response(200, j), model->version);
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
      if (!value.is_string()) throw FieldError{422, key + ": expected a string, got " + value.type_name()};
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
