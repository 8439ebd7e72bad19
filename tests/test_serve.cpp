// ltk-serve: the real server on a free loopback port, called over HTTP (ltk/serve/http.h's client).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "ltk/io/run.h"
#include "ltk/serve/batcher.h"
#include "ltk/serve/kserve.h"
#include "ltk/serve/prometheus.h"
#include "ltk/serve/requests.h"
#include "ltk/serve/server.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using ltk::serve::http_call;
using ltk::serve::HttpResponse;
using ltk::test::run_app;
using ltk::test::TempDir;
using json = nlohmann::json;

namespace {

// Trains a toy run of `task` into dir/NAME: multiclass (the toy corpus), binary (two of its
// labels), multilabel (texts of one or two topics), regression (a number per text).
std::string train_run(const TempDir& dir, const std::string& task, const std::string& name = "run", int seed = 7) {
  std::string corpus = ltk::test::toy_corpus(20, 1), valid = ltk::test::toy_corpus(5, 2);
  auto transform = [&](const std::string& text) {
    std::istringstream in(text);
    std::ostringstream out;
    int i = 0;
    for (std::string line; std::getline(in, line); ++i) {
      std::string label = line.substr(0, line.find('\t')), words = line.substr(line.find('\t') + 1);
      if (task == "binary" && label == "tech") continue;
      if (task == "multilabel" && i % 3 == 0) {
        label += label == "food" ? ",tech" : ",food";
        words += label.find("tech") != std::string::npos ? " linux kernel" : " bread soup";
      }
      if (task == "regression") label = std::to_string(std::count(words.begin(), words.end(), ' ') + 1);
      out << label << '\t' << words << '\n';
    }
    return out.str();
  };
  ltk::test::write_file(dir.file(name + "-train.tsv"), transform(corpus));
  ltk::test::write_file(dir.file(name + "-valid.tsv"), transform(valid));
  std::string cfg = R"({"seed": )" + std::to_string(seed) + R"(, "device": "cpu", "threads": 1,
    "output_dir": ")" + dir.file(name) + R"(",
    "data": {"train": ")" + dir.file(name + "-train.tsv") + R"(", "valid": ")" + dir.file(name + "-valid.tsv") + R"("},
    "task": {"type": ")" + task + R"("},
    "model": {"type": "bow", "embed_dim": 16},
    "optimizer": {"type": "adam", "lr": 0.05},
    "trainer": {"epochs": 6, "batch_size": 8}})";
  ltk::test::write_file(dir.file(name + ".json"), cfg);
  auto r = run_app("ltk-train", "--config '" + dir.file(name + ".json") + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  return dir.file(name);
}

// A Server on a free loopback port, serving on a thread until the object dies.
struct Running {
  ltk::serve::Server server;
  std::thread thread;
  explicit Running(ltk::serve::ServeOptions o) : server(with_free_port(std::move(o))) {
    server.bind();
    thread = std::thread([this] { server.run(); });
  }
  ~Running() {
    server.hold(false);
    server.shutdown();
    thread.join();
  }
  static ltk::serve::ServeOptions with_free_port(ltk::serve::ServeOptions o) {
    o.http.port = 0;
    return o;
  }
  HttpResponse call(const std::string& method, const std::string& path, const std::string& body = "",
                    const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return http_call("127.0.0.1", server.port(), method, path, body, headers);
  }
  json post(const std::string& path, const json& body, int expect = 200) {
    auto r = call("POST", path, body.dump());
    INFO(path << " " << body.dump() << " -> " << r.status << " " << r.body);
    REQUIRE(r.status == expect);
    return json::parse(r.body);
  }
};

ltk::serve::ServeOptions options(const std::string& run) {
  ltk::serve::ServeOptions o;
  o.run_dir = run;
  return o;
}

// /metrics once it holds every one of `wanted` (responses are counted just after they are sent),
// or after 2 s.
std::string metrics_with(Running& s, const std::vector<std::string>& wanted) {
  std::string body;
  for (int i = 0; i < 100; ++i) {
    body = s.call("GET", "/metrics").body;
    bool all = true;
    for (const auto& w : wanted) all = all && body.find(w) != std::string::npos;
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return body;
}

// Sends raw bytes to the server and returns what it answers until it closes the connection (or
// `wait_s` passes), and after how many seconds the first byte came (-1: none).
std::pair<std::string, double> raw_exchange(int port, const std::string& bytes, int wait_s = 5) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return {"", -1};
  }
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  timeval wait{wait_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  char buf[4096];
  const auto t0 = std::chrono::steady_clock::now();
  std::string received;
  double first = -1;
  for (ssize_t got; (got = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    if (first < 0) first = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    received.append(buf, static_cast<size_t>(got));
  }
  ::close(fd);
  return {received, first};
}

std::string header(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

// ltk-predict's answers for `texts` (one JSON per line), the reference the server must equal.
std::vector<json> predict_cli(const std::string& run, const std::vector<std::string>& texts, int top_k) {
  std::string in;
  for (const auto& t : texts) in += t + "\n";
  auto r = run_app("ltk-predict", "--run '" + run + "' --top-k " + std::to_string(top_k), in);
  INFO(r.err);
  REQUIRE(r.code == 0);
  std::vector<json> out;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) out.push_back(json::parse(line));
  return out;
}

}  // namespace

TEST_CASE("serve: every endpoint of every task type answers as ltk-predict does", "[serve]") {
  TempDir dir;
  const std::vector<std::string> texts = {"goal match team", "bread cheese soup apple", "linux kernel bug",
                                          "team soup", "score score score coach league"};
  for (const std::string task : {"multiclass", "binary", "multilabel", "regression"}) {
    INFO(task);
    const std::string run = train_run(dir, task, task);
    auto expected = predict_cli(run, texts, 2);
    Running s(options(run));
    // /v1/predict: texts, and instances with ids (carried first), in order.
    json answer = s.post("/v1/predict", {{"texts", texts}, {"top_k", 2}});
    CHECK(answer["model_version"] == 1);
    REQUIRE(answer["predictions"].size() == texts.size());
    for (size_t i = 0; i < texts.size(); ++i) CHECK(answer["predictions"][i] == expected[i]);
    json instances = json::array();
    for (size_t i = 0; i < texts.size(); ++i) instances.push_back({{"id", "t" + std::to_string(i)}, {"text", texts[i]}});
    auto with_ids = s.call("POST", "/v1/predict", json{{"instances", instances}}.dump());
    REQUIRE(with_ids.status == 200);
    CHECK(header(with_ids, "X-Model-Version") == "1");
    CHECK(with_ids.body.rfind(R"({"model_version":1,"predictions":[{"id":"t0",)", 0) == 0);
    // Concurrent clients, each its own texts, all answered as ltk-predict answers them.
    std::vector<std::thread> clients;
    std::atomic<int> wrong{0};
    for (int c = 0; c < 6; ++c)
      clients.emplace_back([&, c] {
        for (int k = 0; k < 10; ++k) {
          size_t i = static_cast<size_t>((c + k) % texts.size());
          auto r = s.call("POST", "/v1/predict", json{{"texts", {texts[i]}}, {"top_k", 2}}.dump());
          if (r.status != 200 || json::parse(r.body)["predictions"][0] != expected[i]) ++wrong;
        }
      });
    for (auto& t : clients) t.join();
    CHECK(wrong == 0);
    // KServe v2: health, metadata, infer with the same figures.
    CHECK(s.call("GET", "/v2/health/live").status == 200);
    CHECK(s.call("GET", "/v2/health/ready").status == 200);
    CHECK(json::parse(s.call("GET", "/v2").body)["name"] == "ltk");
    auto meta = json::parse(s.call("GET", "/v2/models/" + task).body);
    CHECK(meta["inputs"][0]["datatype"] == "BYTES");
    CHECK(s.call("GET", "/v2/models/" + task + "/ready").status == 200);
    CHECK(s.call("GET", "/v2/models/nope").status == 404);
    json infer = s.post("/v2/models/" + task + "/infer",
                        {{"id", "r1"}, {"inputs", {{{"name", "text"}, {"shape", {texts.size()}}, {"datatype", "BYTES"}, {"data", texts}}}}});
    CHECK(infer["id"] == "r1");
    std::map<std::string, json> outputs;
    for (const auto& o : infer["outputs"]) outputs[o["name"]] = o;
    for (const auto& o : meta["outputs"]) CHECK(outputs.count(o["name"].get<std::string>()) == 1);
    for (size_t i = 0; i < texts.size(); ++i) {
      if (task == "regression") {
        CHECK(outputs["value"]["data"][i] == expected[i]["value"]);
        continue;
      }
      const auto& names = outputs["scores"]["parameters"]["labels"];
      for (size_t c = 0; c < names.size(); ++c)
        CHECK(outputs["scores"]["data"][i * names.size() + c] == expected[i]["scores"][names[c].get<std::string>()]);
      if (task == "multilabel") continue;
      CHECK(outputs["label"]["data"][i] == expected[i]["label"]);
      CHECK(outputs["score"]["data"][i] == expected[i]["score"]);
    }
    // Only the outputs asked for.
    json only = s.post("/v2/models/" + task + "/infer",
                       {{"inputs", {{{"name", "text"}, {"shape", {1, 1}}, {"datatype", "BYTES"}, {"data", {{"goal"}}}}}},
                        {"outputs", {{{"name", task == "regression" ? "value" : "scores"}}}}});
    CHECK(only["outputs"].size() == 1);
    // /metrics in Prometheus' format, with what was just served.
    CHECK(s.call("GET", "/metrics").content_type.rfind("text/plain; version=0.0.4", 0) == 0);
    const std::string served = "ltk_requests_total{endpoint=\"/v1/predict\",code=\"200\"} 62";
    auto metrics = metrics_with(s, {served});
    CHECK_THAT(metrics, Contains(served));
    CHECK_THAT(metrics, Contains("ltk_requests_total{endpoint=\"/v2/models/{name}\",code=\"404\"} 1"));
    CHECK_THAT(metrics, Contains("ltk_batch_texts_bucket{le=\"+Inf\"}"));
    CHECK_THAT(metrics, Contains("ltk_request_duration_seconds_count{endpoint=\"/v1/predict\"} 62"));
    CHECK_THAT(metrics, Contains("ltk_model_version 1"));
    CHECK_THAT(metrics, Contains("ltk_queue_texts 0"));
  }
}

namespace {

// The FieldError `f` throws, as "STATUS message"; "" when it throws none.
template <typename F>
std::string field_error(F&& f) {
  try {
    f();
  } catch (const ltk::serve::FieldError& e) {
    return std::to_string(e.status) + " " + e.message;
  }
  return "";
}

}  // namespace

TEST_CASE("serve: the v1 and KServe v2 encodings and the batcher work without a server", "[serve]") {
  using namespace ltk::serve;
  TempDir dir;
  const std::string run = train_run(dir, "multiclass");
  auto servable =
      std::make_shared<const Servable>(Servable{ltk::infer::Predictor(ltk::load_run(run)), 1, run, "", "best"});
  const auto& predictor = servable->predictor;

  // v1: texts or instances, ids, top_k; a bad text answered in place, a bad field refused.
  V1Request v1 = parse_v1_request(R"({"instances": [{"text": "goal match", "id": 7}, {"text": " "},
      {"text": "linux kernel"}], "top_k": 2})",
                                  predictor);
  CHECK(v1.top_k == 2);
  REQUIRE(v1.inputs.size() == 3);
  CHECK(v1.inputs[1].error == "empty text");
  CHECK(v1.ids[0] == 7);
  CHECK(v1.ids[1].is_null());
  CHECK(field_error([&] { parse_v1_request(R"({"texts": "goal"})", predictor); }) ==
        "422 texts: expected an array of strings, got string");
  CHECK_THAT(field_error([&] { parse_v1_request(R"({"texts": [], "top_k": -1})", predictor); }), Contains("422 top_k"));
  CHECK_THAT(field_error([&] {
               parse_v1_request("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", predictor);
             }),
             Contains("400 invalid JSON: nested deeper than 32"));

  // The batcher: a job of more texts than a batch is answered in order, as the predictor answers.
  Batcher batcher(BatcherOptions{2, 1.0, 8}, nullptr);
  batcher.start();
  auto job = std::make_shared<BatchJob>();
  job->model = servable;
  std::vector<const ltk::infer::TextInput*> valid;
  for (const auto& in : v1.inputs)
    if (in.error.empty()) valid.push_back(&in);
  std::vector<ltk::infer::TextInput> more = {ltk::infer::make_input("bread soup"),
                                             ltk::infer::make_input("coach team")};
  for (const auto& in : more) valid.push_back(&in);
  job->data = predictor.encode(valid);
  job->top_k.assign(valid.size(), 2);
  std::string error;
  {
    Batcher::Arrival arrival(batcher);
    REQUIRE(batcher.submit(job, arrival, error) == Batcher::Submit::answered);
  }
  const auto direct = predictor.answer(job->data, job->top_k, 64);
  REQUIRE(job->answers.size() == 4);
  for (size_t i = 0; i < direct.size(); ++i) CHECK(job->answers[i] == direct[i]);
  CHECK(job->answers[0].at("label") == "sport");
  CHECK(job->answers[3].at("label") == "sport");
  // The v1 response: the ids first, the bad text's error in its place.
  std::vector<nlohmann::ordered_json> answers(job->answers.begin(), job->answers.begin() + 2);
  auto predictions = v1_predictions(v1, answers);
  REQUIRE(predictions.size() == 3);
  CHECK(predictions[0].at("id") == 7);
  CHECK(predictions[0].at("label") == "sport");
  CHECK(predictions[1] == nlohmann::ordered_json{{"error", "empty text"}});
  CHECK(predictions[2].at("label") == "tech");
  // More texts than the queue holds: full; after stop(): stopping.
  auto big = std::make_shared<BatchJob>();
  big->model = servable;
  std::vector<const ltk::infer::TextInput*> many(9, &more[0]);
  big->data = predictor.encode(many);
  big->top_k.assign(9, 0);
  {
    Batcher::Arrival arrival(batcher);
    CHECK(batcher.submit(big, arrival, error) == Batcher::Submit::full);
  }
  batcher.stop();
  auto late = std::make_shared<BatchJob>();
  late->model = servable;
  late->data = predictor.encode({&more[0]});
  {
    Batcher::Arrival arrival(batcher);
    CHECK(batcher.submit(late, arrival, error) == Batcher::Submit::stopping);
  }

  // Two requests waiting together are answered in one batch; a request for another model (one
  // that arrived after a reload) in a batch of its own.
  {
    ServeMetrics metrics(8);
    Batcher merging(BatcherOptions{8, 1000.0, 64}, &metrics);
    merging.start();
    merging.hold(true);
    auto reloaded =
        std::make_shared<const Servable>(Servable{ltk::infer::Predictor(ltk::load_run(run)), 2, run, "", "best"});
    std::vector<std::shared_ptr<BatchJob>> jobs;
    for (const auto& model : {servable, servable, reloaded}) {
      auto j = std::make_shared<BatchJob>();
      j->model = model;
      j->data = predictor.encode({&more[0], &more[1]});
      j->top_k.assign(2, 0);
      jobs.push_back(j);
    }
    std::vector<Batcher::Submit> results(jobs.size());
    std::vector<std::thread> clients;
    auto submit = [&](size_t i, int64_t queued_after) {
      clients.emplace_back([&, i] {
        Batcher::Arrival arrival(merging);
        std::string e;
        results[i] = merging.submit(jobs[i], arrival, e);
      });
      for (int k = 0; k < 500 && merging.queued_texts() < queued_after; ++k)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    };
    submit(0, 2);
    submit(1, 4);
    submit(2, 6);  // queued after the first two
    CHECK(merging.queued_texts() == 6);
    merging.hold(false);
    for (auto& c : clients) c.join();
    auto expected = direct[2];  // "bread soup", as the predictor answers it alone (no top_k here)
    expected.erase("top");
    for (size_t i = 0; i < jobs.size(); ++i) {
      CHECK(results[i] == Batcher::Submit::answered);
      REQUIRE(jobs[i]->answers.size() == 2);
      CHECK(jobs[i]->answers[0] == expected);
    }
    // Jobs 0 and 1 in one batch of 4 (the model thread did not wait its 1000 ms: nothing else was
    // on its way), job 2 in one of 2.
    const std::string rendered = metrics.render();
    CHECK_THAT(rendered, Contains("ltk_batch_texts_count 2") && Contains("ltk_batch_texts_sum 6"));
    CHECK_THAT(rendered,
               Contains("ltk_batch_texts_bucket{le=\"2\"} 1") && Contains("ltk_batch_texts_bucket{le=\"4\"} 2"));
  }

  // KServe v2: the text input tensor, the outputs asked for, the id; tensors from answers.
  V2Request v2 = parse_v2_request(R"({"id": "r1", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1],
      "data": [["goal match"], ["bread soup"]]}], "outputs": [{"name": "label"}, {"name": "scores"}]})",
                                  predictor);
  REQUIRE(v2.id);
  CHECK(*v2.id == "r1");
  CHECK(v2.outputs == std::set<std::string>{"label", "scores"});
  REQUIRE(v2.inputs.size() == 2);
  std::vector<nlohmann::ordered_json> two = {direct[0], direct[2]};
  for (auto& a : two) a.erase("top");  // v2 answers without top_k
  auto outputs = v2_outputs(two, v2.outputs);
  REQUIRE(outputs.size() == 2);
  CHECK(outputs[0].at("name") == "label");
  CHECK(outputs[0].at("datatype") == "BYTES");
  CHECK(outputs[0].at("data") == nlohmann::ordered_json::array({"sport", "food"}));
  CHECK(outputs[1].at("name") == "scores");
  CHECK(outputs[1].at("datatype") == "FP32");
  CHECK(outputs[1].at("shape") == nlohmann::ordered_json::array({2, 3}));
  CHECK(outputs[1].at("parameters").at("labels").size() == 3);
  CHECK(v2_outputs(two, {}).size() == 3);  // label, score, scores
  CHECK_THAT(field_error([&] { v2_outputs(two, {"logits"}); }), Contains("400 outputs: unknown output 'logits'"));
  CHECK_THAT(field_error([&] {
               parse_v2_request(
                   R"({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a", "b"]}]})",
                   predictor);
             }),
             Contains("400 inputs[0].shape [3] does not hold the 2 strings"));
  CHECK_THAT(field_error([&] {
               parse_v2_request(R"({"inputs": [{"name": "text", "datatype": "FP32", "data": [1]}]})", predictor);
             }),
             Contains("400 inputs[0].datatype"));
  auto meta = v2_model_metadata(predictor, "m", 3, run, "ck");
  CHECK(meta.at("name") == "m");
  CHECK(meta.at("versions") == nlohmann::ordered_json::array({"3"}));
  CHECK(meta.at("outputs").size() == 3);
  CHECK(meta.at("parameters").at("checkpoint") == "ck");
}

TEST_CASE("serve: bad input gets 400 - 422 - 413 - 503 or an error in place, and the server lives on", "[serve]") {
  TempDir dir;
  const std::string run = train_run(dir, "multiclass");
  auto o = options(run);
  o.http.max_body = 4096;
  o.http.read_timeout_s = o.http.keep_alive_s = 1;
  o.max_queue = 4;
  Running s(o);
  auto status_of = [&](const std::string& body, const std::string& path = "/v1/predict") {
    return s.call("POST", path, body);
  };
  auto r = status_of("{\"texts\": [\"a\"");
  CHECK(r.status == 400);
  CHECK_THAT(r.body, Contains("invalid JSON") && Contains("column"));
  r = status_of(R"({"texts": ["goal", 3]})");
  CHECK(r.status == 422);
  CHECK_THAT(r.body, Contains("texts[1]: expected a string, got number"));
  CHECK_THAT(status_of(R"({"instances": [{"txt": "goal"}]})").body, Contains("instances[0].text: expected a string"));
  CHECK_THAT(status_of(R"({"texts": ["goal"], "top_k": -1})").body, Contains("top_k"));
  CHECK_THAT(status_of(R"({"texts": ["goal"], "topk": 1})").body, Contains("unknown field 'topk'"));
  CHECK(status_of(R"([1, 2])").status == 422);
  CHECK(status_of(R"({"texts": "goal"})").status == 422);
  CHECK(status_of(R"({"inputs": [{"name": "text", "datatype": "FP32", "data": [1]}]})", "/v2/models/run/infer").status == 400);
  CHECK(status_of(R"({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a"]}]})",
                  "/v2/models/run/infer").status == 400);
  CHECK(s.call("GET", "/v1/predict").status == 405);
  CHECK(s.call("GET", "/nowhere").status == 404);
  // Nesting that would exhaust the stack, numbers out of range: 400, not a crash or a 500.
  r = status_of("{\"texts\": [\"a\"], \"id\": " + std::string(2000, '[') + std::string(2000, ']') + "}");
  CHECK(r.status == 400);
  CHECK_THAT(r.body, Contains("nested deeper than"));
  CHECK(header(r, "X-Model-Version") == "1");
  CHECK(status_of(R"({"texts": ["a"], "top_k": 1e999})").status == 400);
  // curl -d sends a form content type; a body of any type up to --max-body is read.
  auto form = s.call("POST", "/v1/predict", json{{"texts", std::vector<std::string>(3, std::string(1000, 'x') + " goal")}}.dump(),
                     {{"Content-Type", "application/x-www-form-urlencoded"}});
  CHECK(form.status == 200);
  // Empty texts and invalid UTF-8 are errors of their own item; the rest is answered.
  r = status_of(std::string("{\"texts\": [\"goal match\", \"   \", \"bad \xff byte\", \"linux\"]}"));
  REQUIRE(r.status == 200);
  auto p = json::parse(r.body)["predictions"];
  CHECK(p[0]["label"] == "sport");
  CHECK(p[1] == json{{"error", "empty text"}});
  CHECK(p[2] == json{{"error", "invalid UTF-8 at byte 4"}});
  CHECK(p[3]["label"] == "tech");
  // A body over --max-body: 413 before it is read; a request with more texts than the queue: 413.
  r = status_of("{\"texts\": [\"" + std::string(5000, 'a') + "\"]}");
  CHECK(r.status == 413);
  CHECK_THAT(r.body, Contains("max-body"));
  CHECK(header(r, "X-Model-Version") == "1");
  // ... whatever the framing: chunked, it is cut off once past the limit.
  std::string chunked = "POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 5; ++i) chunked += "400\r\n" + std::string(1024, ' ') + "\r\n";
  chunked += "0\r\n\r\n";
  auto refused = raw_exchange(s.server.port(), chunked, 3).first;
  CHECK_THAT(refused, Contains("HTTP/1.1 413") && !Contains("HTTP/1.1 400"));
  // The refused body is consumed, never taken for requests of its own (a request hidden in it is
  // not answered).
  const std::string hidden = "GET /v1/model HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string padded = hidden + std::string(5000 - hidden.size(), ' ');
  refused = raw_exchange(s.server.port(), "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + padded, 3).first;
  CHECK_THAT(refused, Contains("HTTP/1.1 413") && !Contains("HTTP/1.1 200") && !Contains("HTTP/1.1 400"));
  CHECK(status_of(R"({"texts": ["a", "b", "c", "d", "e"]})").status == 413);
  // A full queue: 503 with Retry-After; the queued request is answered once the model runs.
  s.server.hold(true);
  std::thread first([&] { CHECK(status_of(R"({"texts": ["goal", "soup", "linux"]})").status == 200); });
  for (int i = 0; i < 1000 && s.server.queued_texts() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(s.server.queued_texts() == 3);
  r = status_of(R"({"texts": ["goal", "soup"]})");
  CHECK(r.status == 503);
  CHECK(header(r, "Retry-After") == "1");
  s.server.hold(false);
  first.join();
  // A client that stops sending is cut off after the read timeout (1 s here): a 400 naming it,
  // then the connection closes (at the latest after the keep-alive timeout, also 1 s).
  auto [received, answered_after] =
      raw_exchange(s.server.port(), "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"te");
  CHECK_THAT(received, Contains("HTTP/1.1 400") && Contains("stops sending"));
  CHECK(answered_after >= 0.5);
  CHECK(answered_after < 4);
  // Still serving; every refusal was counted.
  CHECK(status_of(R"({"texts": ["goal"]})").status == 200);
  auto metrics = metrics_with(s, {"code=\"413\"} 4", "code=\"503\"} 1"});
  CHECK_THAT(metrics, Contains("code=\"413\"} 4") && Contains("code=\"503\"} 1") && Contains("ltk_texts_total{result=\"refused\"} 2"));
}

TEST_CASE("serve: reload under load fails no request - a bad checkpoint keeps the model - SIGTERM drains", "[serve]") {
  TempDir dir;
  const std::string run = train_run(dir, "multiclass");
  const std::string other = train_run(dir, "binary", "other");
  Running s(options(run));
  std::atomic<bool> done{false};
  std::atomic<int> failed{0}, answered{0}, mismatched{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&] {
      int64_t last = 0;
      while (!done) {
        auto r = s.call("POST", "/v1/predict", R"({"texts": ["goal match", "linux kernel", "soup"]})");
        if (r.status != 200) {
          ++failed;
          continue;
        }
        auto j = json::parse(r.body);
        const int64_t v = j["model_version"];
        // the version answered with is in the header too, and never goes back
        if (header(r, "X-Model-Version") != std::to_string(v) || v < last || j["predictions"].size() != 3) ++mismatched;
        last = v;
        ++answered;
      }
    });
  auto reload = [&](const std::string& body, int expect) {
    auto r = s.call("POST", "/admin/reload", body);
    INFO(r.body);
    CHECK(r.status == expect);
    return json::parse(r.body);
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(reload("", 200)["version"] == 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  json bad = reload(R"({"checkpoint": "step-999999"})", 500);
  CHECK(bad["version"] == 2);
  CHECK_THAT(bad["error"].get<std::string>(), Contains("still serving version 2"));
  CHECK(reload(R"({"chekpoint": "best"})", 422)["error"] == "unknown field 'chekpoint' (known: run, checkpoint)");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(reload(json{{"run", other}}.dump(), 200)["version"] == 3);  // another run, another task
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  done = true;
  for (auto& t : clients) t.join();
  CHECK(failed == 0);
  CHECK(mismatched == 0);
  CHECK(answered > 8);
  auto model = json::parse(s.call("GET", "/v1/model").body);
  CHECK(model["version"] == 3);
  CHECK(model["task"] == "binary");
  CHECK_THAT(s.call("GET", "/metrics").body,
             Contains("ltk_reloads_total{result=\"ok\"} 2") && Contains("ltk_reloads_total{result=\"failed\"} 1"));
  // A request in the queue when the model is swapped is answered by the model it arrived to.
  s.server.hold(true);
  HttpResponse in_flight;
  std::thread queued([&] { in_flight = s.call("POST", "/v1/predict", R"({"texts": ["goal match"]})"); });
  for (int i = 0; i < 1000 && s.server.queued_texts() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(s.server.queued_texts() == 1);
  CHECK(reload(json{{"run", run}}.dump(), 200)["version"] == 4);
  s.server.hold(false);
  queued.join();
  CHECK(in_flight.status == 200);
  CHECK(header(in_flight, "X-Model-Version") == "3");
  CHECK(json::parse(in_flight.body)["predictions"][0].contains("scores"));
  CHECK(json::parse(s.call("POST", "/v1/predict", R"({"texts": ["goal match"]})").body)["model_version"] == 4);
  // Reload from elsewhere than loopback needs the token; with a token, without it is 401.
  auto o = options(run);
  o.admin_token = "s3cret";
  Running guarded(o);
  CHECK(guarded.call("POST", "/admin/reload", "").status == 401);
  CHECK(guarded.call("POST", "/admin/reload", "", {{"Authorization", "Bearer s3cret"}}).status == 200);

  // Shutdown while a request waits in the queue: it is answered, then run() returns.
  s.server.hold(true);
  std::thread waiting([&] { CHECK(s.call("POST", "/v1/predict", R"({"texts": ["goal"]})").status == 200); });
  for (int i = 0; i < 1000 && s.server.queued_texts() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(s.server.queued_texts() == 1);
  s.server.shutdown();  // releases the hold: what was accepted is answered
  waiting.join();
  CHECK(s.call("GET", "/v2/health/live").status == -1);  // no longer accepting
}

TEST_CASE("cli: ltk-serve - SIGHUP reloads - SIGTERM exits 0 - a port in use is a clear error", "[serve][cli]") {
  TempDir dir;
  const std::string run = train_run(dir, "multiclass");
  const std::string port_file = dir.file("port");
  pid_t pid = ltk::test::spawn_app("ltk-serve", {"--run", run, "--port", "0", "--port-file", port_file}, dir.file("serve.err"));
  for (int i = 0; i < 300 && !std::filesystem::exists(port_file); ++i) usleep(100000);
  REQUIRE(std::filesystem::exists(port_file));
  const int port = std::stoi(ltk::test::read_text(port_file));
  auto r = http_call("127.0.0.1", port, "POST", "/v1/predict", R"({"texts": ["goal match"]})");
  CHECK(r.status == 200);
  CHECK(json::parse(r.body)["predictions"][0]["label"] == "sport");
  kill(pid, SIGHUP);
  int64_t version = 1;
  for (int i = 0; i < 100 && version == 1; ++i) {
    usleep(100000);
    auto m = http_call("127.0.0.1", port, "GET", "/v1/model");
    if (m.status == 200) version = json::parse(m.body)["version"];
  }
  CHECK(version == 2);
  // A second server on the same port fails at once, naming the address.
  auto busy = run_app("ltk-serve", "--run '" + run + "' --port " + std::to_string(port));
  CHECK(busy.code == 1);
  CHECK_THAT(busy.err, Contains("cannot listen on 127.0.0.1:" + std::to_string(port)) && Contains("in use"));
  CHECK(run_app("ltk-serve", "--run '" + run + "' --max-batch 0").code == 2);
  CHECK(run_app("ltk-serve", "").code == 2);
  kill(pid, SIGTERM);
  CHECK(ltk::test::wait_exit_code(pid, 30) == 0);
  const std::string log = ltk::test::read_text(dir.file("serve.err"));
  CHECK_THAT(log, Contains("SIGTERM") && Contains("stopped") && Contains("reload: serving version 2"));
}
