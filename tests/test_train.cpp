#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "ltk/config/config.h"
#include "ltk/core/error.h"
#include "ltk/eval/evaluator.h"
#include "ltk/eval/metrics.h"
#include "ltk/io/checkpoint.h"
#include "ltk/io/run.h"
#include "ltk/models/bow.h"
#include "ltk/models/registry.h"
#include "ltk/train/optim.h"
#include "ltk/train/trainer.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using ltk::test::TempDir;

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
  auto summary = ltk::run_training(config, false);
  REQUIRE(summary.test.has_value());
  CHECK(summary.steps == 15 * 8);  // 60 samples / batch 8 = 8 batches per epoch
  auto run = ltk::load_run(config.output_dir, "last");
  auto train = run.encode(ltk::read_tsv(config.data.train), config.data.train, true);
  auto report = run.task->evaluate(ltk::predict(*run.model, *run.task, train, 32, run.device, run.vocab.size()));
  CHECK(report.get("accuracy") == 1.0);
  // The run directory is a complete artefact.
  for (const char* f : {"config.json", "vocab.txt", "labels.txt", "metrics.jsonl", "train.log",
                        "checkpoints/best.pt", "checkpoints/last.pt", "checkpoints/best.optim.pt",
                        "checkpoints/best.json"})
    CHECK(std::filesystem::exists(config.output_dir + "/" + f));
  auto metrics = ltk::test::read_text(config.output_dir + "/metrics.jsonl");
  CHECK_THAT(metrics, Contains("\"kind\":\"valid\"") && Contains("\"kind\":\"test\""));
  // The resolved config is written back and parses to the same config.
  CHECK(ltk::to_json(run.config) == ltk::to_json(config));
}

TEST_CASE("train: the same config and seed give identical weights", "[train][determinism]") {
  TempDir dir;
  ltk::Config config = ltk::load_config(ltk::test::toy_config(dir), {"trainer.epochs=2"});
  ltk::run_training(config, false);
  auto first = ltk::test::read_text(config.output_dir + "/checkpoints/last.pt");
  ltk::run_training(config, /*overwrite=*/true);
  CHECK(ltk::test::read_text(config.output_dir + "/checkpoints/last.pt") == first);
  REQUIRE_THROWS_WITH(ltk::run_training(config, false), Contains("already holds a run") && Contains("--overwrite"));
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
  REQUIRE_THROWS_WITH(ltk::run_training(config, false), Contains("data.valid") && Contains("nope.tsv"));
  CHECK_FALSE(std::filesystem::exists(config.output_dir));
}
