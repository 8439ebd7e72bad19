// ltk-serve: the real server on a free loopback port, called over HTTP (ltk/serve/http.h's client).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <brotli/encode.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <thread>
#include <tuple>

#include "ltk/eval/evaluator.h"
#include "ltk/io/run.h"
#include "ltk/models/quantize.h"
#include "ltk/serve/batcher.h"
#include "ltk/serve/http_parse.h"
#include "ltk/serve/kserve.h"
#include "ltk/serve/prometheus.h"
#include "ltk/serve/requests.h"
#include "ltk/serve/server.h"
#include "test_bert.h"
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
// `task_extra` is added to the task section (e.g. `, "threshold": "tune"`).
std::string train_run(const TempDir& dir, const std::string& task, const std::string& name = "run", int seed = 7,
                      const std::string& task_extra = "") {
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
    "output_dir": ")" +
                    dir.file(name) + R"(",
    "data": {"train": ")" +
                    dir.file(name + "-train.tsv") + R"(", "valid": ")" + dir.file(name + "-valid.tsv") + R"("},
    "task": {"type": ")" +
                    task + R"(")" + task_extra + R"(},
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

// Two model workers: every test below also checks that batches run on several threads at once
// answer as one thread does.
ltk::serve::ServeOptions options(const std::string& run) {
  ltk::serve::ServeOptions o;
  o.run_dir = run;
  o.workers = 2;
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

// Six clients at once, ten requests of one text each (with `top_k`): how many answers are not 200
// with a prediction `right` accepts for text i.
int concurrent_wrong(Running& s, const std::vector<std::string>& texts, int top_k,
                     const std::function<bool(size_t, const json&)>& right) {
  std::vector<std::thread> clients;
  std::atomic<int> wrong{0};
  for (int c = 0; c < 6; ++c)
    clients.emplace_back([&, c] {
      for (int k = 0; k < 10; ++k) {
        size_t i = static_cast<size_t>((c + k) % texts.size());
        json body = {{"texts", {texts[i]}}};
        if (top_k > 0) body["top_k"] = top_k;
        auto r = s.call("POST", "/v1/predict", body.dump());
        if (r.status != 200 || !right(i, json::parse(r.body)["predictions"][0])) ++wrong;
      }
    });
  for (auto& t : clients) t.join();
  return wrong;
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
    CHECK(concurrent_wrong(s, texts, 2, [&](size_t i, const json& p) { return p == expected[i]; }) == 0);
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

TEST_CASE("serve: deploy artifacts (int8, bf16) answer concurrent clients from two model workers sharing the model",
          "[serve][deploy]") {
  if (!ltk::int8_unavailable().empty()) LTK_SKIP(ltk::int8_unavailable());
  TempDir dir;
  std::string vocab;
  const std::string run = ltk::test::trained_bert(dir, vocab);
  const std::vector<std::string> texts = {"goal match team", "bread cheese soup apple", "linux kernel bug",
                                          "score coach league", "compiler memory cpu"};
  for (const std::string p : {"int8", "bf16"}) {
    INFO(p);
    const std::string env = "LTK_NATIVE_BF16=1";  // (bf16 emulated where the CPU lacks it)
    auto made = run_app(
        "ltk-eval", "--run '" + run + "' --quantize " + p + " --out '" + dir.file(p) + "' --max-drop 100", "", "", env);
    INFO(made.err);
    REQUIRE(made.code == 0);
    auto expected = predict_cli(dir.file(p), texts, 0);
    Running s(options(dir.file(p)));
    CHECK(json::parse(s.call("GET", "/v1/model").body)["precision"] == p);
    // Six clients at once, single texts, on two workers that share the model's packed weights: every
    // answer comes, with ltk-predict's label. (int8 scores depend slightly on the batch a text
    // shares, as with any dynamic quantization; the label of these texts does not.)
    CHECK(concurrent_wrong(s, texts, 0, [&](size_t i, const json& p) { return p["label"] == expected[i]["label"]; }) ==
          0);
  }
}

TEST_CASE("serve: tuned thresholds are stored in the run - ltk-predict, ltk-serve and ltk-eval apply them",
          "[serve][thresholds][cli]") {
  TempDir dir;
  // Multilabel with the thresholds tuned on valid. Few epochs, so that the probabilities are not
  // all near 0 and 1.
  const std::string run = train_run(dir, "multilabel", "ml", 7, R"(, "threshold": "tune")");
  json stored = json::parse(ltk::test::read_text(run + "/task.json"));
  REQUIRE(stored["thresholds"].size() == 3);
  std::vector<double> t = stored["thresholds"];
  json tuned_record;
  std::istringstream metrics(ltk::test::read_text(run + "/metrics.jsonl"));
  for (std::string line; std::getline(metrics, line);)
    if (json::parse(line)["kind"] == "thresholds") tuned_record = json::parse(line);
  REQUIRE(tuned_record.is_object());
  const std::vector<std::string> names = {"food", "sport", "tech"};  // labels.txt's order
  for (size_t c = 0; c < names.size(); ++c) CHECK(tuned_record["thresholds"][names[c]] == t[c]);
  CHECK(std::any_of(t.begin(), t.end(), [](double v) { return v != 0.5; }));
  CHECK_THAT(ltk::test::read_text(run + "/report.html"), Contains("tuned on valid"));
  // ltk-predict: a label is predicted exactly when its score reaches its tuned threshold.
  const std::vector<std::string> texts = {
      "goal match team", "bread cheese soup apple", "linux kernel bug", "team soup", "bread linux",
      "coach",           "apple cpu memory goal"};
  auto predicted = predict_cli(run, texts, 0);
  for (const auto& p : predicted) {
    json want = json::array();
    bool near = false;  // a score within its rounding (6 digits) of its threshold could go either way
    for (size_t c = 0; c < names.size(); ++c) {
      const double score = p["scores"][names[c]].get<double>();
      near = near || std::abs(score - t[c]) < 1e-6;
      if (score >= t[c]) want.push_back(names[c]);
    }
    if (!near) CHECK(p["labels"] == want);
  }
  // ltk-serve answers the same.
  {
    Running s(options(run));
    json answer = s.post("/v1/predict", {{"texts", texts}});
    for (size_t i = 0; i < texts.size(); ++i) CHECK(answer["predictions"][i] == predicted[i]);
  }
  // A threshold moved across a score (half of it, or midway above it) flips that label in
  // ltk-predict and ltk-serve: they read task.json's values.
  {
    size_t ti = 0, c = 0;
    bool found = false;
    for (size_t i = 0; i < predicted.size() && !found; ++i)
      for (size_t k = 0; k < names.size() && !found; ++k) {
        const double v = predicted[i]["scores"][names[k]].get<double>();
        if (v > 1e-3 && v < 0.999) std::tie(ti, c, found) = std::make_tuple(i, k, true);
      }
    REQUIRE(found);
    const double s0 = predicted[ti]["scores"][names[c]].get<double>();
    const bool was = s0 >= t[c];
    std::vector<double> moved = t;
    moved[c] = was ? (1 + s0) / 2 : s0 / 2;
    json edited = stored;
    edited["thresholds"] = moved;
    ltk::test::write_file(run + "/task.json", edited.dump());
    auto again = predict_cli(run, {texts[ti]}, 0);
    const auto& labels = again[0]["labels"];
    INFO("score " << s0 << " tuned " << t[c] << " moved to " << moved[c] << " answer " << again[0].dump());
    CHECK((std::find(labels.begin(), labels.end(), names[c]) != labels.end()) == !was);
    Running s(options(run));
    CHECK(s.post("/v1/predict", {{"texts", {texts[ti]}}})["predictions"][0] == again[0]);
    ltk::test::write_file(run + "/task.json", stored.dump());
  }
  // ltk-eval on the validation split: the F1 of each label is the one its threshold gave when tuned.
  auto eval = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("ml-valid.tsv") + "' --json");
  INFO(eval.err);
  REQUIRE(eval.code == 0);
  json m = json::parse(eval.out);
  for (size_t c = 0; c < names.size(); ++c) {
    CHECK(m["threshold"][names[c]] == t[c]);
    CHECK(m["per_class"][names[c]]["f1"].get<double>() == Approx(tuned_record["valid_f1"][names[c]].get<double>()));
  }
  // A fixed map and a number still work; "tune" without a validation split, or on a multiclass
  // task, and a label the data lacks are errors naming the key.
  const std::string cfg = dir.file("ml.json");
  auto fixed = run_app("ltk-train", "--config '" + cfg + "' --set 'task.threshold={\"tech\": 0.3}' --dump-config");
  INFO(fixed.err);
  CHECK(fixed.code == 0);
  CHECK(json::parse(fixed.out)["task"]["threshold"] == json{{"tech", 0.3}});
  auto no_valid =
      run_app("ltk-train", "--config '" + cfg +
                               "' --set task.threshold=tune --set data.valid= --set task.calibrate=none --dump-config");
  CHECK(no_valid.code != 0);
  CHECK_THAT(no_valid.err, Contains("task.threshold") && Contains("data.valid"));
  auto multiclass = run_app("ltk-train", "--config '" + cfg +
                                             "' --set task.threshold=tune --set task.type=multiclass "
                                             "--set task.calibrate=none --dump-config");
  CHECK(multiclass.code != 0);
  CHECK_THAT(multiclass.err, Contains("task.threshold") && Contains("multiclass"));
  auto bad = run_app("ltk-train", "--config '" + cfg + "' --set 'task.threshold={\"tech\": 1.5}' --dump-config");
  CHECK(bad.code != 0);
  CHECK_THAT(bad.err, Contains("task.threshold.tech") && Contains("(0, 1)"));
}

namespace {

// A corpus whose labels only a text's last words decide: 25 to 45 words common to both labels,
// then "alpha gamma" (pos) or "beta delta" (neg). Texts one per line, with their labels apart.
struct TailCorpus {
  std::string tsv;
  std::vector<std::string> texts, labels;
};

TailCorpus tail_decided(int n, uint32_t seed) {
  const std::vector<std::string> filler = {"the", "of", "and", "a",  "to",   "in",  "is",   "it", "that", "was",
                                           "for", "on", "are", "as", "with", "his", "they", "at", "be",   "this"};
  std::mt19937 rng(seed);
  TailCorpus c;
  for (int i = 0; i < n; ++i) {
    const bool pos = rng() % 2;
    std::string text;
    for (int k = 0, len = 25 + static_cast<int>(rng() % 21); k < len; ++k) text += filler[rng() % filler.size()] + " ";
    text += pos ? "alpha gamma" : "beta delta";
    c.texts.push_back(text);
    c.labels.push_back(pos ? "pos" : "neg");
    c.tsv += c.labels.back() + "\t" + text + "\n";
  }
  return c;
}

// The share of `predicted` (ltk-predict's lines) whose label is `gold`'s.
double accuracy_of(const std::vector<json>& predicted, const std::vector<std::string>& gold) {
  int right = 0;
  for (size_t i = 0; i < gold.size(); ++i) right += predicted[i]["label"] == gold[i];
  return static_cast<double>(right) / static_cast<double>(gold.size());
}

}  // namespace

TEST_CASE(
    "long texts: only windows see the end that decides the label - ltk-eval, ltk-predict and ltk-serve pool alike",
    "[serve][windows][cli]") {
  TempDir dir;
  const TailCorpus train = tail_decided(240, 1), valid = tail_decided(40, 2), test = tail_decided(80, 3);
  ltk::test::write_file(dir.file("train.tsv"), train.tsv);
  ltk::test::write_file(dir.file("valid.tsv"), valid.tsv);
  ltk::test::write_file(dir.file("test.tsv"), test.tsv);
  ltk::test::write_file(dir.file("long.json"), R"({"seed": 3, "device": "cpu", "threads": 1,
    "data": {"train": ")" + dir.file("train.tsv") + R"(", "valid": ")" +
                                                   dir.file("valid.tsv") + R"(",
             "test": ")" + dir.file("test.tsv") + R"(", "max_len": 16},
    "model": {"type": "bow", "embed_dim": 16},
    "optimizer": {"type": "adam", "lr": 0.05},
    "trainer": {"epochs": 8, "batch_size": 16}})");
  auto train_with = [&](const std::string& name, const std::string& sets) {
    auto r = run_app("ltk-train", "--config '" + dir.file("long.json") + "' --set output_dir=" + dir.file(name) + sets);
    INFO(r.err);
    REQUIRE(r.code == 0);
    return r;
  };
  auto eval_accuracy = [&](const std::string& run) {
    auto r = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("test.tsv") + "' --json");
    INFO(r.err);
    REQUIRE(r.code == 0);
    return json::parse(r.out)["accuracy"].get<double>();
  };
  // Truncated to the first 16 words, a text shows no label word: about chance.
  train_with("head", "");
  const double head = eval_accuracy(dir.file("head"));
  CHECK(head < 0.75);
  // Windows of 16 words sharing 4: the last one holds the label words.
  // (--baseline: the tf-idf linear baseline reads whole texts beside it.)
  auto windowed = train_with("window", " --set data.long_text=window --set data.window_overlap=4 --baseline");
  CHECK_THAT(windowed.err, Contains("[data] train: 240 texts, 240 of them cut into"));
  CHECK_THAT(windowed.err, Contains("[baseline]") && !Contains("the baseline failed"));
  const std::string run = dir.file("window");
  const double window = eval_accuracy(run);
  CHECK(window >= 0.95);
  // ltk-predict answers per text, and its labels score what ltk-eval scored.
  auto predicted = predict_cli(run, test.texts, 0);
  REQUIRE(predicted.size() == test.texts.size());
  CHECK(accuracy_of(predicted, test.labels) == window);
  // ltk-serve answers as ltk-predict does.
  {
    Running s(options(run));
    json answer = s.post("/v1/predict", {{"texts", test.texts}});
    REQUIRE(answer["predictions"].size() == test.texts.size());
    for (size_t i = 0; i < test.texts.size(); ++i) CHECK(answer["predictions"][i] == predicted[i]);
  }
  // The pooled logits are the mean of the windows' logits, each window scored as a text of its own.
  ltk::LoadedRun loaded = ltk::load_run(run, "best", "cpu");
  std::vector<ltk::Example> texts, pieces;
  std::vector<int64_t> owner;
  for (size_t i = 0; i < test.texts.size(); ++i) {
    texts.push_back({test.labels[i], test.texts[i], static_cast<int64_t>(i + 1), ""});
    std::vector<std::string> words;
    std::istringstream in(test.texts[i]);
    for (std::string w; in >> w;) words.push_back(w);
    const auto n = static_cast<int64_t>(words.size());
    for (int64_t start : ltk::window_starts(n, 16, 4)) {
      std::string piece;
      for (int64_t k = start; k < std::min(n, start + 16); ++k) piece += words[static_cast<size_t>(k)] + " ";
      pieces.push_back({test.labels[i], piece, static_cast<int64_t>(pieces.size() + 1), ""});
      owner.push_back(static_cast<int64_t>(i));
    }
  }
  const auto data = loaded.encode(texts, "test", true), alone = loaded.encode(pieces, "pieces", true);
  REQUIRE(data.size() == static_cast<int64_t>(pieces.size()));
  REQUIRE(alone.num_texts() == alone.size());  // no piece is longer than a window
  auto pooled =
      ltk::predict(*loaded.model, *loaded.task, data, 7, loaded.device, loaded.vocab.size(), 0, 1, true).scores;
  auto each =
      ltk::predict(*loaded.model, *loaded.task, alone, 5, loaded.device, loaded.vocab.size(), 0, 1, true).scores;
  auto expected = torch::zeros_like(pooled);
  auto count = torch::zeros({pooled.size(0), 1});
  for (size_t k = 0; k < owner.size(); ++k) {
    expected[owner[k]] += each[static_cast<int64_t>(k)];
    count[owner[k]] += 1;
  }
  CHECK(torch::allclose(pooled, expected / count, 1e-5, 1e-5));
  // Distributed validation shards texts, not windows: two shards' rows sum to the whole.
  auto whole = ltk::predict(*loaded.model, *loaded.task, data, 7, loaded.device, loaded.vocab.size());
  auto s0 = ltk::predict(*loaded.model, *loaded.task, data, 7, loaded.device, loaded.vocab.size(), 0, 2);
  auto s1 = ltk::predict(*loaded.model, *loaded.task, data, 7, loaded.device, loaded.vocab.size(), 1, 2);
  CHECK(torch::allclose(s0.scores + s1.scores, whole.scores, 1e-6, 1e-6));
  CHECK(torch::equal(s0.targets + s1.targets, whole.targets));
  CHECK(s0.loss_sum + s1.loss_sum == Approx(whole.loss_sum).epsilon(1e-6));
  CHECK(whole.samples == static_cast<int64_t>(test.texts.size()));
  // Errors name the keys.
  auto no_len = run_app("ltk-train", "--config '" + dir.file("long.json") +
                                         "' --set data.long_text=window --set data.max_len=0 --dump-config");
  CHECK(no_len.code != 0);
  CHECK_THAT(no_len.err, Contains("data.long_text") && Contains("data.max_len"));
  auto overlap = run_app("ltk-train", "--config '" + dir.file("long.json") +
                                          "' --set data.long_text=window --set data.window_overlap=16 --dump-config");
  CHECK(overlap.code != 0);
  CHECK_THAT(overlap.err, Contains("data.window_overlap"));
  auto stray =
      run_app("ltk-train", "--config '" + dir.file("long.json") + "' --set data.window_pool=max --dump-config");
  CHECK(stray.code != 0);
  CHECK_THAT(stray.err, Contains("data.window_pool") && Contains("window"));
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
  o.http.header_timeout_s = o.http.body_timeout_s = o.http.idle_timeout_s = 1;
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
  // A client that stops sending its body is cut off at the body deadline (1 s here): a 408 naming
  // it, then the connection closes.
  auto [received, answered_after] =
      raw_exchange(s.server.port(), "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"te");
  CHECK_THAT(received, Contains("HTTP/1.1 408") && Contains("stops sending") && Contains("--body-timeout-s"));
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

// ---------------------------------------------------------------------------------------------
// Connections under hostile load: the event-driven server (ltk/serve/http.h)

namespace {

// A TCP connection to the server on loopback from `source` (127.0.0.2 and up are loopback too, each
// its own client address); -1 when it cannot connect.
int connect_from(int port, const char* source = "127.0.0.1") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, source, &local.sin_addr);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// What the server sends on `fd` until it closes it or `wait_s` passes.
std::string read_until_close(int fd, double wait_s) {
  timeval wait{static_cast<time_t>(wait_s), static_cast<suseconds_t>((wait_s - static_cast<int>(wait_s)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  std::string received;
  char buf[4096];
  for (ssize_t got; (got = ::recv(fd, buf, sizeof buf, 0)) > 0;) received.append(buf, static_cast<size_t>(got));
  return received;
}

// Idle connections (connected, silent) and slowloris ones (a request head trickled a line every
// 100 ms, never finished), from 127.0.0.2 and up, `per_address` connections from each address.
struct Storm {
  std::vector<int> idle, slow;
  std::atomic<bool> stop{false};
  std::thread trickle;
  Storm(int port, int n_idle, int n_slow, int per_address = 100) {
    int made = 0;
    auto source = [&] { return "127.0.0." + std::to_string(2 + made++ / per_address); };
    for (int i = 0; i < n_idle; ++i)
      if (int fd = connect_from(port, source().c_str()); fd >= 0) idle.push_back(fd);
    for (int i = 0; i < n_slow; ++i)
      if (int fd = connect_from(port, source().c_str()); fd >= 0) {
        ::send(fd, "POST /v1/predict HTTP/1.1\r\n", 27, MSG_NOSIGNAL);
        slow.push_back(fd);
      }
    trickle = std::thread([this] {
      for (int k = 0; !stop; ++k) {
        const std::string line = "X-Slow-" + std::to_string(k) + ": 1\r\n";
        for (int fd : slow) ::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  ~Storm() { end(); }
  void end() {
    stop = true;
    if (trickle.joinable()) trickle.join();
    for (int fd : idle) ::close(fd);
    for (int fd : slow) ::close(fd);
    idle.clear();
    slow.clear();
  }
};

// `text` compressed as an HTTP Content-Encoding: gzip, deflate (a zlib stream) or br.
std::string compress(const std::string& coding, const std::string& text) {
  std::string out(text.size() + 1024, '\0');
  if (coding == "br") {
    size_t n = out.size();
    REQUIRE(BrotliEncoderCompress(BROTLI_DEFAULT_QUALITY, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, text.size(),
                                  reinterpret_cast<const uint8_t*>(text.data()), &n,
                                  reinterpret_cast<uint8_t*>(out.data())) == BROTLI_TRUE);
    out.resize(n);
    return out;
  }
  z_stream z{};
  REQUIRE(deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, coding == "gzip" ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) ==
          Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// The figure of one sample of /metrics ("ltk_http_connections" -> 12), -1 when absent.
double metric(const std::string& body, const std::string& sample) {
  const size_t at = body.find("\n" + sample + " ");
  return at == std::string::npos ? -1 : std::stod(body.substr(at + sample.size() + 2));
}

}  // namespace

TEST_CASE("serve: http parsing - heads, chunked bodies byte by byte, compressed bodies", "[serve][http]") {
  using namespace ltk::serve;
  const std::string head = "POST /v2/models/a%20b/infer?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
  size_t scanned = 0;
  // The head's end is found once, whichever way its bytes arrive.
  for (size_t n = 1; n < head.size(); ++n) CHECK(find_head_end(std::string_view(head).substr(0, n), scanned) == 0);
  CHECK(find_head_end(head + "{\"texts\"", scanned) == head.size());
  auto h = parse_head(head, 100);
  CHECK(h.error_status == 0);
  CHECK(h.method == "POST");
  CHECK(h.path == "/v2/models/a b/infer");
  CHECK(h.content_length == 12);
  CHECK(h.keep_alive);
  CHECK(parse_head("GET / HTTP/1.0\r\n\r\n", 100).keep_alive == false);
  CHECK(parse_head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 100).keep_alive);
  CHECK(parse_head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 100).keep_alive == false);
  // Refusals, each with its status.
  CHECK(parse_head("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 100).error_status == 413);
  CHECK(parse_head("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 100).error_status == 400);
  CHECK(parse_head("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 100).error_status == 400);
  CHECK(parse_head("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 100).error_status ==
        400);
  CHECK(parse_head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 100).error_status == 501);
  CHECK(parse_head("POST / HTTP/1.1\r\nContent-Encoding: zstd\r\n\r\n", 100).error_status == 415);
  CHECK(parse_head("GET / HTTP/2.0\r\n\r\n", 100).error_status == 505);
  CHECK(parse_head("GET /%zz HTTP/1.1\r\n\r\n", 100).error_status == 400);
  CHECK(parse_head("GET / HTTP/1.1\r\nHost x\r\n\r\n", 100).error_status == 400);
  CHECK(parse_head("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 100).error_status == 400);
  CHECK(parse_head("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n", 100).error_status == 414);
  CHECK(parse_head("GARBAGE\r\n\r\n", 100).error_status == 400);

  // A chunked body decodes the same fed whole or a byte at a time; extensions and trailers are skipped.
  const std::string chunked = "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  for (size_t step : {chunked.size(), size_t{1}, size_t{3}}) {
    ChunkedDecoder d;
    std::string in, body;
    ChunkedDecoder::Result r = ChunkedDecoder::Result::more;
    size_t fed = 0;
    while (r == ChunkedDecoder::Result::more && fed < chunked.size()) {
      in.append(chunked, fed, step);
      fed += step;
      size_t pos = 0;
      r = d.feed(in, pos, body, 100);
      in.erase(0, pos);
    }
    CHECK(r == ChunkedDecoder::Result::done);
    CHECK(body == "hello 0123456789");
    if (fed < chunked.size()) in.append(chunked, fed);
    CHECK(in == "NEXT");  // what follows is the next request's, left unread
  }
  auto feed_all = [](const std::string& bytes, size_t max) {
    ChunkedDecoder d;
    std::string body;
    size_t pos = 0;
    return d.feed(bytes, pos, body, max);
  };
  CHECK(feed_all("5\r\nhello\r\n0\r\n\r\n", 4) == ChunkedDecoder::Result::too_large);
  CHECK(feed_all("ffffffffffffffff\r\n", 100) == ChunkedDecoder::Result::too_large);
  CHECK(feed_all("zz\r\n", 100) == ChunkedDecoder::Result::bad);
  CHECK(feed_all("2\r\nhello\r\n", 100) == ChunkedDecoder::Result::bad);
  CHECK(feed_all(std::string(5000, '1'), 100) == ChunkedDecoder::Result::bad);

  // gzip, a zlib stream ("deflate" in HTTP) and brotli: decoded, capped at the limit once decoded,
  // refused when corrupt.
  const std::string text = "{\"texts\": [\"" + std::string(3000, 'a') + "\"]}";
  for (const std::string coding : {"gzip", "deflate", "br"}) {
    INFO(coding);
    const std::string packed = compress(coding, text);
    CHECK(packed.size() < 200);
    std::string body = packed;
    CHECK(decode_content(coding, body, 4096) == 0);
    CHECK(body == text);
    body = packed;
    CHECK(decode_content(coding, body, 1000) == 413);  // a small body that inflates past --max-body
    body = packed.substr(0, packed.size() - 3);
    CHECK(decode_content(coding, body, 4096) == 400);
    body = "not compressed at all";
    CHECK(decode_content(coding, body, 4096) == 400);
  }
}

TEST_CASE("serve: idle and slowloris connections lock out no client - header deadline - connection caps", "[serve]") {
  ltk::serve::raise_open_files_limit();  // the storms below hold hundreds of sockets on this side too
  TempDir dir;
  const std::string run = train_run(dir, "multiclass");
  auto elapsed = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  SECTION("more idle and slow connections than handler threads: requests are answered at once") {
    auto o = options(run);
    o.http.threads = 2;
    o.http.header_timeout_s = o.http.idle_timeout_s = 30;
    Running s(o);
    Storm storm(s.server.port(), 300, 50);
    REQUIRE(storm.idle.size() == 300);
    REQUIRE(storm.slow.size() == 50);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i)
      CHECK(s.post("/v1/predict", {{"texts", {"goal match"}}})["predictions"][0]["label"] == "sport");
    // A thread per connection would have them wait for the storm's connections' 30 s deadline.
    CHECK(elapsed(t0) < 10);
    const std::string m = s.call("GET", "/metrics").body;
    CHECK(metric(m, "ltk_http_connections") >= 351);
  }
  SECTION("a request head trickled a line at a time is cut at its deadline, a silent connection too") {
    auto o = options(run);
    o.http.header_timeout_s = 1;
    Running s(o);
    int fd = connect_from(s.server.port());
    REQUIRE(fd >= 0);
    const auto t0 = std::chrono::steady_clock::now();
    std::atomic<bool> done{false};
    std::thread trickle([&] {
      ::send(fd, "POST /v1/predict HTTP/1.1\r\n", 27, MSG_NOSIGNAL);
      for (int k = 0; !done && k < 80; ++k) {
        const std::string line = "X-Slow-" + std::to_string(k) + ": 1\r\n";
        if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) < 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    const std::string got = read_until_close(fd, 8);
    const double cut_after = elapsed(t0);
    done = true;
    trickle.join();
    ::close(fd);
    CHECK_THAT(got, Contains("HTTP/1.1 408") && Contains("--header-timeout-s (1 s)"));
    CHECK(cut_after > 0.8);
    CHECK(cut_after < 5);
    int silent = connect_from(s.server.port());
    const auto t1 = std::chrono::steady_clock::now();
    CHECK(read_until_close(silent, 8).empty());
    CHECK(elapsed(t1) < 5);
    ::close(silent);
    const std::string m = metrics_with(s, {"ltk_http_timeouts_total{phase=\"idle\"} 1"});
    CHECK(metric(m, "ltk_http_timeouts_total{phase=\"header\"}") == 1);
    CHECK(metric(m, "ltk_http_timeouts_total{phase=\"idle\"}") == 1);
    CHECK(s.call("GET", "/v2/health/live").status == 200);
  }
  SECTION("the per-client cap refuses one address, not the others - the total cap refuses anyone") {
    auto o = options(run);
    o.http.max_connections_per_client = 3;
    o.http.header_timeout_s = o.http.idle_timeout_s = 30;
    Running s(o);
    std::vector<int> mine;
    for (int i = 0; i < 3; ++i) mine.push_back(connect_from(s.server.port(), "127.0.0.3"));
    for (int fd : mine) REQUIRE(fd >= 0);
    int extra = connect_from(s.server.port(), "127.0.0.3");
    CHECK_THAT(read_until_close(extra, 5), Contains("HTTP/1.1 503") && Contains("--max-connections-per-client 3"));
    ::close(extra);
    CHECK(s.post("/v1/predict", {{"texts", {"goal"}}})["predictions"][0]["label"] == "sport");  // from 127.0.0.1
    // A connection closed frees its place.
    ::close(mine[0]);
    std::string m;
    for (int i = 0; i < 250 && metric(m = s.call("GET", "/metrics").body, "ltk_http_connections") > 3; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(metric(m, "ltk_http_connections") <= 3);  // the server saw the close
    mine[0] = connect_from(s.server.port(), "127.0.0.3");
    const std::string live = "GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ::send(mine[0], live.data(), live.size(), MSG_NOSIGNAL);
    CHECK_THAT(read_until_close(mine[0], 5), Contains("HTTP/1.1 200"));
    for (int fd : mine) ::close(fd);
    m = s.call("GET", "/metrics").body;
    CHECK(metric(m, "ltk_http_connections_refused_total{reason=\"per_client\"}") == 1);
    CHECK(metric(m, "ltk_http_connections_refused_total{reason=\"total\"}") == 0);

    auto all = options(run);
    all.http.max_connections = 4;
    all.http.max_connections_per_client = 0;
    all.http.header_timeout_s = all.http.idle_timeout_s = 30;
    Running capped(all);
    Storm storm(capped.server.port(), 4, 0, 1);  // from four addresses
    int fifth = connect_from(capped.server.port());
    CHECK_THAT(read_until_close(fifth, 5), Contains("HTTP/1.1 503") && Contains("--max-connections 4"));
    ::close(fifth);
    storm.end();
    std::string after;
    for (int i = 0; i < 100; ++i) {
      auto r = capped.call("GET", "/metrics");
      if (r.status == 200 && (after = r.body).find("reason=\"total\"} 1") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(metric(after, "ltk_http_connections_refused_total{reason=\"total\"}") == 1);
  }
}

TEST_CASE("serve: pipelined requests and a half-close - a bare CR - a client streaming into a refusal", "[serve]") {
  TempDir dir;
  const std::string run = train_run(dir, "multiclass");
  auto o = options(run);
  o.http.max_body = 4096;
  Running s(o);
  // Two requests in one write, then the client's half of the connection closed: both answered.
  int fd = connect_from(s.server.port());
  const std::string two =
      "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n";
  ::send(fd, two.data(), two.size(), MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  const std::string both = read_until_close(fd, 5);
  ::close(fd);
  CHECK_THAT(both, Contains("{\"live\":true}") && Contains("{\"ready\":true}"));
  // A bare CR in a header, which a proxy might take for the end of a line: 400.
  auto bare = raw_exchange(s.server.port(), "GET /v1/model HTTP/1.1\r\nX-A: b\rContent-Length: 5\r\n\r\n", 3).first;
  CHECK_THAT(bare, Contains("HTTP/1.1 400") && Contains("bare CR"));
  // A client that keeps streaming a body the server refused (413): the others are answered meanwhile,
  // and the server closes it after dropping 1 MiB of it.
  fd = connect_from(s.server.port());
  const std::string head = "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n";
  ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  std::atomic<bool> cut{false};
  std::thread stream([&] {
    const std::string chunk(64 * 1024, 'x');
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
      if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0) {
        cut = true;
        break;
      }
  });
  for (int i = 0; i < 10; ++i) CHECK(s.call("GET", "/v2/health/live").status == 200);
  stream.join();
  ::close(fd);
  CHECK(cut);
}

TEST_CASE("cli: ltk-serve drains and exits 0 on SIGTERM during and after a connection storm - every time",
          "[serve][cli]") {
  ltk::serve::raise_open_files_limit();
  TempDir dir;
  const std::string run = train_run(dir, "multiclass");
  const std::string body = R"({"texts": ["goal match", "linux kernel"]})";
  const std::string request =
      "POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
  // A response is whole when its body has the length its head declares.
  auto whole = [](const std::string& r) {
    const size_t end = r.find("\r\n\r\n"), at = r.find("Content-Length: ");
    if (end == std::string::npos || at == std::string::npos) return false;
    return r.size() - end - 4 == std::stoul(r.substr(at + 16)) && r.rfind("HTTP/1.1 200", 0) == 0;
  };
  for (int round = 0; round < 6; ++round) {
    const bool during = round % 2 == 0;
    INFO("round " << round << (during ? ": SIGTERM during the storm" : ": SIGTERM after the storm"));
    const std::string port_file = dir.file("port" + std::to_string(round));
    pid_t pid = ltk::test::spawn_app("ltk-serve",
                                     {"--run", run, "--port", "0", "--port-file", port_file, "--header-timeout-s", "1"},
                                     dir.file("serve.err"));
    for (int i = 0; i < 300 && !std::filesystem::exists(port_file); ++i) usleep(50000);
    REQUIRE(std::filesystem::exists(port_file));
    const int port = std::stoi(ltk::test::read_text(port_file));
    auto storm = std::make_unique<Storm>(port, 300, 50);
    std::atomic<bool> signalled{false}, stop{false};
    std::atomic<int> answered{0}, broken{0}, lost_before_signal{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < 4; ++c)
      clients.emplace_back([&] {
        while (!stop) {
          const bool before = !signalled;
          const std::string got = raw_exchange(port, request, 10).first;
          if (got.empty()) {
            if (before && !signalled) ++lost_before_signal;  // refused or dropped while the server still served
            if (signalled) std::this_thread::sleep_for(std::chrono::milliseconds(20));
          } else if (whole(got)) {
            ++answered;
          } else {
            ++broken;
          }
        }
      });
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    if (!during) {
      storm->end();
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the server cuts what is left of it
    }
    signalled = true;
    kill(pid, SIGTERM);
    const int code = ltk::test::wait_exit_code(pid, 40);
    stop = true;
    for (auto& t : clients) t.join();
    storm.reset();
    INFO(ltk::test::read_text(dir.file("serve.err")));
    CHECK(code == 0);
    CHECK(answered > 0);
    CHECK(broken == 0);
    CHECK(lost_before_signal == 0);
  }
}
