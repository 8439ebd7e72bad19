#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <ATen/autocast_mode.h>
#include <torch/serialize.h>

#include "ltk/config/config.h"
#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/core/fault.h"
#include "ltk/core/files.h"
#include "ltk/core/stop.h"
#include "ltk/data/formats.h"
#include "ltk/data/ngrams.h"
#include "ltk/data/shards.h"
#include "ltk/data/vocab.h"
#include "ltk/data/wordpiece.h"
#include "ltk/eval/evaluator.h"
#include "ltk/eval/report.h"
#include "ltk/io/checkpoint.h"
#include "ltk/io/run.h"
#include "ltk/metrics/metrics.h"
#include "ltk/models/bow.h"
#include "ltk/models/linear.h"
#include "ltk/models/load_config.h"
#include "ltk/models/registry.h"
#include "ltk/task/task.h"
#include "ltk/train/corpus_shards.h"
#include "ltk/train/dual_cd.h"
#include "ltk/train/optim.h"
#include "ltk/train/precision.h"
#include "ltk/train/run_training.h"
#include "ltk/train/trainer.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using ltk::test::TempDir;

namespace {
ltk::TrainOptions overwriting() {
  ltk::TrainOptions o;
  o.overwrite = true;
  return o;
}
ltk::TrainOptions resuming() {
  ltk::TrainOptions o;
  o.resume = true;
  return o;
}
}  // namespace

TEST_CASE("metrics: accuracy, per-class scores, macro-F1 over present classes", "[train][metrics]") {
  // gold:  0 0 1 1 2   predicted: 0 1 1 1 0
  auto m = ltk::classification_metrics({0, 0, 1, 1, 2}, {0, 1, 1, 1, 0}, 4);
  CHECK(m.accuracy == Approx(0.6));
  CHECK(m.per_class[0].precision == Approx(0.5));
  CHECK(m.per_class[0].recall == Approx(0.5));
  CHECK(m.per_class[1].precision == Approx(2.0 / 3));
  CHECK(m.per_class[1].recall == Approx(1.0));
  CHECK(m.per_class[1].f1 == Approx(0.8));
  CHECK(m.per_class[2].f1 == 0);
  CHECK(m.confusion[2][0] == 1);
  CHECK(m.macro_f1 == Approx((0.5 + 0.8 + 0.0) / 3));  // class 3 never appears: not averaged
}

TEST_CASE("schedule: constant, and linear warmup then decay to zero", "[train][optim]") {
  ltk::SchedulerConfig c;
  CHECK(ltk::LrSchedule(c, 0.1, 10).at(7) == Approx(0.1));
  c.type = "linear";
  c.warmup_steps = 2;
  ltk::LrSchedule s(c, 1.0, 10);
  CHECK(s.at(0) == Approx(0.5));
  CHECK(s.at(1) == Approx(1.0));
  CHECK(s.at(2) == Approx(1.0));
  CHECK(s.at(6) == Approx(0.5));
  CHECK(s.at(9) == Approx(0.125));
}

TEST_CASE("train: a bow model reaches 100% training accuracy on a separable toy set", "[train][e2e]") {
  TempDir dir;
  ltk::Config config = ltk::load_config(ltk::test::toy_config(dir));
  auto summary = ltk::run_training(config);
  REQUIRE(summary.test.has_value());
  CHECK(summary.steps == 15 * 8);  // 60 samples / batch 8 = 8 batches per epoch
  auto run = ltk::load_run(config.output_dir, "last");
  auto train = run.encode(ltk::read_tsv(config.data.train), config.data.train, true);
  auto report = run.task->evaluate(ltk::predict(*run.model, *run.task, train, 32, run.device, run.vocab.size()));
  CHECK(report.get("accuracy") == 1.0);
  // The run directory is a complete artefact.
  for (const char* f : {"config.json", "vocab.txt", "labels.txt", "task.json", "metrics.jsonl", "train.log",
                        "checkpoints/best.json", "checkpoints/last.json"})
    CHECK(std::filesystem::exists(config.output_dir + "/" + f));
  for (const char* which : {"best", "last"})
    for (const char* f : {"weights.pt", "optim.pt", "state.pt", "meta.json"})
      CHECK(std::filesystem::exists(run.dir.checkpoint_dir(which) + "/" + f));
  auto metrics = ltk::test::read_text(config.output_dir + "/metrics.jsonl");
  CHECK_THAT(metrics, Contains("\"kind\":\"valid\"") && Contains("\"kind\":\"test\""));
  // The resolved config is written back and parses to the same config.
  CHECK(ltk::to_json(run.config) == ltk::to_json(config));
}

TEST_CASE("train: the same config and seed give identical weights", "[train][determinism]") {
  TempDir dir;
  ltk::Config config = ltk::load_config(ltk::test::toy_config(dir), {"trainer.epochs=2"});
  ltk::run_training(config);
  auto last = [&] { return ltk::RunDirectory::open(config.output_dir).checkpoint("last"); };
  auto first = ltk::test::read_text(last());
  auto metrics = ltk::test::read_text(config.output_dir + "/metrics.jsonl");
  ltk::run_training(config, overwriting());
  CHECK(ltk::test::read_text(last()) == first);
  CHECK(ltk::test::strip_timing(ltk::test::read_text(config.output_dir + "/metrics.jsonl")) ==
        ltk::test::strip_timing(metrics));
  REQUIRE_THROWS_WITH(ltk::run_training(config), Contains("already holds a run") && Contains("--overwrite"));
}

TEST_CASE("pitfall P3: the five steps lower the loss - a non-finite loss stops with step and samples",
          "[train][step]") {
  TempDir dir;
  ltk::Config config = ltk::load_config(ltk::test::toy_config(dir));
  auto run_dir = ltk::RunDirectory::create(config.output_dir, false);
  auto model = ltk::build_model(config.model, ltk::ModelContext{10, 3, 0});
  ltk::MulticlassTask task(3, "mean");
  ltk::Trainer trainer(config, model, task, torch::kCPU, run_dir, 10);
  ltk::Batch b;
  b.ids = torch::tensor({2, 3, 4, 5}, torch::kLong).view({2, 2});
  b.lengths = torch::tensor({2, 2}, torch::kLong);
  b.mask = torch::ones({2, 2}, torch::kBool);
  b.labels = torch::tensor({0, 2}, torch::kLong);
  b.indices = torch::tensor({17, 42}, torch::kLong);
  double first = trainer.train_step(b, 1);
  double later = first;
  for (int i = 0; i < 20; ++i) later = trainer.train_step(b, i + 2);
  CHECK(later < first);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.fill_(NAN);
  }
  REQUIRE_THROWS_AS(trainer.train_step(b, 99), ltk::TrainError);
  REQUIRE_THROWS_WITH(trainer.train_step(b, 99),
                      Contains("non-finite") && Contains("step 99") && Contains("[17,42]") && Contains("lr"));
}

TEST_CASE("train: missing data files are reported before the run directory is made", "[train][e2e]") {
  TempDir dir;
  ltk::Config config = ltk::load_config(ltk::test::toy_config(dir), {"data.valid=" + dir.file("nope.tsv")});
  REQUIRE_THROWS_WITH(ltk::run_training(config), Contains("data.valid") && Contains("nope.tsv"));
  CHECK_FALSE(std::filesystem::exists(config.output_dir));
}

TEST_CASE("schedules: step, cosine, plateau scale and warmup ratio", "[train][optim]") {
  ltk::SchedulerConfig c;
  c.type = "step";
  c.step_size = 3;
  c.gamma = 0.5;
  ltk::LrSchedule step(c, 1.0, 20);
  CHECK(step.at(2) == Approx(1.0));
  CHECK(step.at(3) == Approx(0.5));
  CHECK(step.at(7) == Approx(0.25));
  c.type = "cosine";
  c.min_lr = 0.1;
  c.warmup_ratio = 0.1;
  ltk::LrSchedule cosine(c, 1.0, 20);
  CHECK(cosine.warmup_steps() == 2);
  CHECK(cosine.at(0) == Approx(0.5));
  CHECK(cosine.at(2) == Approx(1.0));
  CHECK(cosine.at(11) == Approx(0.55));
  CHECK(cosine.at(20) == Approx(0.1));
  c.type = "plateau";
  c.warmup_ratio = 0;
  CHECK(ltk::LrSchedule(c, 0.2, 20).at(5, 0.25) == Approx(0.05));
}

TEST_CASE("clipping: by global norm and by value", "[train][optim]") {
  auto a = torch::zeros({2}, torch::requires_grad()), b = torch::zeros({1}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({3.f, 0.f});
  b.mutable_grad() = torch::tensor({4.f});
  double norm = ltk::clip_gradients({a, b}, 1.0, 0.0);
  CHECK(norm == Approx(5.0));
  CHECK(a.grad()[0].item<float>() == Approx(0.6).epsilon(1e-4));
  CHECK(b.grad()[0].item<float>() == Approx(0.8).epsilon(1e-4));
  b.mutable_grad() = torch::tensor({4.f});
  ltk::clip_gradients({b}, 0.0, 0.5);
  CHECK(b.grad()[0].item<float>() == Approx(0.5));
}

namespace {
std::map<std::string, torch::Tensor> weights_of(const std::string& path) {
  auto raw = ltk::test::read_text(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : torch::pickle_load(std::vector<char>(raw.begin(), raw.end())).toGenericDict())
    out[kv.key().toStringRef()] = kv.value().toTensor();
  return out;
}
}  // namespace

TEST_CASE("accumulation: k micro-batches make the same step as one batch k times larger", "[train][accumulate]") {
  // ... class weights included: a weighted mean cross-entropy divides by the summed target weights.
  for (std::string optimizer : {"sgd", "adam", "sgd-weighted"}) {
    INFO(optimizer);
    TempDir dir;
    std::string cfg = ltk::test::toy_config(dir);
    const bool weighted = optimizer == "sgd-weighted";
    std::vector<std::string> common = {"trainer.shuffle=false", "trainer.epochs=2", "data.valid=",
                                       "data.test=", "optimizer.type=" + optimizer.substr(0, optimizer.find('-')),
                                       "optimizer.lr=0.1"};
    if (weighted) common.push_back(R"(task.class_weights={"sport": 5, "food": 1, "tech": 0.2})");
    auto big = common, small = common;
    big.insert(big.end(), {"trainer.batch_size=12", "output_dir=" + dir.file("big")});
    // (micro-batches of 2 hold other mixes of classes, so their summed weights differ)
    small.insert(small.end(), {weighted ? "trainer.batch_size=2" : "trainer.batch_size=3",
                               weighted ? "trainer.accumulate=6" : "trainer.accumulate=4", "output_dir=" + dir.file("small")});
    auto sa = ltk::run_training(ltk::load_config(cfg, big));
    auto sb = ltk::run_training(ltk::load_config(cfg, small));
    CHECK(sa.steps == 10);  // 60 samples / 12
    CHECK(sb.steps == 10);
    auto wa = weights_of(ltk::RunDirectory::open(dir.file("big")).checkpoint("last"));
    auto wb = weights_of(ltk::RunDirectory::open(dir.file("small")).checkpoint("last"));
    for (const auto& [name, t] : wa) {
      INFO(name);
      CHECK(torch::allclose(t, wb[name], 1e-5, 1e-6));
    }
  }
}

TEST_CASE("accumulation: mlm micro-batches weigh by their masked pieces, masks independent of batching",
          "[train][accumulate][mlm]") {
  TempDir dir;
  std::string cfg = ltk::test::toy_config(dir);
  std::vector<std::string> common = {
      "trainer.shuffle=false", "trainer.epochs=2", "data.valid=", "data.test=", "task.type=mlm",
      "data.tokenizer.type=wordpiece", "data.tokenizer.vocab_size=40", "data.max_len=12",
      R"(model={"type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 16, "max_position_embeddings": 12, "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0})",
      "optimizer.type=sgd", "optimizer.lr=0.5"};
  auto big = common, small = common;
  big.insert(big.end(), {"trainer.batch_size=12", "output_dir=" + dir.file("big")});
  small.insert(small.end(), {"trainer.batch_size=3", "trainer.accumulate=4", "output_dir=" + dir.file("small")});
  auto sa = ltk::run_training(ltk::load_config(cfg, big));
  auto sb = ltk::run_training(ltk::load_config(cfg, small));
  CHECK(sa.steps == 10);
  CHECK(sb.steps == 10);
  auto wa = weights_of(ltk::RunDirectory::open(dir.file("big")).checkpoint("last"));
  auto wb = weights_of(ltk::RunDirectory::open(dir.file("small")).checkpoint("last"));
  for (const auto& [name, t] : wa) {
    INFO(name);
    CHECK(torch::allclose(t, wb[name], 1e-4, 1e-6));
  }
}

TEST_CASE("early stopping, keep_best and the best/last pointers", "[train][early]") {
  TempDir dir;
  // min_delta 10 on accuracy: nothing after the first validation counts as an improvement.
  auto config = ltk::load_config(ltk::test::toy_config(dir), {"trainer.epochs=10", "trainer.patience=2",
                                                              "trainer.min_delta=10", "trainer.keep_best=2"});
  auto summary = ltk::run_training(config);
  CHECK(summary.early_stopped);
  CHECK(summary.steps == 3 * 8);
  CHECK(summary.best_step == 8);
  auto metrics = ltk::test::read_text(config.output_dir + "/metrics.jsonl");
  CHECK(std::count(metrics.begin(), metrics.end(), '\n') > 0);
  size_t valid_records = 0;
  for (size_t pos = 0; (pos = metrics.find("\"kind\":\"valid\"", pos)) != std::string::npos; ++pos) ++valid_records;
  CHECK(valid_records == 3);
  auto run = ltk::RunDirectory::open(config.output_dir);
  CHECK_THAT(run.checkpoint_dir("best"), Contains("step-8"));
  CHECK_THAT(run.checkpoint_dir("last"), Contains("step-24"));
  int dirs = 0;
  for (const auto& e : std::filesystem::directory_iterator(config.output_dir + "/checkpoints")) dirs += e.is_directory();
  CHECK(dirs == 3);  // the last and the two best
  CHECK(std::filesystem::exists(run.checkpoint("step-16")));
  REQUIRE_THROWS_WITH(run.checkpoint("step-5"), Contains("no checkpoint step-5") && Contains("step-8"));
}

TEST_CASE("guards: on_nonfinite skip counts skipped batches instead of stopping", "[train][step]") {
  TempDir dir;
  ltk::Config config = ltk::load_config(ltk::test::toy_config(dir), {"trainer.on_nonfinite=skip", "trainer.epochs=1"});
  auto run_dir = ltk::RunDirectory::create(config.output_dir, false);
  ltk::TokenCounter counter;
  auto model = ltk::build_model(config.model, ltk::ModelContext{10, 3, 0, nullptr});
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.fill_(NAN);
  }
  ltk::MulticlassTask task(3, "mean");
  ltk::Trainer trainer(config, model, task, torch::kCPU, run_dir, 10);
  ltk::TextDataset data;
  data.set_source("mem", ltk::TargetKind::class_id, 3);
  for (int i = 0; i < 10; ++i) data.add({2, 3}, 2, {i % 3}, 0.f, i + 1);
  auto summary = trainer.fit(data, nullptr);
  CHECK(summary.nonfinite_skipped == 2);  // 10 samples, batch 8
  CHECK(summary.steps == 0);
}

TEST_CASE("fine-tuning: init_from another run reuses its vocabulary, strict by default, freeze", "[train][finetune]") {
  TempDir dir;
  auto base = ltk::load_config(ltk::test::toy_config(dir), {"trainer.epochs=2"});
  ltk::run_training(base);
  auto tuned = ltk::load_config(ltk::test::toy_config(dir), {"trainer.epochs=1", "output_dir=" + dir.file("tuned"),
                                                             "model.init_from=" + base.output_dir,
                                                             "model.freeze=[\"embedding\"]"});
  ltk::run_training(tuned);
  CHECK(ltk::test::read_text(dir.file("tuned/vocab.txt")) == ltk::test::read_text(base.output_dir + "/vocab.txt"));
  auto before = weights_of(ltk::RunDirectory::open(base.output_dir).checkpoint("best"));
  auto after = weights_of(ltk::RunDirectory::open(dir.file("tuned")).checkpoint("last"));
  CHECK(before["embedding.weight"].equal(after["embedding.weight"]));   // frozen
  CHECK_FALSE(before["output.weight"].equal(after["output.weight"]));  // trained
  auto other = ltk::load_config(ltk::test::toy_config(dir), {"output_dir=" + dir.file("other"), "model.embed_dim=8",
                                                             "model.init_from=" + base.output_dir});
  REQUIRE_THROWS_WITH(ltk::run_training(other), Contains("embedding.weight") && Contains("[20, 16]"));
  auto loose = ltk::load_config(ltk::test::toy_config(dir), {"output_dir=" + dir.file("loose"), "model.embed_dim=8",
                                                             "model.init_from=" + base.output_dir,
                                                             "model.init_strict=false", "trainer.epochs=1"});
  CHECK_NOTHROW(ltk::run_training(loose));
  auto typo = ltk::load_config(ltk::test::toy_config(dir), {"output_dir=" + dir.file("typo"), "model.freeze=[\"embeding\"]"});
  REQUIRE_THROWS_WITH(ltk::run_training(typo), Contains("'model.freeze'") && Contains("did you mean"));
}

TEST_CASE("sampler: class-balanced sampling evens out an imbalanced split", "[train][sampler]") {
  std::vector<int32_t> classes(100, 0);
  for (int i = 0; i < 10; ++i) classes[i * 10] = 1;
  ltk::BatchSampler s(100, 10, true, false, 3);
  s.set_balanced(classes);
  int64_t minority = 0;
  for (const auto& b : s.epoch(1))
    for (int64_t i : b) minority += classes[i];
  CHECK(minority > 35);
  CHECK(minority < 65);
  ltk::BatchSampler again(100, 10, true, false, 3);  // the same seed draws the same batches
  again.set_balanced(classes);
  CHECK(s.epoch(1) == again.epoch(1));
  CHECK(s.epoch(1) != s.epoch(2));
}

TEST_CASE("train: length bucketing with max_tokens trains, deterministically", "[train][sampler]") {
  TempDir dir;
  auto config = ltk::load_config(ltk::test::toy_config(dir), {"trainer.epochs=3", "trainer.bucket_pool=3",
                                                              "trainer.max_tokens=24", "trainer.accumulate=2"});
  auto a = ltk::run_training(config);
  auto first = ltk::test::read_text(ltk::RunDirectory::open(config.output_dir).checkpoint("last"));
  auto b = ltk::run_training(config, overwriting());
  CHECK(a.steps == b.steps);
  CHECK(ltk::test::read_text(ltk::RunDirectory::open(config.output_dir).checkpoint("last")) == first);
  REQUIRE(a.test.has_value());
  CHECK(a.test->get("accuracy") > 0.8);
}

TEST_CASE("run directory: --overwrite deletes only what ltk made - a second trainer is refused naming the first",
          "[train][io]") {
  TempDir dir;
  // A user's project folder with a config.json of its own: refused untouched, even with --overwrite.
  std::filesystem::create_directories(dir.file("project"));
  ltk::test::write_file(dir.file("project/config.json"), "{\"mine\": true}");
  auto project = ltk::load_config(ltk::test::toy_config(dir), {"output_dir=" + dir.file("project")});
  REQUIRE_THROWS_WITH(ltk::run_training(project, overwriting()), Contains("did not write") && Contains(".ltk-run"));
  CHECK(ltk::test::read_text(dir.file("project/config.json")) == "{\"mine\": true}");
  CHECK_FALSE(std::filesystem::exists(dir.file("project/.lock")));
  // A folder with other files (a log the shell made, say): the run goes there, and --overwrite
  // removes ltk's files only.
  std::filesystem::create_directories(dir.file("mixed"));
  ltk::test::write_file(dir.file("mixed/stderr.log"), "mine");
  auto mixed = ltk::load_config(ltk::test::toy_config(dir), {"output_dir=" + dir.file("mixed"), "trainer.epochs=1"});
  ltk::run_training(mixed);
  ltk::run_training(mixed, overwriting());
  CHECK(ltk::test::read_text(dir.file("mixed/stderr.log")) == "mine");
  CHECK(std::filesystem::exists(dir.file("mixed/checkpoints/last.json")));
  // An ltk run is replaced with --overwrite only.
  auto config = ltk::load_config(ltk::test::toy_config(dir), {"trainer.epochs=1"});
  ltk::run_training(config);
  CHECK(std::filesystem::exists(config.output_dir + "/.ltk-run"));
  REQUIRE_THROWS_WITH(ltk::run_training(config), Contains("--overwrite"));
  {
    // Another process training there (a second lock on the directory): refused, naming its pid.
    ltk::DirectoryLock held(config.output_dir);
    REQUIRE_THROWS_WITH(ltk::run_training(config, overwriting()), Contains("in use by another ltk-train (pid "));
    CHECK(std::filesystem::exists(config.output_dir + "/checkpoints/last.json"));  // nothing deleted
  }
  ltk::run_training(config, overwriting());
}

TEST_CASE("signals: a stop during a validation checkpoints the state before it - resumed, the run validates first "
          "and ends identical",
          "[train][signals]") {
  TempDir dir;
  const std::vector<std::string> common = {"trainer.epochs=2", "trainer.eval_every=4", "model.dropout=0.3"};
  auto with_dir = [&](const std::string& out) {
    auto o = common;
    o.push_back("output_dir=" + dir.file(out));
    return ltk::load_config(ltk::test::toy_config(dir), o);
  };
  auto ref = with_dir("ref");
  ltk::run_training(ref);
  // A stop request lands at step 4, just before its validation, which polls the flag and stops.
  ltk::set_fault_hook([](const char* point, int64_t step) {
    if (std::string(point) == "after_step" && step == 4) ltk::request_stop(SIGINT);
  });
  auto stopped = with_dir("stopped");
  auto s = ltk::run_training(stopped);
  ltk::set_fault_hook(nullptr);
  ltk::clear_stop();
  CHECK(s.interrupted == SIGINT);
  auto run = ltk::RunDirectory::open(stopped.output_dir);
  auto meta = ltk::read_json_file(run.checkpoint_dir("last") + "/meta.json");
  CHECK(meta["step"] == 4);
  CHECK(meta["state"]["validation_pending"] == true);
  auto resumed = ltk::run_training(ltk::resume_config(stopped.output_dir, {}), resuming());
  CHECK(resumed.interrupted == 0);
  CHECK(ltk::test::read_text(run.checkpoint("last")) ==
        ltk::test::read_text(ltk::RunDirectory::open(ref.output_dir).checkpoint("last")));
  auto valid_records = [](const std::string& path) {
    std::vector<double> out;
    for (const auto& r : ltk::read_jsonl(path))
      if (r["kind"] == "valid") out.push_back(r["loss"].get<double>());
    return out;
  };
  CHECK(valid_records(run.metrics_path()) == valid_records(ref.output_dir + "/metrics.jsonl"));
  CHECK(valid_records(run.metrics_path()).size() == 4);
}

namespace {

// A model whose second forward pass asks to stop, as a Ctrl-C arriving mid-evaluation would.
struct StopOnSecondBatch : ltk::TextModel {
  int calls = 0;
  torch::Tensor forward(const ltk::Batch& batch) override {
    if (++calls == 2) ltk::request_stop(SIGTERM);
    return torch::zeros({batch.size(), 3});
  }
};

}  // namespace

TEST_CASE("signals: an evaluation polls the stop flag between batches", "[train][signals]") {
  TempDir dir;
  auto config = ltk::load_config(ltk::test::toy_config(dir), {"trainer.epochs=1"});
  ltk::run_training(config);
  auto loaded = ltk::load_run(config.output_dir);
  auto examples = ltk::read_examples(config.data.valid, ltk::reader_options(config.data, config.task)).examples;
  auto data = loaded.encode(examples, config.data.valid, true);
  REQUIRE(loaded.task->num_outputs() == 3);
  StopOnSecondBatch model;
  REQUIRE_THROWS_AS(ltk::predict(model, *loaded.task, data, 4, torch::kCPU, loaded.vocab.size()), ltk::StopRequested);
  CHECK(model.calls == 2);  // the third batch never ran
  ltk::clear_stop();
  CHECK(ltk::predict(model, *loaded.task, data, 4, torch::kCPU, loaded.vocab.size()).samples == data.size());
}

namespace {

// A random sparse classification problem: n rows of about 8 nonzeros in `cols` columns (the last
// column the intercept's, 1), and labels of `classes` classes that depend on the rows.
ltk::SparseRows random_rows(int64_t n, int64_t cols, int64_t classes, uint64_t seed, std::vector<int64_t>& labels) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> value(0.1, 1.0);
  ltk::SparseRows x;
  x.num_cols = cols;
  labels.clear();
  for (int64_t i = 0; i < n; ++i) {
    std::set<int32_t> used;
    for (int k = 0; k < 8; ++k) used.insert(static_cast<int32_t>(rng() % static_cast<uint64_t>(cols - 1)));
    double score = 0;
    for (int32_t c : used) {
      const double v = value(rng);
      x.cols.push_back(c);
      x.values.push_back(v);
      score += (c % classes) * v;
    }
    x.cols.push_back(static_cast<int32_t>(cols - 1));
    x.values.push_back(1.0);
    x.offsets.push_back(static_cast<int64_t>(x.cols.size()));
    labels.push_back(static_cast<int64_t>(score) % classes);  // learnable, with noise
  }
  return x;
}

// 1/2 ||w||^2 + sum_i c_i max(0, 1 - y_i w.x_i)^2, and its gradient's norm.
std::pair<double, double> primal(const ltk::SparseRows& x, const std::vector<int8_t>& y, const std::vector<double>& c,
                                 const std::vector<double>& w) {
  std::vector<double> grad = w;
  double value = 0;
  for (double v : w) value += v * v / 2;
  for (int64_t i = 0; i < x.rows(); ++i) {
    double m = 0;
    for (int64_t k = x.offsets[i]; k < x.offsets[i + 1]; ++k) m += w[x.cols[k]] * x.values[k];
    const double xi = std::max(0.0, 1 - y[i] * m);
    value += c[i] * xi * xi;
    for (int64_t k = x.offsets[i]; k < x.offsets[i + 1]; ++k) grad[x.cols[k]] -= 2 * c[i] * xi * y[i] * x.values[k];
  }
  double g = 0;
  for (double v : grad) g += v * v;
  return {value, std::sqrt(g)};
}

}  // namespace

TEST_CASE(
    "dual_cd: the solver reaches the optimum - duality gap, gradient, strong convexity bound - thread-count "
    "independent one-vs-rest",
    "[train][dual_cd]") {
  std::vector<int64_t> labels;
  const ltk::SparseRows x = random_rows(400, 120, 3, 5, labels);
  std::vector<int8_t> y;
  for (auto l : labels) y.push_back(l == 1 ? 1 : -1);
  std::vector<double> cost(y.size(), 0.7);
  ltk::DualCdOptions tight;
  tight.tol = 1e-10;
  tight.max_iter = 100000;
  const auto best = ltk::solve_l2_svc_dual(x, y, cost, tight);
  REQUIRE(best.converged);
  // At the optimum the primal and dual objectives meet and the primal gradient vanishes: tol 1e-10
  // on the dual's projected gradient leaves |grad P| of order 1e-10 times the rows' norms; float64
  // sums of ~10^3 terms add ~1e-13. 1e-6 and 1e-4 hold with orders of magnitude to spare.
  const auto [p_best, g_best] = primal(x, y, cost, best.w);
  CHECK(p_best == Approx(best.primal).epsilon(1e-12));
  CHECK(best.primal - best.dual >= -1e-9);
  CHECK(best.primal - best.dual <= 1e-6 * best.primal);
  CHECK(g_best < 1e-4);
  // LinearSVC's default tolerance: a point no better than the optimum, and (the objective is
  // 1-strongly convex) within sqrt(2 (P(w) - P(w*))) of it.
  ltk::DualCdOptions usual;
  const auto near = ltk::solve_l2_svc_dual(x, y, cost, usual);
  REQUIRE(near.converged);
  const double excess = primal(x, y, cost, near.w).first - p_best;
  CHECK(excess >= -1e-9);
  double dist2 = 0;
  for (size_t f = 0; f < near.w.size(); ++f) dist2 += (near.w[f] - best.w[f]) * (near.w[f] - best.w[f]);
  // (1-strong convexity around `best`, itself within |grad P(best)| of stationary.)
  CHECK(dist2 <= 2 * excess + 2 * g_best * std::sqrt(dist2) + 1e-12);
  CHECK(excess <= 1e-3 * p_best);
  // One-vs-rest: class k's problem is the binary one above for k = 1; the thread count changes nothing.
  const auto one = ltk::solve_one_vs_rest(x, labels, 3, 0.7, {}, tight, 1);
  const auto three = ltk::solve_one_vs_rest(x, labels, 3, 0.7, {}, tight, 3);
  REQUIRE(one.size() == 3);
  for (size_t k = 0; k < 3; ++k) CHECK(one[k].w == three[k].w);
  CHECK(one[1].primal == Approx(best.primal).epsilon(1e-8));
  // A class weight is the positives' cost.
  const auto weighted = ltk::solve_one_vs_rest(x, labels, 3, 0.7, {1.0, 3.0, 1.0}, tight, 2);
  std::vector<double> cost_w(y.size());
  for (size_t i = 0; i < y.size(); ++i) cost_w[i] = y[i] > 0 ? 2.1 : 0.7;
  CHECK(primal(x, y, cost_w, weighted[1].w).second < 1e-4);
}

// The toy corpus without its "tech" texts: a binary task's train and valid files in `dir`.
void write_binary_toy(const TempDir& dir, const std::string& train_name, const std::string& valid_name) {
  std::string train, valid;
  for (auto [text, out] : {std::pair<std::string, std::string*>{ltk::test::toy_corpus(20, 1), &train},
                           {ltk::test::toy_corpus(5, 2), &valid}}) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("tech", 0) != 0) *out += line + "\n";
  }
  ltk::test::write_file(dir.file(train_name), train);
  ltk::test::write_file(dir.file(valid_name), valid);
}

TEST_CASE(
    "dual_cd: the linear model solved exactly - one checkpoint, its validation, ltk-eval - what it cannot do is "
    "refused",
    "[train][dual_cd]") {
  TempDir dir;
  const std::string cfg = ltk::test::toy_config(dir);
  std::vector<std::string> sets = {"model={\"type\": \"linear\", \"C\": 0.5}", "optimizer.type=dual_cd",
                                   "task.loss=squared_hinge", "trainer.log_every=1000"};
  ltk::Config config = ltk::load_config(cfg, sets);
  auto summary = ltk::run_training(config);
  CHECK(summary.steps == 1);
  CHECK(summary.epochs == 1);
  REQUIRE(summary.test);
  CHECK(summary.test->get("accuracy") > 0.9);
  auto metrics = ltk::test::read_text(dir.file("run/metrics.jsonl"));
  CHECK_THAT(metrics, Contains("\"kind\":\"valid\"") && Contains("\"kind\":\"test\""));
  CHECK(std::filesystem::exists(dir.file("run/checkpoints/best.json")));
  auto eval =
      ltk::test::run_app("ltk-eval", "--run '" + dir.file("run") + "' --data '" + dir.file("valid.tsv") + "' --json");
  INFO(eval.err);
  CHECK(eval.code == 0);
  CHECK(nlohmann::json::parse(eval.out).at("accuracy").get<double>() == Approx(summary.test->get("accuracy")));
  ltk::TrainOptions resume;
  resume.resume = true;
  // A run made before a key existed (task.calibrate) resumes: the key takes its default.
  {
    auto saved = nlohmann::json::parse(ltk::test::read_text(dir.file("run/config.json")));
    saved["task"].erase("calibrate");
    ltk::test::write_file(dir.file("run/config.json"), saved.dump(2));
  }
  // Resumed (as ltk-sweep resumes a trial with a checkpoint), it is solved again: the same.
  auto again = ltk::run_training(ltk::resume_config(dir.file("run"), {}), resume);
  REQUIRE(again.test);
  CHECK(again.test->get("loss") == summary.test->get("loss"));
  CHECK(again.steps == 1);
  ltk::TrainOptions pause;
  pause.overwrite = true;
  pause.until_epoch = 1;
  REQUIRE_THROWS_WITH(ltk::run_training(config, pause), Contains("--until-epoch"));
  // A binary task: one problem, the positive class's.
  write_binary_toy(dir, "binary-train.tsv", "binary-valid.tsv");
  std::vector<std::string> binary_sets = sets;
  for (std::string s :
       std::vector<std::string>{"task.type=binary", "data.train=" + dir.file("binary-train.tsv"),
                                "data.valid=" + dir.file("binary-valid.tsv"),
                                "data.test=" + dir.file("binary-valid.tsv"), "output_dir=" + dir.file("binary")})
    binary_sets.push_back(s);
  auto binary = ltk::run_training(ltk::load_config(cfg, binary_sets));
  REQUIRE(binary.test);
  CHECK(binary.test->get("accuracy") > 0.9);
  REQUIRE_THROWS_WITH(ltk::load_config(cfg, {"optimizer.type=dual_cd"}),
                      Contains("optimizer.type") && Contains("linear"));
  REQUIRE_THROWS_WITH(
      ltk::load_config(cfg, {"model={\"type\": \"linear\"}", "optimizer.type=dual_cd", "task.loss=squared_hinge",
                             "task.type=binary", "task.class_weights={\"sport\": 2, \"food\": 1}"}),
      Contains("task.class_weights"));
  REQUIRE_THROWS_WITH(ltk::load_config(cfg, {"model={\"type\": \"linear\"}", "optimizer.type=dual_cd"}),
                      Contains("task.loss") && Contains("squared_hinge"));
  REQUIRE_THROWS_WITH(
      ltk::load_config(cfg, {"model={\"type\": \"linear\", \"intercept_scaling\": 0}", "optimizer.type=dual_cd"}),
      Contains("model.intercept_scaling"));
}

// Runs tests/metrics/check_dual_cd.py: scikit-learn solves the problem on rows `x` (labels, C,
// `loss` "hinge" | "logistic" | "svr", `extra` keys such as class weights or targets) and its
// weights are compared with `solved`'s, within a bound from each duality gap.
void check_against_liblinear(const ltk::SparseRows& x, const std::vector<int64_t>& labels, double C,
                             const std::string& loss, const std::vector<ltk::DualCdResult>& solved,
                             const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json w = nlohmann::json::array(), gap = nlohmann::json::array();
  for (const auto& s : solved) {
    REQUIRE(s.converged);
    w.push_back(s.w);
    gap.push_back(std::max(0.0, s.primal - s.dual));
  }
  nlohmann::json c = {{"offsets", x.offsets},
                      {"cols", x.cols},
                      {"values", x.values},
                      {"num_cols", x.num_cols},
                      {"labels", labels},
                      {"C", C},
                      {"loss", loss},
                      {"intercept_scaling", 1.0},
                      {"class_weight", nlohmann::json::object()},
                      {"w", w},
                      {"gap", gap}};
  c.update(extra);
  TempDir dir;
  ltk::test::write_file(dir.file("case.json"), c.dump());
  const std::string cmd = "/usr/bin/python3 '" LTK_SOURCE_DIR "/tests/metrics/check_dual_cd.py' '" +
                          dir.file("case.json") + "' > '" + dir.file("out.txt") + "' 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string out = ltk::test::read_text(dir.file("out.txt"));
  INFO(out);
  CHECK(status == 0);
  CHECK_THAT(out, Contains("dual_cd: 0 mismatches"));
}

TEST_CASE("dual_cd: the solution equals scikit-learn's LinearSVC (liblinear) on the same rows, C and class weights",
          "[train][dual_cd][parity]") {
  std::vector<int64_t> labels;
  const ltk::SparseRows x = random_rows(300, 60, 3, 9, labels);
  ltk::DualCdOptions tight;
  tight.tol = 1e-10;
  tight.max_iter = 100000;
  const std::vector<double> class_weights = {1.0, 2.5, 0.5};
  const auto solved = ltk::solve_one_vs_rest(x, labels, 3, 0.3, class_weights, tight, 2);
  check_against_liblinear(x, labels, 0.3, "hinge", solved, {{"class_weight", {{"0", 1.0}, {"1", 2.5}, {"2", 0.5}}}});
}

TEST_CASE("dual_cd: logistic regression equals scikit-learn's LogisticRegression (liblinear) on the same rows and C",
          "[train][dual_cd][parity]") {
  std::vector<int64_t> labels;
  const ltk::SparseRows x = random_rows(300, 60, 2, 13, labels);
  std::vector<int8_t> y;
  for (auto l : labels) y.push_back(l == 1 ? 1 : -1);
  ltk::DualCdOptions tight;
  tight.tol = 1e-10;
  tight.max_iter = 100000;
  const double C = 0.7;
  const auto solved = ltk::solve_l2_lr_dual(x, y, std::vector<double>(y.size(), C), tight);
  REQUIRE(solved.converged);
  // A duality gap: the primal is above the dual, and close at the optimum.
  CHECK(solved.primal >= solved.dual - 1e-9);
  CHECK(solved.primal - solved.dual <= 1e-6 * solved.primal);
  // Looser tolerances stop earlier, further from the optimum, never below it.
  ltk::DualCdOptions loose;
  loose.tol = 0.1;
  const auto early = ltk::solve_l2_lr_dual(x, y, std::vector<double>(y.size(), C), loose);
  CHECK(early.iterations < solved.iterations);
  CHECK(early.primal >= solved.primal - 1e-9);
  check_against_liblinear(x, labels, C, "logistic", {solved});
}

TEST_CASE("dual_cd: ridge regression equals scikit-learn's LinearSVR (squared error, epsilon 0) on the same rows",
          "[train][dual_cd][parity]") {
  std::vector<int64_t> labels;
  const ltk::SparseRows x = random_rows(300, 60, 5, 21, labels);
  std::vector<double> y;
  std::mt19937_64 rng(4);
  std::normal_distribution<double> noise(0.0, 0.3);
  for (auto l : labels) y.push_back(1.5 * static_cast<double>(l) - 2 + noise(rng));
  ltk::DualCdOptions tight;
  tight.tol = 1e-12;
  tight.max_iter = 100000;
  const double C = 0.4;
  const auto solved = ltk::solve_l2_svr_dual(x, y, C, tight);
  REQUIRE(solved.converged);
  CHECK(solved.primal >= solved.dual - 1e-9);
  CHECK(solved.primal - solved.dual <= 1e-8 * solved.primal);
  check_against_liblinear(x, labels, C, "svr", {solved}, {{"targets", y}});
}

TEST_CASE("dual_cd: the linear model's default where it solves the task, adagrad where it cannot", "[train][dual_cd]") {
  TempDir dir;
  const std::string cfg = ltk::test::toy_config(dir);
  auto type_of = [&](std::vector<std::string> sets) {
    sets.insert(sets.begin(), {"model={\"type\": \"linear\"}", "optimizer={}"});  // the toy config's adam gone
    return ltk::load_config(cfg, sets).optimizer.type;
  };
  CHECK(type_of({"task.loss=squared_hinge"}) == "dual_cd");
  CHECK(type_of({"task.type=binary"}) == "dual_cd");  // logistic regression
  CHECK(type_of({}) == "adagrad");                    // the softmax
  CHECK(type_of({"task.type=multilabel"}) == "dual_cd");  // one logistic regression per label
  CHECK(type_of({"task.type=regression"}) == "dual_cd");  // ridge regression
  CHECK(type_of({"task.type=regression", "task.loss=huber"}) == "adagrad");
  CHECK(type_of({"task.loss=squared_hinge", "trainer.sampler=balanced"}) == "adagrad");
  CHECK(type_of({"task.loss=squared_hinge", "optimizer.type=adagrad"}) == "adagrad");
  // Asked for, what it cannot do is named.
  for (auto [set, key] :
       std::vector<std::pair<std::string, std::string>>{{"trainer.sampler=balanced", "trainer.sampler"},
                                                        {"model.freeze=[\"weight\"]", "model.freeze"},
                                                        {"task.reduction=sum", "task.reduction"}}) {
    REQUIRE_THROWS_WITH(type_of({"task.loss=squared_hinge", "optimizer.type=dual_cd", set}), Contains(key));
  }
  // A binary task by logistic regression, end to end: one checkpoint, the loss the task's BCE.
  write_binary_toy(dir, "b-train.tsv", "b-valid.tsv");
  auto config = ltk::load_config(cfg, {"model={\"type\": \"linear\"}", "optimizer={}", "task.type=binary",
                                       "data.train=" + dir.file("b-train.tsv"), "data.valid=" + dir.file("b-valid.tsv"),
                                       "data.test=" + dir.file("b-valid.tsv"), "output_dir=" + dir.file("b")});
  REQUIRE(config.optimizer.type == "dual_cd");
  auto summary = ltk::run_training(config);
  CHECK(summary.steps == 1);
  REQUIRE(summary.test);
  CHECK(summary.test->get("accuracy") > 0.9);
  CHECK(summary.test->get("loss") < std::log(2.0));  // better than chance under the BCE
  auto predict = ltk::test::run_app(
      "ltk-predict", "--run '" + dir.file("b") + "' --input '" + dir.file("b-valid.tsv") + "' --format tsv --top-k 1");
  INFO(predict.err);
  CHECK(predict.code == 0);
  CHECK_THAT(predict.out, Contains("\"top\":[{\"label\":"));
  // A regression: ridge on the tf-idf rows, its value whether "up" is in the text.
  std::string reg;
  std::mt19937 rng(3);
  for (int i = 0; i < 300; ++i) {
    int a = static_cast<int>(rng() % 4), b = static_cast<int>(rng() % 4);
    std::string text = "w" + std::to_string(rng() % 30);
    for (int k = 0; k < a; ++k) text += " up";
    for (int k = 0; k < b; ++k) text += " down";
    reg += std::string(a > 0 ? "1" : "0") + "\t" + text + "\n";  // "down" and the w-word are noise
  }
  ltk::test::write_file(dir.file("reg.tsv"), reg);
  auto rc = ltk::load_config(
      cfg, {"model={\"type\": \"linear\", \"C\": 10}", "optimizer={}", "task.type=regression",
            "data.train=" + dir.file("reg.tsv"), "data.valid=" + dir.file("reg.tsv"),
            "data.test=" + dir.file("reg.tsv"), "output_dir=" + dir.file("reg"), "trainer.select_metric=rmse"});
  REQUIRE(rc.optimizer.type == "dual_cd");
  auto rs = ltk::run_training(rc);
  REQUIRE(rs.test);
  CHECK(rs.test->get("rmse") < 0.2);  // "up" present or not: the target is read from the text's terms
  // Multilabel: one logistic regression per label ("up" -> a, "down" -> b, neither -> c).
  std::string ml;
  for (int i = 0; i < 300; ++i) {
    const bool up = rng() % 2, down = rng() % 2;
    std::string labels = up && down ? "a,b" : up ? "a" : down ? "b" : "c";
    ml += labels + "\tw" + std::to_string(rng() % 30) + (up ? " up" : "") + (down ? " down" : "") + "\n";
  }
  ltk::test::write_file(dir.file("ml.tsv"), ml);
  auto mc = ltk::load_config(cfg, {"model={\"type\": \"linear\", \"C\": 10}", "optimizer={}", "task.type=multilabel",
                                   "data.train=" + dir.file("ml.tsv"), "data.valid=" + dir.file("ml.tsv"),
                                   "data.test=" + dir.file("ml.tsv"), "output_dir=" + dir.file("ml")});
  REQUIRE(mc.optimizer.type == "dual_cd");
  auto ms = ltk::run_training(mc);
  REQUIRE(ms.test);
  CHECK(ms.test->get("subset_accuracy") > 0.95);
}

TEST_CASE("linear: hashed features (model.buckets) train, reload and predict as a vocabulary of buckets",
          "[train][linear]") {
  TempDir dir;
  const std::string cfg = ltk::test::toy_config(dir);
  auto config = ltk::load_config(cfg, {"model={\"type\": \"linear\", \"buckets\": 64, \"char_ngram_range\": [2, 3]}",
                                       "optimizer={}", "task.loss=squared_hinge"});
  auto summary = ltk::run_training(config);
  REQUIRE(summary.test);
  CHECK(summary.test->get("accuracy") > 0.8);
  // At most 64 buckets of each kind, named as the hashing names them.
  const auto vocab = ltk::Vocabulary::load(dir.file("run/vocab.txt"));
  CHECK(vocab.size() <= 2 + 2 * 64);
  for (int32_t id = ltk::Vocabulary::kFirstWordId; id < vocab.size(); ++id)
    REQUIRE((vocab.token(id).rfind("#", 0) == 0 || vocab.token(id).rfind(" #", 0) == 0));
  auto predict = ltk::test::run_app(
      "ltk-predict", "--run '" + dir.file("run") + "' --input '" + dir.file("valid.tsv") + "' --format tsv");
  INFO(predict.err);
  CHECK(predict.code == 0);
  CHECK_THAT(predict.out, Contains("\"label\":"));
  // The bucket of a term is scikit-learn's: its murmurhash3_32(b"foo", 0) is -156908512.
  CHECK(ltk::hash_bucket("foo", 1u << 31) == 156908512u);
}

TEST_CASE("trainer.precision bf16: autocast where bf16 is native, float32 weights - refused or fp32 elsewhere",
          "[train][precision]") {
  // The guard: a Linear inside runs in bf16, its weights stay float32, the state comes back.
  torch::nn::Linear linear(8, 4);
  auto x = torch::randn({3, 8});
  {
    ltk::AutocastGuard autocast(true, torch::kCPU);
    CHECK(linear(x).scalar_type() == torch::kBFloat16);
    {
      ltk::AutocastGuard off(false, torch::kCPU);  // an inactive guard changes nothing
      CHECK(linear(x).scalar_type() == torch::kBFloat16);
    }
  }
  CHECK(linear(x).scalar_type() == torch::kFloat);
  CHECK(linear->weight.scalar_type() == torch::kFloat);
  try {  // an exception inside leaves autocast off and its nesting at 0
    ltk::AutocastGuard autocast(true, torch::kCPU);
    throw std::runtime_error("inside");
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(at::autocast::is_cpu_enabled());
  // fp16 autocast is CUDA's alone (LibTorch 1.13 autocasts a CPU to bf16): refused, state untouched.
  CHECK_THROWS_WITH(ltk::AutocastGuard(true, torch::kCPU, torch::kHalf), Contains("fp16 on CUDA"));
  CHECK_FALSE(at::autocast::is_cpu_enabled());
  CHECK(at::autocast::increment_nesting() == 1);
  at::autocast::decrement_nesting();
  ltk::test::TempDir dir;
  const std::string cfg = ltk::test::toy_config(dir);
  // The fast path (the CPU check forced on, so it runs on any CPU): a BERT, whose attention, layer
  // norms and feed-forward all meet autocast, learns the toy corpus as well as in fp32 (within
  // one validation sample); its checkpoint holds float32 weights.
  const std::string bert =
      R"( --set data.tokenizer.type=wordpiece --set data.tokenizer.vocab_size=60 --set data.max_len=16)"
      R"( --set 'model={"type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,)"
      R"( "intermediate_size": 64, "max_position_embeddings": 16}' --set optimizer.lr=0.002)";
  auto r = ltk::test::run_app("ltk-train", "--config '" + cfg + "' --set trainer.precision=bf16" + bert, "", "",
                              "LTK_NATIVE_BF16=1");
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.err, Contains("[precision] bf16 autocast"));
  auto run = ltk::load_run(dir.file("run"), "best", "cpu");
  for (const auto& p : run.model->named_parameters()) CHECK(p.value().scalar_type() == torch::kFloat);
  // Paused after the first epoch and resumed, a bf16 run ends with the uninterrupted run's weights,
  // bit for bit (autocast keeps no state of its own).
  auto paused = ltk::test::run_app("ltk-train",
                                   "--config '" + cfg + "' --set trainer.precision=bf16" + bert +
                                       " --set output_dir='" + dir.file("paused") + "' --until-epoch 1",
                                   "", "", "LTK_NATIVE_BF16=1");
  INFO(paused.err);
  REQUIRE(paused.code == 0);
  auto resumed = ltk::test::run_app("ltk-train", "--resume '" + dir.file("paused") + "'", "", "", "LTK_NATIVE_BF16=1");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK_THAT(resumed.err, Contains("[precision] bf16 autocast"));
  auto last = [](const std::string& run_dir) {
    std::map<std::string, torch::Tensor> w;
    for (auto& [name, t] : ltk::read_weights(ltk::RunDirectory::open(run_dir).checkpoint("last"))) w[name] = t;
    return w;
  };
  auto whole = last(dir.file("run")), in_two = last(dir.file("paused"));
  REQUIRE(whole.size() == in_two.size());
  for (const auto& [name, t] : whole) {
    INFO(name);
    REQUIRE(in_two.count(name));
    CHECK(torch::equal(t, in_two.at(name)));
  }
  auto accuracy = [&](const std::string& run_dir) {
    auto eval = ltk::test::run_app("ltk-eval", "--run '" + run_dir + "' --data '" + dir.file("valid.tsv") + "' --json");
    REQUIRE(eval.code == 0);
    return nlohmann::json::parse(eval.out)["accuracy"].get<double>();
  };
  auto fp32 = ltk::test::run_app("ltk-train", "--config '" + cfg + "' --set output_dir=" + dir.file("fp32") + bert);
  REQUIRE(fp32.code == 0);
  const double in_bf16 = accuracy(dir.file("run")), in_fp32 = accuracy(dir.file("fp32"));
  CHECK(in_bf16 >= 0.9);
  CHECK(std::abs(in_bf16 - in_fp32) <= 1.0 / 15 + 1e-9);
  // The first logged training loss: the same seed and batches, computed through bf16 products
  // (different, and close).
  auto first_loss = [&](const std::string& run_dir) {
    std::istringstream lines(ltk::test::read_text(run_dir + "/metrics.jsonl"));
    for (std::string line; std::getline(lines, line);) {
      auto j = nlohmann::json::parse(line);
      if (j["kind"] == "train") return j["loss"].get<double>();
    }
    FAIL("no training record in " << run_dir);
    return 0.0;
  };
  const double loss16 = first_loss(dir.file("run")), loss32 = first_loss(dir.file("fp32"));
  CHECK(std::abs(loss16 - loss32) > 1e-6 * loss32);
  CHECK(std::abs(loss16 - loss32) < 0.05 * loss32);
  // Without native bf16: "bf16" is refused before any data is read, naming the key; "auto" trains
  // in fp32 and says so.
  auto refused = ltk::test::run_app("ltk-train", "--config '" + cfg + "' --overwrite --set trainer.precision=bf16", "",
                                    "", "LTK_NATIVE_BF16=0");
  CHECK(refused.code != 0);
  CHECK_THAT(refused.err, Contains("trainer.precision") && Contains("AVX512_BF16"));
  CHECK_THAT(refused.err, !Contains("[data]"));
  auto fallback = ltk::test::run_app("ltk-train", "--config '" + cfg + "' --overwrite --set trainer.precision=auto", "",
                                     "", "LTK_NATIVE_BF16=0");
  INFO(fallback.err);
  CHECK(fallback.code == 0);
  CHECK_THAT(fallback.err, Contains("training in fp32") && !Contains("[precision] bf16 autocast"));
  // The transformer masks its padded keys itself under autocast (LibTorch 1.13's attention has no
  // bf16 masking kernel; refused before): it trains, its first loss close to fp32's.
  const std::string transformer = R"( --set 'model={"type": "transformer", "embed_dim": 16, "heads": 2, "layers": 1}')"
                                  R"( --set data.max_len=16)";
  auto tf16 = ltk::test::run_app("ltk-train",
                                 "--config '" + cfg + "' --set trainer.precision=bf16" + transformer +
                                     " --set output_dir='" + dir.file("tf16") + "'",
                                 "", "", "LTK_NATIVE_BF16=1");
  INFO(tf16.err);
  REQUIRE(tf16.code == 0);
  CHECK_THAT(tf16.err, Contains("[precision] bf16 autocast"));
  auto tf32 = ltk::test::run_app(
      "ltk-train", "--config '" + cfg + "'" + transformer + " --set output_dir='" + dir.file("tf32") + "'");
  REQUIRE(tf32.code == 0);
  const double tf_loss16 = first_loss(dir.file("tf16")), tf_loss32 = first_loss(dir.file("tf32"));
  CHECK(std::abs(tf_loss16 - tf_loss32) > 1e-6 * tf_loss32);
  CHECK(std::abs(tf_loss16 - tf_loss32) < 0.05 * tf_loss32);
  auto regression = ltk::test::run_app("ltk-train",
                                       "--config '" + cfg +
                                           "' --overwrite --set trainer.precision=bf16 "
                                           "--set task.type=regression",
                                       "", "", "LTK_NATIVE_BF16=1");
  CHECK(regression.code != 0);
  CHECK_THAT(regression.err, Contains("trainer.precision") && Contains("regression"));
  // fp16, and bf16 with float64 weights: errors naming the key.
  auto fp16 = ltk::test::run_app("ltk-train", "--config '" + cfg + "' --overwrite --set trainer.precision=fp16");
  CHECK(fp16.code != 0);
  CHECK_THAT(fp16.err, Contains("trainer.precision") && Contains("fp16") && Contains("CUDA"));
  auto f64 = ltk::test::run_app(
      "ltk-train", "--config '" + cfg + "' --set trainer.precision=bf16 --set trainer.dtype=float64 --dump-config");
  CHECK(f64.code != 0);
  CHECK_THAT(f64.err, Contains("trainer.precision") && Contains("float64"));
}

TEST_CASE("trainer.precision auto: fp32 on a CPU where bf16 was measured to train no faster", "[train][precision]") {
  ltk::test::TempDir dir;
  const std::string cfg = ltk::test::toy_config(dir);
  setenv("LTK_NATIVE_BF16", "1", 1);
  const torch::Device cpu(torch::kCPU);
  auto precision = [&](const std::vector<std::string>& sets) {
    std::vector<std::string> all = sets;
    all.push_back("trainer.precision=auto");
    return ltk::resolve_precision(ltk::load_config(cfg, all), cpu);
  };
  const std::string bert = R"(model={"type": "bert", "num_hidden_layers": 1, "num_attention_heads": 2, )"
                           R"("intermediate_size": 64, "max_position_embeddings": 32, "hidden_size": )";
  CHECK(precision({}) == "bf16");  // the toy config's bow
  CHECK(precision({R"(model={"type": "textcnn", "embed_dim": 16})"}) == "bf16");
  CHECK(precision({R"(model={"type": "rnn", "embed_dim": 16, "hidden_dim": 16})"}) == "fp32");
  CHECK(precision({bert + std::to_string(ltk::kAutoBf16MinBertWidth / 2) + "}", "data.max_len=16"}) == "fp32");
  CHECK(precision({bert + std::to_string(ltk::kAutoBf16MinBertWidth) + "}", "data.max_len=16"}) == "bf16");
  // Asked for by name, bf16 trains them all the same.
  CHECK(ltk::resolve_precision(ltk::load_config(cfg, {R"(model={"type": "rnn", "embed_dim": 16, "hidden_dim": 16})",
                                                      "trainer.precision=bf16"}),
                               cpu) == "bf16");
  setenv("LTK_NATIVE_BF16", "0", 1);
  CHECK(precision({}) == "fp32");
  unsetenv("LTK_NATIVE_BF16");
  // oneDNN held below bf16 by the environment: bf16 is refused as on a CPU without it, saying why.
  setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
  CHECK(precision({}) == "fp32");
  CHECK_THROWS_WITH(ltk::resolve_precision(ltk::load_config(cfg, {"trainer.precision=bf16"}), cpu),
                    Contains("trainer.precision") && Contains(ltk::why_no_native_bf16()));
  unsetenv("ONEDNN_MAX_CPU_ISA");
}

TEST_CASE("loss scaling (fp16): the scale backs off and grows as PyTorch's GradScaler, and is restored",
          "[train][precision]") {
  // The scaler alone: growth after growth_interval good steps, never to inf; backoff on overflow.
  ltk::GradScaler scaler(ltk::GradScalerOptions{std::ldexp(1.0, 126), 2.0, 0.5, 2});
  scaler.update(false);
  CHECK(scaler.growth_tracker() == 1);
  scaler.update(false);
  CHECK(scaler.current() == std::ldexp(1.f, 127));
  scaler.update(false);
  scaler.update(false);  // 2^128 is inf in float32: the scale stays
  CHECK(scaler.current() == std::ldexp(1.f, 127));
  CHECK(scaler.growth_tracker() == 0);
  scaler.update(true);
  CHECK(scaler.current() == std::ldexp(1.f, 126));
  auto p = torch::ones({3}, torch::requires_grad());
  p.mutable_grad() = torch::tensor({1.f, 0.5f, -0.25f}) * std::ldexp(1.f, 126);
  CHECK(scaler.unscale({p, torch::zeros({2}, torch::requires_grad())}));  // one without a gradient
  CHECK(torch::equal(p.grad(), torch::tensor({1.f, 0.5f, -0.25f})));
  p.mutable_grad() = torch::tensor({1.f, NAN, 1.f});
  CHECK_FALSE(scaler.unscale({p}));
  p.mutable_grad() = torch::tensor({1.f, -INFINITY, 1.f});
  CHECK_FALSE(scaler.unscale({p}));
  {  // a sparse gradient (model.sparse embeddings): its values, coalesced
    torch::nn::Embedding table(torch::nn::EmbeddingOptions(6, 2).sparse(true));
    (table(torch::tensor({1, 3, 1}, torch::kLong)).sum() * scaler.current()).backward();
    REQUIRE(table->weight.grad().is_sparse());
    CHECK(scaler.unscale({table->weight}));
    CHECK(torch::equal(table->weight.grad().to_dense(),
                       torch::tensor({{0.f, 0.f}, {2.f, 2.f}, {0.f, 0.f}, {1.f, 1.f}, {0.f, 0.f}, {0.f, 0.f}})));
    (table(torch::tensor({2}, torch::kLong)).sum() * INFINITY).backward();
    CHECK_FALSE(scaler.unscale({table->weight}));
    // Four entries of 2^126 for one row, each finite: their sum, 2^128, is not (so it is checked
    // coalesced).
    table->weight.mutable_grad() = torch::Tensor();
    (table(torch::tensor({4, 4, 4, 4}, torch::kLong)).sum() * scaler.current()).backward();
    CHECK_FALSE(scaler.unscale({table->weight}));
  }
  CHECK_THROWS_WITH(scaler.restore(0.0, 0), Contains("state.loss_scale"));
  CHECK_THROWS_WITH(scaler.restore(65536.0, 2), Contains("state.loss_scale_growth"));
  CHECK_THROWS_AS(ltk::GradScaler(ltk::GradScalerOptions{65536.0, 0.5}), ltk::Error);

  TempDir dir;
  // The trainer, in fp32 with a scaler (what fp16 uses on CUDA): its gradients overflow, so the
  // step is skipped, its weights unchanged, and the scale halved until they do not. An embedding of
  // 1e35 and a zero output layer: the output's gradient is scale/3 * 1e35 at most, finite below
  // scale 1.02e4 (float32 ends at 3.4e38) and not above.
  ltk::Config config = ltk::load_config(ltk::test::toy_config(dir));
  auto run_dir = ltk::RunDirectory::create(config.output_dir, false);
  auto model = ltk::build_model(config.model, ltk::ModelContext{10, 3, 0});
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model->named_parameters()) item.value().fill_(item.key() == "embedding.weight" ? 1e35 : 0.0);
  }
  ltk::MulticlassTask task(3, "mean");
  ltk::Trainer trainer(config, model, task, torch::kCPU, run_dir, 10);
  trainer.set_grad_scaler({});
  ltk::Batch b;
  b.ids = torch::tensor({2, 3, 4, 5}, torch::kLong).view({2, 2});
  b.lengths = torch::tensor({2, 2}, torch::kLong);
  b.mask = torch::ones({2, 2}, torch::kBool);
  b.labels = torch::tensor({0, 2}, torch::kLong);
  b.indices = torch::tensor({0, 1}, torch::kLong);
  for (double expected : {32768.0, 16384.0, 8192.0}) {
    trainer.train_step(b, 1);
    CHECK(trainer.state().loss_scale == expected);
    for (auto& item : model->named_parameters()) {
      const float largest = item.value().abs().max().item<float>();
      if (item.key() != "embedding.weight") CHECK(largest == 0.f);
    }
  }
  trainer.train_step(b, 4);  // 8192 / 3 * 1e35 = 2.7e38: the step is taken (Adam moves the bias)
  CHECK(trainer.state().loss_scale == 8192.0);
  CHECK(trainer.state().loss_scale_growth == 1);
  const float moved = model->named_parameters()["output.bias"].abs().max().item<float>();
  CHECK(moved > 0.f);

  // Where nothing overflows, training with a scaler (powers of two) equals training without one,
  // bit for bit: accumulated micro-batches, clipping (which sees the unscaled gradients) and Adam.
  // Paused after epoch 1 and resumed, it ends with the same weights, scale and growth count.
  ltk::TextDataset data;
  data.set_source("mem", ltk::TargetKind::class_id, 3);
  std::mt19937 rng(5);
  for (int i = 0; i < 20; ++i) {
    std::vector<int32_t> ids;
    for (int k = 0; k < 2 + i % 4; ++k) ids.push_back(static_cast<int32_t>(2 + (rng() % 8)));
    data.add(ids, static_cast<int64_t>(ids.size()), {(ids[0] + i) % 3}, 0.f, i + 1);
  }
  struct Result {
    std::vector<torch::Tensor> weights;
    ltk::TrainState state;
  };
  auto train = [&](const std::string& name, bool scaled, int64_t until_epoch, bool resume) {
    ltk::Config c = ltk::load_config(ltk::test::toy_config(dir), {"output_dir=" + dir.file(name), "trainer.epochs=3",
                                                                  "trainer.accumulate=2", "trainer.clip_norm=0.05"});
    auto run = resume ? ltk::RunDirectory::open(c.output_dir) : ltk::RunDirectory::create(c.output_dir, false);
    if (!resume) {  // what RunDirectory::open asks of a run (ltk-train writes them)
      ltk::write_file_atomic(run.config_path(), ltk::to_json(c).dump());
      ltk::write_file_atomic(run.file("vocab.txt"), "");
    }
    torch::manual_seed(11);
    auto m = ltk::build_model(c.model, ltk::ModelContext{10, 3, 0});
    ltk::Trainer t(c, m, task, torch::kCPU, run, 10);
    if (scaled) t.set_grad_scaler(ltk::GradScalerOptions{65536.0, 2.0, 0.5, 4});
    if (resume) t.restore(run.checkpoint_dir("last"));
    t.set_until_epoch(until_epoch);
    auto summary = t.fit(data, nullptr);
    CHECK(summary.overflow_skipped == 0);
    std::vector<torch::Tensor> w;
    for (auto& param : m->parameters()) w.push_back(param.detach().clone());
    return Result{w, t.state()};
  };
  const Result plain = train("plain", false, 0, false), scaled = train("scaled", true, 0, false);
  train("paused", true, 1, false);
  const Result resumed = train("paused", true, 0, true);
  REQUIRE(plain.weights.size() == scaled.weights.size());
  for (size_t i = 0; i < plain.weights.size(); ++i) {
    CHECK(torch::equal(plain.weights[i], scaled.weights[i]));
    CHECK(torch::equal(scaled.weights[i], resumed.weights[i]));
  }
  // 2 steps an epoch (20 samples, batch 8, accumulate 2), 6 in all: the scale doubled at the 4th
  // good step, and counts 2 since. A resume that lost the scale and the count (2 at the pause) would
  // end with a count of 0.
  CHECK(scaled.state.step == 6);
  CHECK(scaled.state.loss_scale == 65536.0 * 2);
  CHECK(scaled.state.loss_scale_growth == 2);
  CHECK(resumed.state.loss_scale == scaled.state.loss_scale);
  CHECK(resumed.state.loss_scale_growth == scaled.state.loss_scale_growth);
  CHECK(plain.state.loss_scale == 0.0);

  // fit(): the same 1e35 embedding and zero output layer, every label 0, so that the output's
  // gradient is scale * 2/3 * 1e35: 65536 to 8192 overflow (4 steps skipped, their samples consumed),
  // 4096 does not; Adam then moves the bias toward label 0 and the gradient only shrinks. 9 batches
  // (3 epochs of 20 samples, batch 8): 5 steps taken. The count is in the summary, the records and
  // the checkpoint.
  ltk::TextDataset zeros;
  zeros.set_source("mem", ltk::TargetKind::class_id, 3);
  for (int i = 0; i < 20; ++i) zeros.add({2, 3}, 2, {0}, 0.f, i + 1);
  ltk::Config oc = ltk::load_config(ltk::test::toy_config(dir),
                                    {"output_dir=" + dir.file("overflow"), "trainer.epochs=3", "trainer.log_every=1"});
  auto orun = ltk::RunDirectory::create(oc.output_dir, false);
  auto om = ltk::build_model(oc.model, ltk::ModelContext{10, 3, 0});
  {
    torch::NoGradGuard no_grad;
    for (auto& item : om->named_parameters()) item.value().fill_(item.key() == "embedding.weight" ? 1e35 : 0.0);
  }
  ltk::Trainer ot(oc, om, task, torch::kCPU, orun, 10);
  ot.set_grad_scaler({});
  auto osum = ot.fit(zeros, nullptr);
  CHECK(osum.overflow_skipped == 4);
  CHECK(osum.steps == 5);
  CHECK(osum.loss_scale == 4096.0);
  CHECK(ot.state().samples_seen == 20 * 3 - (8 + 8 + 4 + 8));  // the skipped batches' samples are not counted
  CHECK_THAT(ltk::test::read_text(dir.file("overflow/metrics.jsonl")),
             Contains("\"loss_scale\":4096.0") && Contains("\"overflow_skipped\":4"));
  // A long run of skipped steps stops the run, saying so (gradients that hold an inf whatever the
  // scale would otherwise halve it to 0, where unscaling makes them all NaN): from 2^127 the same
  // setup overflows down to 2^12, more than 50 steps in a row.
  ltk::Config nc = ltk::load_config(ltk::test::toy_config(dir), {"output_dir=" + dir.file("inf"), "trainer.epochs=20"});
  auto nrun = ltk::RunDirectory::create(nc.output_dir, false);
  auto nm = ltk::build_model(nc.model, ltk::ModelContext{10, 3, 0});
  {
    torch::NoGradGuard no_grad;
    for (auto& item : nm->named_parameters()) item.value().fill_(item.key() == "embedding.weight" ? 1e35 : 0.0);
  }
  ltk::Trainer nt(nc, nm, task, torch::kCPU, nrun, 10);
  nt.set_grad_scaler(ltk::GradScalerOptions{std::ldexp(1.0, 127), 2.0, 0.5, 2000});
  CHECK_THROWS_WITH(nt.fit(zeros, nullptr), Contains("overflowed at 50 steps in a row") && Contains("bf16"));
}

// ---- shards (ltk-data encode) ----

namespace {

/// A labelled corpus of generated text for `task` (multiclass, multilabel, regression).
std::string shard_corpus(const std::string& task, int n, uint32_t seed) {
  const auto texts = ltk::test::generated_corpus(n, seed, 0.3);
  std::string out;
  for (size_t i = 0; i < texts.size(); ++i) {
    // A text token that reads like a special one is an unknown word, never padding.
    const std::string extra = i % 50 == 3 ? " <unk> <pad>" : "";
    const std::string label = task == "regression"   ? std::to_string(static_cast<double>(i % 7) / 4)
                              : task == "multilabel" ? (i % 3 ? "a,b" : "c")
                              : task == "binary"     ? (i % 3 ? "no" : "yes")
                                                     : std::string(1, static_cast<char>('p' + i % 4));
    out += label + "\t" + texts[i] + extra + "\n";
  }
  return out;
}

ltk::Config shard_config(const TempDir& dir, const std::string& task, const nlohmann::json& data_extra) {
  nlohmann::json j = {{"name", "shards"},
                      {"output_dir", dir.file("run")},
                      {"device", "cpu"},
                      {"threads", 1},
                      {"data", {{"train", dir.file("train.tsv")}, {"valid", dir.file("valid.tsv")}}},
                      {"model", {{"type", "bow"}, {"embed_dim", 8}}},
                      {"task", {{"type", task}}}};
  j["data"].update(data_extra);
  return ltk::parse_config(j);
}

/// The in-memory path's training split, vocabulary and labels for `config`, as prepare_data makes them.
struct InMemory {
  ltk::Vocabulary vocab;
  ltk::LabelMap labels;
  std::unique_ptr<ltk::Task> task;
  ltk::TextDataset train, valid;
};

InMemory in_memory(const ltk::Config& c) {
  InMemory m;
  auto tok = ltk::make_run_tokenizer(c.data.tokenizer, c.model);
  const auto opts = ltk::reader_options(c.data, c.task);
  const auto train = ltk::read_examples(c.data.train, opts).examples;
  if (ltk::task_has_labels(c.task.type)) m.labels = ltk::labels_from_examples(c.task, train);
  m.task = ltk::make_task(c.task, m.labels);
  const auto targets = m.task->target_encoder();
  if (c.data.vocab.source == "tokenizer") {
    m.vocab = ltk::Vocabulary::load_wordpiece(c.data.tokenizer.dict);
    m.train = ltk::encode_examples(train, c.data.train, *tok, m.vocab, &targets, ltk::encode_options(c.data, m.vocab));
  } else {
    std::tie(m.vocab, m.train) =
        ltk::build_vocab_and_encode(train, c.data.train, *tok, c.data.vocab.min_freq, c.data.vocab.max_size, &targets,
                                    ltk::encode_options(c.data, ltk::Vocabulary()));
  }
  m.valid = ltk::encode_examples(ltk::read_examples(c.data.valid, opts).examples, c.data.valid, *tok, m.vocab, &targets,
                                 ltk::encode_options(c.data, m.vocab));
  return m;
}

void check_same_samples(const ltk::TextDataset& mem, const ltk::TextDataset& shard) {
  REQUIRE(shard.mapped());
  REQUIRE(shard.size() == mem.size());
  REQUIRE(shard.target_kind() == mem.target_kind());
  REQUIRE(shard.windowed() == mem.windowed());
  REQUIRE(shard.num_texts() == mem.num_texts());
  for (int64_t t = 0; t < mem.num_texts(); ++t) {
    INFO("text " << t);
    REQUIRE(shard.text_sample(t) == mem.text_sample(t));
    REQUIRE(shard.text_windows(t) == mem.text_windows(t));
  }
  if (mem.windowed()) CHECK(shard.windows_summary() == mem.windows_summary());
  for (int64_t i = 0; i < mem.size(); ++i) {
    INFO("sample " << i);
    REQUIRE(shard.length(i) == mem.length(i));
    const ltk::IdPieces a = mem.ids(i), b = shard.ids(i);
    for (int64_t k = 0; k < mem.length(i); ++k) REQUIRE(a[k] == b[k]);
    REQUIRE(shard.full_length(i) == mem.full_length(i));
    REQUIRE(shard.source_line(i) == mem.source_line(i));
    REQUIRE(shard.labels(i) == mem.labels(i));
    REQUIRE(shard.value(i) == mem.value(i));
    REQUIRE(shard.has_pairs() == mem.has_pairs());
    if (mem.has_pairs()) REQUIRE(shard.second_start(i) == mem.second_start(i));
  }
  // The collate makes the same batch from both (the first 17 samples, say).
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < std::min<int64_t>(17, mem.size()); ++i) idx.push_back(i);
  const ltk::PadCollate collate;
  const auto x = collate(mem, idx), y = collate(shard, idx);
  CHECK(torch::equal(x.ids, y.ids));
  if (x.labels.defined()) CHECK(torch::equal(x.labels, y.labels));
  REQUIRE(x.token_types.defined() == y.token_types.defined());
  if (x.token_types.defined()) CHECK(torch::equal(x.token_types, y.token_types));
  if (mem.has_labels()) CHECK(torch::equal(mem.targets(idx), shard.targets(idx)));
}

}  // namespace

TEST_CASE(
    "shards: every split decodes back to the in-memory path's ids, labels and lines, for each tokenizer, task and "
    "max_len",
    "[shards]") {
  TempDir dir;
  // A fixed WordPiece vocabulary (BERT's layout: [CLS]/[SEP] around every text).
  ltk::WordPieceTrainOptions wp;
  wp.size = 300;
  wp.min_frequency = 1;
  std::string vocab_txt;
  for (const auto& p : ltk::train_wordpiece(ltk::test::generated_corpus(200, 5, 0.3), wp)) vocab_txt += p + "\n";
  ltk::test::write_file(dir.file("wp_vocab.txt"), vocab_txt);
  const std::vector<nlohmann::json> setups = {
      {{"tokenizer", {{"type", "basic"}}}},
      {{"tokenizer", {{"type", "char"}}}, {"vocab", {{"min_freq", 2}, {"max_size", 40}}}},
      {{"tokenizer", {{"type", "whitespace"}, {"lowercase", false}}}},
      {{"tokenizer", {{"type", "wordpiece"}, {"dict", dir.file("wp_vocab.txt")}}},
       {"vocab", {{"source", "tokenizer"}}},
       {"special_tokens", true}}};
  for (const std::string task : {"multiclass", "binary", "multilabel", "regression"}) {
    ltk::test::write_file(dir.file("train.tsv"), shard_corpus(task, 300, 1));
    ltk::test::write_file(dir.file("valid.tsv"), shard_corpus(task, 60, 2));
    for (const auto& setup : setups) {
      INFO(task << " " << setup.dump());
      const ltk::Config config = shard_config(dir, task, setup);
      ltk::EncodeShardsOptions o;
      o.out = dir.file("shards");
      o.overwrite = true;
      o.piece_bytes = 1000;  // many pieces: the vocabulary and labels are counted across them
      const auto done = ltk::encode_shards(config, o);
      REQUIRE(done.size() == 2);
      CHECK(done[0].samples == 300);
      const InMemory mem = in_memory(config);
      const ltk::LabelMap* labels = ltk::task_has_labels(task) ? &mem.labels : nullptr;
      const auto targets = mem.task->target_encoder();
      // The shard's vocabulary is the one the in-memory path builds.
      CHECK(ltk::vocab_digest(mem.vocab) == ltk::read_shard_manifest(dir.file("shards/train"))["vocab"]["digest"]);
      check_same_samples(mem.train, ltk::open_config_shard(dir.file("shards/train"), config, "data.train", &mem.vocab,
                                                           labels, targets));
      check_same_samples(mem.valid, ltk::open_config_shard(dir.file("shards/valid"), config, "data.valid", &mem.vocab,
                                                           labels, targets));
      // The index read mapped (no memory budget), or partly into memory, reads the same.
      // Ids over the release window are read with pread; ids within it, mapped, with the pages of
      // the index arrays left mapped handed back after every batch.
      const auto ids_bytes = static_cast<int64_t>(std::filesystem::file_size(dir.file("shards/train/ids.bin")));
      for (int64_t budget : {0, 1300, 2500})
        for (int64_t window : {int64_t{64}, ids_bytes}) {
          ltk::ShardReadOptions ro;
          ro.index_in_memory = budget;
          ro.release_bytes = window;
          INFO("index_in_memory " << budget << ", release window " << window);
          check_same_samples(mem.train, ltk::open_shard(dir.file("shards/train"), ro));
        }
      // max_len and truncation are applied when a sample is read, as encoding with them cuts it
      // (max_len 2 with special tokens: nothing but them; 1 without: one token).
      for (int max_len : {1, 2, 7})
        for (const char* policy : {"head", "tail", "head+tail"}) {
          if (max_len < 2 && setup.value("special_tokens", false)) continue;  // refused by the config
          nlohmann::json cut = setup;
          cut["max_len"] = max_len;
          cut["truncation"] = policy;
          const ltk::Config c = shard_config(dir, task, cut);
          const InMemory m = in_memory(c);
          INFO("max_len " << max_len << ", " << policy);
          check_same_samples(
              m.train, ltk::open_config_shard(dir.file("shards/train"), c, "data.train", &m.vocab, labels, targets));
          check_same_samples(
              m.valid, ltk::open_config_shard(dir.file("shards/valid"), c, "data.valid", &m.vocab, labels, targets));
          ltk::ShardReadOptions pread_cut;  // cut when read through pread too
          pread_cut.max_len = max_len;
          pread_cut.truncation = policy;
          pread_cut.release_bytes = 64;
          check_same_samples(m.train, ltk::open_shard(dir.file("shards/train"), pread_cut));
        }
      // data.long_text "window": the windows are cut when read, as encoding cuts them (the
      // smallest window of one body id, overlapping ones, and windows longer than every text).
      for (int max_len : {3, 7, 200})
        for (int overlap : {0, 1}) {
          const int body = max_len - (setup.value("special_tokens", false) ? 2 : 0);
          if (overlap >= body) continue;  // refused by the config
          nlohmann::json win = setup;
          win["max_len"] = max_len;
          win["long_text"] = "window";
          win["window_overlap"] = overlap;
          win["window_pool"] = overlap ? "max" : "mean";
          const ltk::Config c = shard_config(dir, task, win);
          const InMemory m = in_memory(c);
          REQUIRE(m.train.windowed());
          INFO("windows of max_len " << max_len << ", overlap " << overlap);
          if (max_len < 200) CHECK(m.train.size() > m.train.num_texts());  // some texts were cut
          check_same_samples(
              m.train, ltk::open_config_shard(dir.file("shards/train"), c, "data.train", &m.vocab, labels, targets));
          check_same_samples(
              m.valid, ltk::open_config_shard(dir.file("shards/valid"), c, "data.valid", &m.vocab, labels, targets));
          ltk::ShardReadOptions pread_win;  // read through pread too
          pread_win.max_len = max_len;
          pread_win.windows = true;
          pread_win.window_overlap = overlap;
          pread_win.window_pool = win["window_pool"];
          pread_win.release_bytes = 64;
          check_same_samples(m.train, ltk::open_shard(dir.file("shards/train"), pread_win));
        }
    }
  }
}

namespace {

/// A WordPiece vocabulary of `size` entries learned from `texts` generated texts, at DIR/wp_vocab.txt;
/// and train.tsv and valid.tsv of `train` and `valid` labelled texts.
void write_wordpiece_corpus(const TempDir& dir, int size, int texts, int train, int valid) {
  ltk::WordPieceTrainOptions wp;
  wp.size = size;
  wp.min_frequency = 1;
  std::string vocab_txt;
  for (const auto& p : ltk::train_wordpiece(ltk::test::generated_corpus(texts, 5, 0.3), wp)) vocab_txt += p + "\n";
  ltk::test::write_file(dir.file("wp_vocab.txt"), vocab_txt);
  ltk::test::write_file(dir.file("train.tsv"), shard_corpus("multiclass", train, 1));
  ltk::test::write_file(dir.file("valid.tsv"), shard_corpus("multiclass", valid, 2));
}

/// The data section of a BERT-style config over DIR/wp_vocab.txt ([CLS]/[SEP] around every text).
nlohmann::json wordpiece_data(const TempDir& dir) {
  return {{"tokenizer", {{"type", "wordpiece"}, {"dict", dir.file("wp_vocab.txt")}}},
          {"vocab", {{"source", "tokenizer"}}},
          {"special_tokens", true}};
}

/// Encodes the splits of `config` into DIR/shards in many small pieces on 2 threads; how many.
size_t encode_in_small_pieces(const ltk::Config& config, const TempDir& dir) {
  ltk::EncodeShardsOptions o;
  o.out = dir.file("shards");
  o.overwrite = true;
  o.piece_bytes = 1000;
  o.threads = 2;
  return ltk::encode_shards(config, o).size();
}

/// A labelled corpus of sentence pairs (label, text, second text; every fourth second text the longer).
std::string pair_corpus(const std::string& task, int n, uint32_t seed) {
  const auto a = ltk::test::generated_corpus(n, seed, 0.3), b = ltk::test::generated_corpus(n, seed + 7, 0.3);
  std::string out;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string label = task == "regression" ? std::to_string(static_cast<double>(i % 5) / 2)
                                                   : std::string(1, static_cast<char>('p' + i % 3));
    out += label + "\t" + a[i] + "\t" + b[i] + (i % 4 ? "" : " " + a[i]) + "\n";
  }
  return out;
}

}  // namespace

TEST_CASE(
    "shards: sentence pairs read back the in-memory path's ids and token types for every max_len, mapped or "
    "read with pread",
    "[shards]") {
  TempDir dir;
  write_wordpiece_corpus(dir, 300, 200, 10, 10);
  nlohmann::json data = wordpiece_data(dir);
  data["text_pair_column"] = "2";
  for (const std::string task : {"multiclass", "regression"}) {
    ltk::test::write_file(dir.file("train.tsv"), pair_corpus(task, 200, 1));
    ltk::test::write_file(dir.file("valid.tsv"), pair_corpus(task, 50, 2));
    const ltk::Config config = shard_config(dir, task, data);
    REQUIRE(encode_in_small_pieces(config, dir) == 2);
    const auto manifest = ltk::read_shard_manifest(dir.file("shards/train"));
    CHECK(manifest["pairs"] == true);
    CHECK(manifest["version"] == 2);  // an older ltk refuses pairs it would read as single texts
    for (int max_len : {0, 3, 4, 9, 40}) {
      INFO(task << ", max_len " << max_len);
      nlohmann::json cut = data;
      cut["max_len"] = max_len;
      const ltk::Config c = shard_config(dir, task, cut);
      const InMemory m = in_memory(c);
      REQUIRE(m.train.has_pairs());
      const ltk::LabelMap* labels = task == "regression" ? nullptr : &m.labels;
      const auto targets = m.task->target_encoder();
      check_same_samples(m.train,
                         ltk::open_config_shard(dir.file("shards/train"), c, "data.train", &m.vocab, labels, targets));
      check_same_samples(m.valid,
                         ltk::open_config_shard(dir.file("shards/valid"), c, "data.valid", &m.vocab, labels, targets));
      for (int64_t budget : {int64_t{0}, int64_t{512} << 20}) {  // seconds.bin mapped, or in memory
        ltk::ShardReadOptions pread_cut;
        pread_cut.max_len = max_len;
        pread_cut.release_bytes = 64;
        pread_cut.index_in_memory = budget;
        check_same_samples(m.train, ltk::open_shard(dir.file("shards/train"), pread_cut));
      }
    }
    // A config of single texts on a shard of pairs, and the other way round: refused naming the keys.
    nlohmann::json single = data;
    single.erase("text_pair_column");
    const ltk::Config s = shard_config(dir, task, single);
    const InMemory m = in_memory(config);
    REQUIRE_THROWS_WITH(
        ltk::open_config_shard(dir.file("shards/train"), s, "data.train", nullptr, nullptr, m.task->target_encoder()),
        Contains("sentence pairs") && Contains("data.text_pair_column"));
    // A second text said to start outside its pair: the file named.
    const std::string copy = dir.file("damaged_" + task);
    std::filesystem::copy(dir.file("shards/train"), copy, std::filesystem::copy_options::recursive);
    {
      std::fstream f(copy + "/seconds.bin", std::ios::in | std::ios::out | std::ios::binary);
      const int32_t one = 1;
      f.seekp(4 * 5);
      f.write(reinterpret_cast<const char*>(&one), 4);
    }
    ltk::ShardReadOptions unverified;  // (the digest would catch it first)
    unverified.verify = false;
    REQUIRE_THROWS_WITH(ltk::open_shard(copy, unverified), Contains("seconds.bin") && Contains("pair 5"));
    ltk::ShardReadOptions windows;
    windows.max_len = 9;
    windows.windows = true;
    REQUIRE_THROWS_WITH(ltk::open_shard(dir.file("shards/train"), windows), Contains("sentence pairs"));
  }
}

namespace {

/// The in-memory path's mlm training split for `c` (whole-word flags, jieba words, packing).
ltk::TextDataset mlm_in_memory(const ltk::Config& c, const ltk::Vocabulary& vocab) {
  auto tok = ltk::make_run_tokenizer(c.data.tokenizer, c.model);
  auto segmenter = ltk::word_segmenter(c.task);
  const auto train = ltk::read_examples(c.data.train, ltk::reader_options(c.data, c.task)).examples;
  const ltk::TargetEncoder none;
  return ltk::encode_examples(train, c.data.train, *tok, vocab, &none,
                              ltk::encode_options(c.data, vocab, &c.task, segmenter.get()));
}

/// Every sample's ids and whole-word flags, and the batches made of them, are the same.
void check_same_mlm_samples(const ltk::TextDataset& mem, const ltk::TextDataset& shard) {
  check_same_samples(mem, shard);
  REQUIRE(shard.has_word_flags() == mem.has_word_flags());
  std::vector<int64_t> all;
  for (int64_t i = 0; i < mem.size(); ++i) {
    all.push_back(i);
    if (!mem.has_word_flags()) continue;
    const uint8_t *a = mem.word_flags(i), *b = shard.word_flags(i);
    for (int64_t k = 0; k < mem.length(i); ++k) {
      INFO("sample " << i << ", piece " << k);
      REQUIRE(int(a[k]) == int(b[k]));
    }
  }
  const ltk::PadCollate collate;
  const auto x = collate(mem, all), y = collate(shard, all);
  CHECK(torch::equal(x.ids, y.ids));
  CHECK(x.continues.defined() == y.continues.defined());
  if (x.continues.defined()) CHECK(torch::equal(x.continues, y.continues));
}

}  // namespace

TEST_CASE(
    "shards: masked-LM shards read back the in-memory path's texts, whole-word flags (wordpiece and jieba words) and "
    "packs, for every max_len and truncation, mapped or read with pread",
    "[shards][mlm]") {
  TempDir dir;
  write_wordpiece_corpus(dir, 300, 200, 300, 60);
  const nlohmann::json data = wordpiece_data(dir);
  const ltk::Vocabulary vocab = ltk::Vocabulary::load_wordpiece(dir.file("wp_vocab.txt"));
  for (const nlohmann::json& words : {nlohmann::json::object(), nlohmann::json{{"whole_word", true}},
                                      nlohmann::json{{"whole_word", true}, {"word_segmenter", "jieba"}}}) {
    nlohmann::json task = words;
    task["type"] = "mlm";
    nlohmann::json j = {{"name", "mlm"},
                        {"output_dir", dir.file("run")},
                        {"device", "cpu"},
                        {"threads", 1},
                        {"data", data},
                        {"model",
                         {{"type", "bert"},
                          {"hidden_size", 8},
                          {"num_hidden_layers", 1},
                          {"num_attention_heads", 2},
                          {"intermediate_size", 16},
                          {"max_position_embeddings", 64}}},
                        {"task", task}};
    j["data"]["train"] = dir.file("train.tsv");
    j["data"]["valid"] = dir.file("valid.tsv");
    j["data"]["max_len"] = 64;
    const ltk::Config config = ltk::parse_config(j);
    INFO("task " << task.dump());
    REQUIRE(encode_in_small_pieces(config, dir) == 2);
    const auto manifest = ltk::read_shard_manifest(dir.file("shards/train"));
    CHECK(manifest["word_flags"] == task.value("whole_word", false));
    CHECK(manifest["targets"] == "none");
    for (int max_len : {0, 2, 3, 5, 9, 40})
      for (bool pack : {false, true})
        for (const char* policy : {"head", "tail", "head+tail"}) {
          if (pack && max_len < 3) continue;  // refused by the config
          ltk::Config c = config;
          c.data.max_len = max_len;
          c.data.truncation = policy;
          c.task.pack = pack;
          INFO("max_len " << max_len << ", pack " << pack << ", " << policy);
          const ltk::TextDataset mem = mlm_in_memory(c, vocab);
          if (pack && max_len == 40) CHECK(mem.size() < 250);  // texts were packed together
          if (c.task.whole_word && max_len == 0) {             // words of several pieces were marked
            int64_t continuing = 0;
            for (int64_t i = 0; i < mem.size(); ++i)
              for (int64_t k = 0; k < mem.length(i); ++k) continuing += mem.word_flags(i)[k];
            CHECK(continuing > 100);
          }
          const ltk::TargetEncoder none;
          check_same_mlm_samples(
              mem, ltk::open_config_shard(dir.file("shards/train"), c, "data.train", &vocab, nullptr, none));
          ltk::ShardReadOptions ro;  // ids and flags read with pread
          ro.max_len = max_len;
          ro.truncation = policy;
          ro.pack = pack;
          ro.word_flags = c.task.whole_word;
          ro.release_bytes = 64;
          check_same_mlm_samples(mem, ltk::open_shard(dir.file("shards/train"), ro));
        }
    if (config.task.whole_word) {  // words.bin changed or cut short: named
      const std::string copy = dir.file("damaged");
      std::filesystem::remove_all(copy);
      std::filesystem::copy(dir.file("shards/train"), copy);
      std::string bytes = ltk::test::read_text(copy + "/words.bin");
      bytes[bytes.size() / 2] ^= 1;
      ltk::test::write_file(copy + "/words.bin", bytes);
      ltk::ShardReadOptions ro;
      ro.word_flags = true;
      CHECK_THROWS_WITH(ltk::open_shard(copy, ro), Contains("words.bin") && Contains("digest"));
      ltk::test::write_file(copy + "/words.bin", bytes.substr(1));
      CHECK_THROWS_WITH(ltk::open_shard(copy, ro), Contains("words.bin") && Contains("bytes where"));
    }
    // A whole-word config on a shard without flags, or with another segmenter: refused, naming the key.
    ltk::Config other = config;
    other.task.whole_word = true;
    other.task.word_segmenter = config.task.word_segmenter == "jieba" ? "wordpiece" : "jieba";
    const ltk::TargetEncoder none;
    CHECK_THROWS_WITH(
        ltk::open_config_shard(dir.file("shards/train"), other, "data.train", &vocab, nullptr, none),
        Contains(config.task.whole_word ? "task.word_segmenter" : "task.whole_word") && Contains("ltk-data encode"));
    // A classifier's config on an mlm shard, and the other way round: refused.
    ltk::Config classifier = config;
    classifier.task.type = "multiclass";
    classifier.task.whole_word = false;
    classifier.task.word_segmenter = "wordpiece";
    CHECK_THROWS_WITH(ltk::check_shard_matches(dir.file("shards/train"), manifest, classifier, "data.train"),
                      Contains("task.type") && Contains("mlm"));
  }
}

namespace {

/// Config overrides for a tiny BERT over DIR/wp_vocab.txt ([CLS]/[SEP]) of `max_len` ids, trained
/// 2 shuffled epochs in batches of `batch`.
std::vector<std::string> tiny_bert_overrides(const TempDir& dir, int max_len, int batch) {
  return {"data.tokenizer.type=wordpiece",
          "data.tokenizer.dict=" + dir.file("wp_vocab.txt"),
          "data.vocab.source=tokenizer",
          "data.special_tokens=true",
          "data.max_len=" + std::to_string(max_len),
          "trainer.epochs=2",
          "trainer.batch_size=" + std::to_string(batch),
          "trainer.shuffle=true",
          R"(model={"type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "intermediate_size": 16, "max_position_embeddings": )" +
              std::to_string(max_len) + "}"};
}

/// The last checkpoints of runs A and B hold the same weights, bit for bit.
void check_same_last_weights(const std::string& a, const std::string& b) {
  auto wa = weights_of(ltk::RunDirectory::open(a).checkpoint("last"));
  auto wb = weights_of(ltk::RunDirectory::open(b).checkpoint("last"));
  REQUIRE(wa.size() == wb.size());
  for (const auto& [name, t] : wa) {
    INFO(name);
    CHECK(torch::equal(t, wb.at(name)));
  }
}

}  // namespace

TEST_CASE("shards: masked-LM pretraining from shards (whole words, packed) is the run from the raw files, bit for bit",
          "[shards][mlm]") {
  TempDir dir;
  const std::string cfg = ltk::test::toy_config(dir);
  write_wordpiece_corpus(dir, 200, 120, 120, 30);  // (over toy_config's corpus)
  std::vector<std::string> common = tiny_bert_overrides(dir, 48, 4);
  common.insert(common.end(), {"data.test=", "task.type=mlm", "task.whole_word=true", "task.pack=true"});
  auto raw = common, mapped = common;
  raw.insert(raw.end(), {"output_dir=" + dir.file("raw")});
  const ltk::Config raw_config = ltk::load_config(cfg, raw);
  ltk::EncodeShardsOptions o;
  o.out = dir.file("shards");
  o.piece_bytes = 2000;
  ltk::encode_shards(raw_config, o);
  mapped.insert(mapped.end(), {"output_dir=" + dir.file("mapped"), "data.train=" + dir.file("shards/train"),
                               "data.valid=" + dir.file("shards/valid")});
  ltk::ShardReadOptions packed;
  packed.max_len = 48;
  packed.pack = true;
  CHECK(ltk::open_shard(dir.file("shards/train"), packed).size() < 115);  // of 120 texts: packed
  const auto a = ltk::run_training(raw_config);
  const auto b = ltk::run_training(ltk::load_config(cfg, mapped));
  CHECK(a.steps == b.steps);
  CHECK(a.steps > 0);
  check_same_last_weights(dir.file("raw"), dir.file("mapped"));
}

TEST_CASE("shards: a BERT run on sentence pairs from shards is the run from the raw files, bit for bit", "[shards]") {
  TempDir dir;
  const std::string cfg = ltk::test::toy_config(dir);
  write_wordpiece_corpus(dir, 200, 120, 10, 10);
  ltk::test::write_file(dir.file("train.tsv"), pair_corpus("multiclass", 96, 1));
  ltk::test::write_file(dir.file("valid.tsv"), pair_corpus("multiclass", 24, 2));
  std::vector<std::string> common = tiny_bert_overrides(dir, 12, 8);  // max_len 12: most pairs are cut
  common.insert(common.end(), {"data.train=" + dir.file("train.tsv"), "data.valid=" + dir.file("valid.tsv"),
                               "data.test=", "data.text_pair_column=2"});
  auto raw = common, mapped = common;
  raw.push_back("output_dir=" + dir.file("raw"));
  const ltk::Config raw_config = ltk::load_config(cfg, raw);
  REQUIRE(encode_in_small_pieces(raw_config, dir) == 2);
  mapped.insert(mapped.end(), {"output_dir=" + dir.file("mapped"), "data.train=" + dir.file("shards/train"),
                               "data.valid=" + dir.file("shards/valid")});
  const auto a = ltk::run_training(raw_config);
  const auto b = ltk::run_training(ltk::load_config(cfg, mapped));
  CHECK(a.steps == b.steps);
  CHECK(a.steps > 0);
  check_same_last_weights(dir.file("raw"), dir.file("mapped"));
}

TEST_CASE("shards: the bytes do not depend on the thread count or the piece size, and a failed encode leaves nothing",
          "[shards]") {
  TempDir dir;
  ltk::test::write_file(dir.file("train.tsv"), shard_corpus("multiclass", 12000, 3));
  ltk::test::write_file(dir.file("valid.tsv"), shard_corpus("multiclass", 50, 4));
  const ltk::Config config = shard_config(dir, "multiclass", {{"vocab", {{"min_freq", 2}}}});
  std::vector<nlohmann::json> files;
  // 1 and 3 threads (3 pieces tokenised at once when the pieces are small; the ids rewritten by 3
  // threads in blocks of 64 ids, and by 3 in one block each).
  for (auto [threads, piece] : {std::pair<int, size_t>{1, 8 << 20}, {3, 8 << 20}, {3, 5000}}) {
    ltk::EncodeShardsOptions o;
    o.out = dir.file("s" + std::to_string(files.size()));
    o.threads = threads;
    o.piece_bytes = piece;
    o.remap_block = piece == 5000 ? 64 : int64_t{1} << 20;
    ltk::encode_shards(config, o);
    files.push_back(ltk::read_shard_manifest(o.out + "/train")["files"]);
  }
  CHECK(files[0] == files[1]);
  CHECK(files[0] == files[2]);
  {  // 12000 texts: the compact offsets' blocks past the first (4096 texts each) read as mapped ones
    ltk::ShardReadOptions in_memory, mapped;
    mapped.index_in_memory = 0;
    const auto a = ltk::open_shard(dir.file("s0/train"), in_memory), b = ltk::open_shard(dir.file("s0/train"), mapped);
    REQUIRE(a.size() == 12000);
    for (int64_t i = 0; i < a.size(); ++i) {
      REQUIRE(a.full_length(i) == b.full_length(i));
      REQUIRE(a.label(i) == b.label(i));
      const ltk::IdPieces x = a.ids(i), y = b.ids(i);
      REQUIRE(x.size() == y.size());
      for (int64_t k = 0; k < x.size(); ++k) REQUIRE(x[k] == y[k]);
    }
  }
  {
    // Pieces are parsed where they are encoded, once the header is known. A CSV whose header comes
    // after blank lines, in pieces of a few rows (the first hold no row, and are parsed in order
    // until the header is read), gives the bytes of one piece on one thread; with bad rows in
    // neighbouring pieces (encoded at once) and far apart, the error is the first one's on any
    // thread count.
    std::string csv = "\n\n\n\nlabel,text\n", bad_csv;
    std::istringstream in(shard_corpus("multiclass", 3000, 8));
    int row = 0;
    for (std::string line; std::getline(in, line); ++row) {
      const size_t tab = line.find('\t');
      std::string text = line.substr(tab + 1);
      for (size_t q = 0; (q = text.find('"', q)) != std::string::npos; q += 2) text.insert(q, 1, '"');
      const std::string record = line.substr(0, tab) + ",\"" + text + (row % 7 == 0 ? "\nsecond line" : "") + "\"\n";
      csv += record;
      bad_csv += row == 1200 || row == 1230 || row == 2500 ? "zzz\n" : record;  // a record without its text
    }
    ltk::test::write_file(dir.file("train.csv"), csv);
    ltk::test::write_file(dir.file("bad.csv"), "label,text\n" + bad_csv);
    ltk::Config csv_config = shard_config(dir, "multiclass", {{"header", true}, {"label_column", "label"}});
    csv_config.data.train = dir.file("train.csv");
    csv_config.data.valid.clear();
    std::vector<nlohmann::json> csv_files;
    for (auto [threads, piece] : {std::pair<int, size_t>{1, 8 << 20}, {3, 7}, {2, 300}}) {
      ltk::EncodeShardsOptions o;
      o.out = dir.file("c" + std::to_string(csv_files.size()));
      o.threads = threads;
      o.piece_bytes = piece;
      REQUIRE(ltk::encode_shards(csv_config, o).at(0).samples == 3000);
      csv_files.push_back(ltk::read_shard_manifest(o.out + "/train")["files"]);
    }
    CHECK(csv_files[0] == csv_files[1]);
    CHECK(csv_files[0] == csv_files[2]);
    csv_config.data.train = dir.file("bad.csv");
    for (int threads : {1, 3}) {
      ltk::EncodeShardsOptions o;
      o.out = dir.file("bad" + std::to_string(threads));
      o.threads = threads;
      o.piece_bytes = 2000;
      // line 2 + 1200 rows, 1 in 7 of them two lines long
      REQUIRE_THROWS_WITH(ltk::encode_shards(csv_config, o),
                          Contains("bad.csv:" + std::to_string(2 + 1200 + (1200 + 6) / 7)) && Contains("column"));
      CHECK_FALSE(std::filesystem::exists(o.out + "/train.partial"));
    }
  }
  // Encoding again needs --overwrite; a leftover .partial is replaced; a failure removes its .partial.
  ltk::EncodeShardsOptions o;
  o.out = dir.file("s0");
  REQUIRE_THROWS_WITH(ltk::encode_shards(config, o), Contains("--overwrite"));
  ltk::test::write_file(dir.file("valid.tsv"), shard_corpus("multiclass", 50, 4) + "zzz\tan unknown label\n");
  o.overwrite = true;
  REQUIRE_THROWS_WITH(ltk::encode_shards(config, o), Contains("valid.tsv:51") && Contains("'zzz'"));
  CHECK_FALSE(std::filesystem::exists(dir.file("s0/valid.partial")));
  CHECK(ltk::is_shard(dir.file("s0/valid")));  // the old shard is still whole
}

namespace {

std::string g_kill_point;
int64_t g_kill_at = 0;

/// Every file of a shard directory, by name.
std::map<std::string, std::string> shard_bytes(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    files[e.path().filename().string()] = ltk::test::read_text(e.path().string());
  return files;
}

}  // namespace

TEST_CASE(
    "shards: an encode killed with SIGKILL while appending, rewriting ids, before its rename or before removing the "
    "shard it replaced leaves a whole shard or none, and the next one is whole",
    "[shards]") {
  TempDir dir;
  ltk::test::write_file(dir.file("train.tsv"), shard_corpus("multiclass", 600, 5));
  ltk::test::write_file(dir.file("valid.tsv"), shard_corpus("multiclass", 40, 6));
  ltk::test::write_file(dir.file("old.tsv"), shard_corpus("multiclass", 90, 7));
  const ltk::Config config = shard_config(dir, "multiclass", {{"vocab", {{"min_freq", 2}}}});
  ltk::Config old_config = config;
  old_config.data.train = dir.file("old.tsv");
  auto encode = [&](const ltk::Config& c, const std::string& out) {
    ltk::EncodeShardsOptions o;
    o.out = out;
    o.overwrite = true;
    o.piece_bytes = 4000;  // several pieces
    o.threads = 2;
    ltk::encode_shards(c, o);
  };
  encode(config, dir.file("ref"));
  const auto ref = shard_bytes(dir.file("ref/train"));
  // The shard at `at` holds the bytes of the reference encode (the manifest's counts and files).
  auto check_is_ref = [&](const std::string& at) {
    auto got = shard_bytes(at);
    const auto a = nlohmann::json::parse(got["manifest.json"]), b = nlohmann::json::parse(ref.at("manifest.json"));
    CHECK(a["files"] == b["files"]);
    CHECK(a["samples"] == b["samples"]);
    got.erase("manifest.json");
    auto want = ref;
    want.erase("manifest.json");
    CHECK(got == want);
  };
  // (A fork: the child encodes and kills itself at the fault point; SIGKILL runs no destructor.)
  // "dir_swapped": killed between swapping the new shard in and removing the old one (a swap
  // happens only over an older shard).
  for (const char* point : {"shard_append", "shard_remap", "shard_rename", "dir_swapped"})
    for (bool had_old : {false, true}) {
      const bool swapped = std::string(point) == "dir_swapped";
      if (swapped && !had_old) continue;
      const std::string out = dir.file(std::string(point) + (had_old ? "_old" : "_new"));
      INFO(point << (had_old ? ", over an older shard" : ", no shard before"));
      if (had_old) encode(old_config, out);
      const auto old = had_old ? shard_bytes(out + "/train") : std::map<std::string, std::string>{};
      g_kill_point = point;
      g_kill_at = std::string(point) == "shard_append" ? 200 : 0;
      std::fflush(nullptr);
      const pid_t child = fork();
      REQUIRE(child >= 0);
      if (child == 0) {
        ltk::set_fault_hook([](const char* p, int64_t samples) {
          if (g_kill_point == p && samples >= g_kill_at) std::raise(SIGKILL);
        });
        try {
          encode(config, out);
        } catch (...) {
          _exit(3);
        }
        _exit(0);
      }
      int status = 0;
      pid_t done = 0;
      for (int ms = 0; ms < 300000 && done == 0; ms += 10) {  // at most 5 minutes
        done = waitpid(child, &status, WNOHANG);
        if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (done == 0) kill(child, SIGKILL), waitpid(child, &status, 0);
      REQUIRE(done == child);
      REQUIRE(WIFSIGNALED(status));
      CHECK(WTERMSIG(status) == SIGKILL);
      // The kill left the shard as it was (or none; the new one, whole, once swapped in), and
      // DIR.partial beside it (once swapped: the old shard, left to remove).
      const bool aside = std::filesystem::exists(out + "/train.ltk-old");  // no RENAME_EXCHANGE here
      if (swapped) {
        check_is_ref(out + "/train");
        CHECK(shard_bytes(out + (aside ? "/train.ltk-old" : "/train.partial")) == old);
      } else if (had_old) {
        CHECK(shard_bytes(out + "/train") == old);
      } else {
        CHECK_FALSE(std::filesystem::exists(out + "/train"));
      }
      CHECK(std::filesystem::exists(out + (swapped && aside ? "/train.ltk-old" : "/train.partial")));
      // Encoding again starts over: the same bytes as an encode never killed, nothing left over.
      encode(config, out);
      CHECK_FALSE(std::filesystem::exists(out + "/train.partial"));
      CHECK_FALSE(std::filesystem::exists(out + "/train.ltk-old"));
      check_is_ref(out + "/train");
      ltk::ShardReadOptions ro;
      CHECK(ltk::open_shard(out + "/train", ro).size() == 600);
    }
}

TEST_CASE("report: a split's length percentiles come from a histogram, as from the sorted lengths",
          "[shards][report]") {
  ltk::TextDataset d;
  std::vector<int64_t> lengths;
  std::mt19937 rng(4);
  for (int i = 0; i < 1001; ++i) {
    const auto len = static_cast<int64_t>(rng() % 37);
    lengths.push_back(len);
    d.add(std::vector<int32_t>(static_cast<size_t>(len), 5), len, {0}, 0.0f, i + 1);
  }
  std::sort(lengths.begin(), lengths.end());
  const auto rows = ltk::dataset_stats("train", d);
  CHECK(rows.at(1).second == "p50 " + std::to_string(lengths[500]) + "  p90 " + std::to_string(lengths[900]) +
                                 "  p99 " + std::to_string(lengths[990]) + "  max " + std::to_string(lengths.back()));
  CHECK(ltk::dataset_stats("empty", ltk::TextDataset()).at(1).second == "p50 0  p90 0  p99 0  max 0");
}

TEST_CASE("shards: a damaged shard, a lying manifest or another config is a clear error naming the file or key",
          "[shards]") {
  TempDir dir;
  ltk::test::write_file(dir.file("train.tsv"), shard_corpus("multiclass", 200, 1));
  ltk::test::write_file(dir.file("valid.tsv"), shard_corpus("multiclass", 40, 2));
  const ltk::Config config = shard_config(dir, "multiclass", nlohmann::json::object());
  ltk::EncodeShardsOptions o;
  o.out = dir.file("shards");
  ltk::encode_shards(config, o);
  const std::string train = dir.file("shards/train");
  auto copy_shard = [&](const std::string& name) {
    std::filesystem::copy(train, dir.file(name), std::filesystem::copy_options::recursive);
    return dir.file(name);
  };
  ltk::ShardReadOptions read;
  {  // truncated ids
    const std::string s = copy_shard("truncated");
    std::filesystem::resize_file(s + "/ids.bin", std::filesystem::file_size(s + "/ids.bin") - 4);
    REQUIRE_THROWS_WITH(ltk::open_shard(s, read), Contains("ids.bin") && Contains("truncated"));
  }
  {  // one byte changed: the digest says so
    const std::string s = copy_shard("flipped");
    std::string bytes = ltk::test::read_text(s + "/classes.bin");
    bytes[5] ^= 0x01;
    ltk::test::write_file(s + "/classes.bin", bytes);
    REQUIRE_THROWS_WITH(ltk::open_shard(s, read), Contains("classes.bin") && Contains("digest"));
    // unverified, the class id out of range is still caught
    ltk::ShardReadOptions fast;
    fast.verify = false;
    bytes[5] = 0x40;  // a class id of 2^14
    ltk::test::write_file(s + "/classes.bin", bytes);
    REQUIRE_THROWS_WITH(ltk::open_shard(s, fast), Contains("classes.bin") && Contains("outside"));
  }
  {  // a manifest that lies about the counts, and one from a newer ltk
    const std::string s = copy_shard("lying");
    auto m = ltk::read_shard_manifest(s);
    m["samples"] = m["samples"].get<int64_t>() + 1;
    ltk::test::write_file(s + "/manifest.json", m.dump());
    REQUIRE_THROWS_WITH(ltk::open_shard(s, read), Contains(".bin") && Contains("manifest"));
    m["version"] = 99;
    ltk::test::write_file(s + "/manifest.json", m.dump());
    REQUIRE_THROWS_WITH(ltk::open_shard(s, read), Contains("version 99"));
    ltk::test::write_file(s + "/manifest.json", "{\"format\": \"ltk-shard\"");
    REQUIRE_THROWS_WITH(ltk::open_shard(s, read), Contains("manifest.json") && Contains("not valid JSON"));
  }
  {  // a field of the wrong type; a label count that is not labels.txt's; another pad id
    const std::string s = copy_shard("typed");
    const auto m = ltk::read_shard_manifest(s);
    auto bad = m;
    bad["special_tokens"] = "yes";
    ltk::test::write_file(s + "/manifest.json", bad.dump());
    REQUIRE_THROWS_WITH(ltk::open_shard(s, read), Contains("manifest.json") && Contains("\"special_tokens\" is not"));
    bad = m;
    bad["labels"]["count"] = m["labels"]["count"].get<int64_t>() + 1;
    ltk::test::write_file(s + "/labels.txt", ltk::test::read_text(s + "/labels.txt") + "\n");  // a blank line
    ltk::test::write_file(s + "/manifest.json", bad.dump());
    REQUIRE_THROWS_WITH(ltk::open_shard(s, read), Contains("labels.txt") && Contains("labels where the manifest"));
    bad = m;
    bad["vocab"]["pad_id"] = 7;
    ltk::test::write_file(s + "/manifest.json", bad.dump());
    const InMemory mm = in_memory(config);
    REQUIRE_THROWS_WITH(
        ltk::open_config_shard(s, config, "data.train", &mm.vocab, &mm.labels, mm.task->target_encoder()),
        Contains("pad id 7"));
  }
  // Another tokenizer setting, another vocabulary, another model: refused naming the key.
  const ltk::Config upper = shard_config(dir, "multiclass", {{"tokenizer", {{"lowercase", false}}}});
  const InMemory mem = in_memory(config);
  const auto targets = mem.task->target_encoder();
  REQUIRE_THROWS_WITH(ltk::open_config_shard(train, upper, "data.train", nullptr, nullptr, targets),
                      Contains("data.tokenizer.lowercase") && Contains("'data.train'"));
  const ltk::Config rare = shard_config(dir, "multiclass", {{"vocab", {{"min_freq", 3}}}});
  REQUIRE_THROWS_WITH(ltk::open_config_shard(train, rare, "data.train", nullptr, nullptr, targets),
                      Contains("data.vocab.min_freq"));
  const ltk::Vocabulary other = ltk::Vocabulary::build(ltk::TokenCounter(), 1, 0);
  REQUIRE_THROWS_WITH(ltk::open_config_shard(train, config, "data.valid", &other, nullptr, targets),
                      Contains("another vocabulary"));
  const nlohmann::json lin = {
      {"name", "lin"}, {"data", {{"train", dir.file("train.tsv")}}}, {"model", {{"type", "linear"}}}};
  REQUIRE_THROWS_WITH(ltk::open_config_shard(train, ltk::parse_config(lin), "data.train", nullptr, nullptr, targets),
                      Contains("'model.type'") && Contains("n-gram"));
  // Read after its pages were handed back, a shard gives the same ids.
  ltk::ShardReadOptions small;
  small.release_bytes = 64;
  small.index_in_memory = 0;  // the offsets and classes read mapped too
  const ltk::TextDataset a = ltk::open_shard(train, small);
  std::vector<int64_t> all(static_cast<size_t>(a.size()));
  std::iota(all.begin(), all.end(), 0);
  const ltk::PadCollate collate;
  const auto first = collate(a, all).ids, second = collate(a, all).ids, third = collate(a, all).ids;
  CHECK(torch::equal(first, second));
  CHECK(torch::equal(first, third));  // read after the release that the second pass made
  CHECK(torch::equal(first, collate(mem.train, all).ids));
  CHECK(torch::equal(collate(a, all).labels, collate(mem.train, all).labels));
}
