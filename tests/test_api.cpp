// The public facade (ltk/ltk.h): a config trained with ltk::train, its run read with ltk::Classifier;
// the classifier's answers are ltk-predict's.
#include <catch2/catch.hpp>

#include <cmath>
#include <sstream>

#include "ltk/ltk.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using ltk::test::run_app;
using ltk::test::TempDir;

TEST_CASE(
    "api: ltk::train then ltk::Classifier - labels, scores, top-k, batches with errors in place, ltk-predict's "
    "answers",
    "[api]") {
  TempDir dir;
  ltk::Config config = ltk::load_config(ltk::test::toy_config(dir));
  ltk::TrainResult trained = ltk::train(config);
  CHECK(trained.run_dir == dir.file("run"));
  CHECK(trained.steps == 15 * 8);  // 60 samples in batches of 8 (the last of 4), 15 epochs
  CHECK(trained.epochs == 15);
  CHECK(trained.best_epoch >= 1);
  CHECK(trained.interrupted == 0);
  REQUIRE(trained.test.is_object());
  CHECK(trained.test.at("accuracy").get<double>() > 0.8);
  // A second train into the same directory is refused unless asked to overwrite.
  REQUIRE_THROWS_AS(ltk::train(config), ltk::Error);
  ltk::TrainOptions overwrite;
  overwrite.overwrite = true;
  CHECK(ltk::train(config, overwrite).steps == trained.steps);

  ltk::Classifier clf(trained.run_dir);
  CHECK(clf.task() == "multiclass");
  CHECK(clf.labels().size() == 3);
  CHECK_FALSE(clf.pairs());
  ltk::Prediction p = clf.classify("goal match team score", 2);
  CHECK(p.ok());
  CHECK(p.label == "sport");
  CHECK(p.labels == std::vector<std::string>{"sport"});
  REQUIRE(p.scores.size() == 3);
  double sum = 0;
  for (size_t i = 0; i < p.scores.size(); ++i) {
    CHECK(p.scores[i].label == clf.labels()[i]);  // label order
    sum += p.scores[i].score;
  }
  CHECK(std::abs(sum - 1) < 1e-4);  // softmax probabilities, rounded to 6 digits each
  REQUIRE(p.top.size() == 2);
  CHECK(p.top[0].label == "sport");
  CHECK(p.top[0].score == p.score);
  CHECK(p.top[0].score >= p.top[1].score);
  CHECK(p.json.at("label") == "sport");
  REQUIRE_THROWS_WITH(clf.classify("   "), Contains("empty text"));
  REQUIRE_THROWS_WITH(clf.classify_pair("a", "b"), Contains("single texts"));
  REQUIRE_THROWS_WITH(clf.classify("goal", -1), Contains("top_k"));

  // A batch: each text answered in order, a bad one answered with its error in place.
  auto batch = clf.classify_batch({"goal match", "", "linux kernel bug", "bad \xff byte", "bread soup"});
  REQUIRE(batch.size() == 5);
  CHECK(batch[0].label == "sport");
  CHECK(batch[1].error == "empty text");
  CHECK_THAT(batch[3].error, StartsWith("invalid UTF-8 at byte 4"));
  CHECK(batch[3].json.at("error") == batch[3].error);
  CHECK(batch[2].label == "tech");
  CHECK(batch[4].label == "food");
  // Alone or in a batch, the same answer (length-sorted batches are padding-invariant).
  CHECK(clf.classify("linux kernel bug").json == batch[2].json);

  // ltk-predict prints the very same JSON.
  auto predicted =
      run_app("ltk-predict", "--run '" + trained.run_dir + "'", "goal match\nlinux kernel bug\nbread soup\n");
  INFO(predicted.err);
  REQUIRE(predicted.code == 0);
  std::istringstream lines(predicted.out);
  std::string line;
  for (size_t i : {0, 2, 4}) {
    REQUIRE(std::getline(lines, line));
    CHECK(nlohmann::ordered_json::parse(line) == batch[i].json);
  }

  // A classifier moves; a run that is not there is refused with the path.
  ltk::Classifier moved = std::move(clf);
  CHECK(moved.classify("cheese salad").label == "food");
  REQUIRE_THROWS_WITH(clf.classify("cheese"), Contains("moved from"));  // NOLINT(bugprone-use-after-move)
  REQUIRE_THROWS_WITH(ltk::Classifier(dir.file("nope")), Contains(dir.file("nope")));
}

TEST_CASE("api: the facade's config readers check every key - parse_config from JSON written in code", "[api]") {
  TempDir dir;
  ltk::test::write_file(dir.file("train.tsv"), ltk::test::toy_corpus(4, 1));
  nlohmann::json doc = {{"device", "cpu"},
                        {"data", {{"train", dir.file("train.tsv")}}},
                        {"model", {{"type", "bow"}, {"embed_dimm", 16}}}};
  REQUIRE_THROWS_WITH(ltk::parse_config(doc), Contains("embed_dimm") && Contains("did you mean"));
  doc["model"] = {{"type", "bow"}, {"embed_dim", 16}};
  ltk::Config config = ltk::parse_config(doc, "mine");
  CHECK(config.name == "mine");
  CHECK(config.model.options.at("embed_dim") == 16);
  REQUIRE_THROWS_WITH(ltk::load_config(dir.file("missing.json")), Contains("missing.json"));
}
