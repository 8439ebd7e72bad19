// Evaluation: metrics against scikit-learn, calibration, and the evaluator's memory behaviour.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "ltk/eval/evaluator.h"
#include "ltk/metrics/compare.h"
#include "ltk/metrics/scores.h"
#include "ltk/models/registry.h"
#include "ltk/task/calibration.h"
#include "ltk/task/task.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using nlohmann::json;

TEST_CASE("metrics: every task's figures agree with scikit-learn on random data", "[eval][sklearn]") {
  std::mt19937 rng(11);
  json cases = json::array();
  for (int rep = 0; rep < 3; ++rep) {
    // binary, with tied scores
    ltk::TaskConfig bc;
    bc.type = "binary";
    ltk::BinaryTask binary(bc, ltk::LabelMap::from_labels({"neg", "pos"}));
    const int64_t N = 200;
    ltk::Predictions p;
    p.scores = (torch::rand({N, 1}) * 20).round() / 20;
    p.targets = torch::randint(0, 2, {N}).to(torch::kFloat);
    p.samples = N;
    auto r = binary.evaluate(p);
    json c = {{"kind", "binary"}};
    std::vector<int> truth, correct;
    std::vector<double> scores, conf;
    for (int64_t i = 0; i < N; ++i) {
      double s = p.scores[i][0].item<double>();
      int y = p.targets[i].item<float>() > 0.5f;
      int q = s >= 0.5;
      scores.push_back(s);
      truth.push_back(y);
      correct.push_back(q == y);
      conf.push_back(q ? s : 1 - s);
    }
    c["scores"] = scores;
    c["truth"] = truth;
    c["conf"] = conf;
    c["correct"] = correct;
    c["roc_auc"] = r.get("roc_auc");
    c["pr_auc"] = r.get("pr_auc");
    c["best_f1"] = r.metrics["best_threshold"]["f1"];
    c["ece"] = r.get("ece");
    cases.push_back(c);

    // multiclass
    auto labels = ltk::LabelMap::from_labels({"a", "b", "c", "d", "e", "f"});
    ltk::TaskConfig mc;
    ltk::MulticlassTask multi(mc, labels);
    ltk::Predictions m;
    m.scores = torch::softmax(torch::randn({N, 6}) * 2, 1);
    m.targets = torch::randint(0, 6, {N});
    m.samples = N;
    auto mr = multi.evaluate(m);
    json mcase = {{"kind", "multiclass"}};
    std::vector<std::vector<double>> probs;
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> row;
      for (int64_t k = 0; k < 6; ++k) row.push_back(m.scores[i][k].item<float>());
      probs.push_back(row);
    }
    auto pred = m.scores.argmax(1);
    mcase["probs"] = probs;
    mcase["gold"] = std::vector<int64_t>(m.targets.data_ptr<int64_t>(), m.targets.data_ptr<int64_t>() + N);
    mcase["pred"] = std::vector<int64_t>(pred.data_ptr<int64_t>(), pred.data_ptr<int64_t>() + N);
    for (const char* k : {"accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "micro_f1",
                          "top3_accuracy", "ece"})
      mcase[k] = mr.get(k);
    cases.push_back(mcase);

    // multilabel
    ltk::TaskConfig lc;
    lc.type = "multilabel";
    ltk::MultilabelTask ml(lc, ltk::LabelMap::from_labels({"x", "y", "z", "w"}));
    ltk::Predictions l;
    l.scores = torch::rand({N, 4});
    l.targets = torch::randint(0, 2, {N, 4}).to(torch::kFloat);
    l.samples = N;
    auto lr = ml.evaluate(l);
    auto lp = (l.scores >= 0.5).to(torch::kLong);
    json lcase = {{"kind", "multilabel"}};
    std::vector<std::vector<int64_t>> gold_rows, pred_rows;
    for (int64_t i = 0; i < N; ++i) {
      std::vector<int64_t> gr, pr;
      for (int64_t k = 0; k < 4; ++k) {
        gr.push_back(l.targets[i][k].item<float>() > 0.5f);
        pr.push_back(lp[i][k].item<int64_t>());
      }
      gold_rows.push_back(gr);
      pred_rows.push_back(pr);
    }
    lcase["gold"] = gold_rows;
    lcase["pred"] = pred_rows;
    for (const char* k : {"subset_accuracy", "hamming_loss", "micro_f1", "macro_f1"}) lcase[k] = lr.get(k);
    cases.push_back(lcase);

    // regression
    ltk::TaskConfig rc;
    rc.type = "regression";
    ltk::RegressionTask reg(rc);
    ltk::Predictions g;
    g.targets = torch::randn({N});
    g.scores = (g.targets + torch::randn({N}) * 0.5).round().unsqueeze(1);  // ties for Spearman
    g.samples = N;
    auto gr = reg.evaluate(g);
    json gcase = {{"kind", "regression"}};
    std::vector<double> t, q;
    for (int64_t i = 0; i < N; ++i) {
      t.push_back(g.targets[i].item<float>());
      q.push_back(g.scores[i][0].item<float>());
    }
    gcase["truth"] = t;
    gcase["pred"] = q;
    for (const char* k : {"mae", "rmse", "r2", "pearson", "spearman"}) gcase[k] = gr.get(k);
    cases.push_back(gcase);
  }
  ltk::test::TempDir dir;
  ltk::test::write_file(dir.file("cases.json"), cases.dump());
  std::string cmd = "/usr/bin/python3 '" LTK_SOURCE_DIR "/tests/metrics/check_sklearn.py' '" + dir.file("cases.json") +
                    "' > '" + dir.file("out.txt") + "' 2>&1";
  int status = std::system(cmd.c_str());
  std::string out = ltk::test::read_text(dir.file("out.txt"));
  INFO(out);
  CHECK(status == 0);
  CHECK_THAT(out, Contains("sklearn: 0 mismatches"));
}

TEST_CASE("compare: zero bootstrap resamples is an error, not an empty-vector index", "[eval]") {
  std::vector<int> a = {1, 0, 1}, b = {1, 1, 0};
  CHECK_THROWS_WITH(ltk::compare_runs(a, b, 0), Catch::Matchers::Contains("at least 1 resample"));
  auto c = ltk::compare_runs(a, b, 1);
  CHECK(c.diff_low == c.diff_high);
}

TEST_CASE("calibration: equal-width bins and the expected calibration error", "[eval]") {
  auto c = ltk::calibration({0.95, 0.95, 0.55, 0.55, 1.0}, {1, 0, 1, 1, 1}, 10);
  CHECK(c.bins[9].count == 3);
  CHECK(c.bins[5].count == 2);
  CHECK(c.bins[5].accuracy == Approx(1.0));
  double expected = (std::fabs(2.0 / 3 - (0.95 + 0.95 + 1.0) / 3) * 3 + std::fabs(1.0 - 0.55) * 2) / 5;
  CHECK(c.ece == Approx(expected));
  CHECK(ltk::roc_auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}) == Approx(0.75));
  CHECK(std::isnan(ltk::roc_auc({0.1, 0.2}, {1, 1})));
}

namespace {
int64_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}
}  // namespace

TEST_CASE("pitfall P6: evaluation memory stays flat over a long file (no graph, outputs on the CPU)", "[eval][memory]") {
  torch::manual_seed(1);
  nlohmann::json section = {{"type", "bow"}, {"embed_dim", 512}, {"hidden_dim", 512}};
  auto model = ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{100, 3, 0, nullptr});
  model->train();  // predict() must switch to eval and to no-grad by itself
  ltk::MulticlassTask task(3, "mean");
  auto make = [](int64_t n) {
    ltk::TextDataset d;
    d.set_source("mem", ltk::TargetKind::class_id, 3);
    for (int64_t i = 0; i < n; ++i) d.add({2 + static_cast<int32_t>(i % 90), 5, 7}, 3, {i % 3}, 0.f, i + 1);
    return d;
  };
  auto small = make(2000), large = make(40000);
  ltk::predict(*model, task, small, 256, torch::kCPU, 100);  // warm the allocator
  int64_t before = rss_bytes();
  ltk::predict(*model, task, small, 256, torch::kCPU, 100);
  int64_t after_small = rss_bytes();
  auto p = ltk::predict(*model, task, large, 256, torch::kCPU, 100);
  int64_t after_large = rss_bytes();
  CHECK(p.scores.size(0) == 40000);
  CHECK_FALSE(p.scores.requires_grad());
  // A kept graph would hold ~1.5 MB of activations per batch (157 batches: ~240 MB); the outputs
  // themselves are 40000 x 3 floats.
  INFO("rss growth small " << (after_small - before) << " large " << (after_large - after_small));
  CHECK(after_large - after_small < 40LL * 1024 * 1024);
  CHECK(model->is_training());
}

TEST_CASE("report: report.html is self-contained and renders in headless Chromium", "[eval][report]") {
  ltk::test::TempDir dir;
  auto r = ltk::test::run_app("ltk-train", "--config '" + ltk::test::toy_config(dir) + "' --set trainer.epochs=3");
  REQUIRE(r.code == 0);
  std::string html = ltk::test::read_text(dir.file("run/report.html"));
  CHECK_THAT(html, Contains("<svg") && Contains("Confusion matrix") && Contains("Reliability") &&
                       Contains("F1 per class") && Contains("Learning rate") && Contains("&quot;epochs&quot;"));
  CHECK_THAT(html, !Contains("<script") && !Contains("src=") && !Contains("href="));
  std::string png = dir.file("shot.png");
  std::string cmd = "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                    "--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars "
                    "--user-data-dir='" + dir.file("profile") + "' --window-size=1200,1600 --screenshot='" + png +
                    "' 'file://" + dir.file("run/report.html") + "' > /dev/null 2>&1 && /usr/bin/python3 '" LTK_SOURCE_DIR
                    "/tests/metrics/png_colors.py' '" + png + "' > '" + dir.file("colors.txt") + "' 2>&1";
  int status = std::system(cmd.c_str());
  std::string colors = ltk::test::read_text(dir.file("colors.txt"));
  INFO(colors);
  REQUIRE(status == 0);
  int n = std::atoi(colors.substr(colors.find(' ') + 1).c_str());
  CHECK(n > 50);  // a blank page has 1
}

TEST_CASE("temperature scaling: an over-confident model's T is found, its ECE drops, its argmax stays",
          "[eval][calibrate]") {
  // Labels drawn from softmax(z) (or sigmoid(z)): z is calibrated; the model reports 4z, four
  // times too confident, and the temperature that undoes it is 4 (up to the sample's noise: the
  // maximum-likelihood estimate of 1/T from 20000 samples is within a few percent).
  torch::manual_seed(11);
  const int64_t n = 20000;
  auto z = torch::randn({n, 4}, torch::kFloat64) * 1.5;
  auto y = torch::multinomial(z.softmax(1), 1).squeeze(1);
  ltk::TaskConfig mc;
  mc.type = "multiclass";
  ltk::MulticlassTask task(mc, ltk::LabelMap::from_labels({"a", "b", "c", "d"}));
  auto t = ltk::fit_temperature("multiclass", z * 4, y);
  REQUIRE(t.size() == 1);
  CHECK(t[0] == Approx(4).epsilon(0.1));
  ltk::Predictions p;
  p.targets = y;
  p.samples = n;
  p.scores = task.scores((z * 4).to(torch::kFloat));
  const double before = task.evaluate(p).get("ece");
  task.set_temperature(t);
  auto calibrated = task.scores((z * 4).to(torch::kFloat));
  p.scores = calibrated;
  const double after = task.evaluate(p).get("ece");
  CHECK(before > 0.05);
  CHECK(after < before / 3);
  CHECK(torch::equal(calibrated.argmax(1), z.argmax(1)));  // what is predicted does not change
  // Per label for sigmoid outputs: two columns over-confident by 3 and by 0.5 (under-confident).
  auto zb = torch::randn({n, 2}, torch::kFloat64) * 2;
  auto yb = torch::bernoulli(zb.sigmoid());
  auto tb = ltk::fit_temperature("multilabel", zb * torch::tensor({3.0, 0.5}, torch::kFloat64), yb);
  REQUIRE(tb.size() == 2);
  CHECK(tb[0] == Approx(3).epsilon(0.1));
  CHECK(tb[1] == Approx(0.5).epsilon(0.1));
  auto one = ltk::fit_temperature("binary", (zb.select(1, 0) * 3).unsqueeze(1), yb.select(1, 0));
  CHECK(one[0] == Approx(tb[0]).epsilon(1e-6));
}

TEST_CASE("tuned thresholds: each label's F1-best threshold is found, a rare label keeps 0.5", "[eval][thresholds]") {
  // Column 0: positives score in [0.20, 0.30], negatives in [0, 0.10]: only a threshold in
  // (max negative, min positive] separates them (F1 1), and the tuned one is midway. Column 1:
  // positives in [0.55, 0.9] and negatives in [0.6, 0.95] overlap: predicting every sample
  // positive (F1 = 2p/(1+p) for a positive share p = 0.5) beats any cut, so the threshold falls
  // under the lowest score. Column 2: 4 positives, fewer than 5: kept at 0.5 (and no score reaches it).
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  const int64_t n = 400;
  auto scores = torch::zeros({n, 3}, torch::kFloat), targets = torch::zeros({n, 3}, torch::kFloat);
  double max_neg = 0, min_pos = 1, lowest = 1;
  for (int64_t i = 0; i < n; ++i) {
    const bool pos = i % 2 == 0;
    const float s0 = static_cast<float>(pos ? 0.2 + 0.1 * u(rng) : 0.1 * u(rng));
    scores[i][0] = s0;
    targets[i][0] = pos ? 1 : 0;
    if (pos)
      min_pos = std::min<double>(min_pos, s0);
    else
      max_neg = std::max<double>(max_neg, s0);
    const float s1 = static_cast<float>(pos ? 0.55 + 0.35 * u(rng) : 0.6 + 0.35 * u(rng));
    scores[i][1] = s1;
    targets[i][1] = pos ? 1 : 0;
    lowest = std::min<double>(lowest, s1);
    scores[i][2] = static_cast<float>(0.4 * u(rng));  // never over 0.5
    targets[i][2] = i < 4 ? 1 : 0;
  }
  auto tuned = ltk::tune_thresholds(scores, targets, 5);
  REQUIRE(tuned.thresholds.size() == 3);
  CHECK(tuned.thresholds[0] == Approx((max_neg + min_pos) / 2));
  CHECK(tuned.f1[0] == 1.0);
  CHECK(tuned.tuned[0]);
  CHECK(tuned.thresholds[1] < lowest);
  CHECK(tuned.f1[1] == Approx(2 * 0.5 / 1.5));
  CHECK_FALSE(tuned.tuned[2]);
  CHECK(tuned.thresholds[2] == 0.5);
  CHECK(tuned.positives == std::vector<int64_t>{200, 200, 4});
  // A binary task's [N] targets; the task predicts with what it is given.
  auto binary = ltk::tune_thresholds(scores.select(1, 0).unsqueeze(1), targets.select(1, 0), 5);
  CHECK(binary.thresholds[0] == tuned.thresholds[0]);
  ltk::TaskConfig ml;
  ml.type = "multilabel";
  ltk::MultilabelTask task(ml, ltk::LabelMap::from_labels({"a", "b", "c"}));
  CHECK(task.thresholds() == std::vector<double>{0.5, 0.5, 0.5});
  ltk::Predictions p;
  p.scores = scores;
  p.targets = targets;
  p.samples = n;
  CHECK(task.evaluate(p).metrics["per_class"]["a"]["f1"].get<double>() < 1.0);
  task.set_thresholds(tuned.thresholds);
  auto report = task.evaluate(p);
  CHECK(report.metrics["per_class"]["a"]["f1"].get<double>() == 1.0);
  CHECK(report.metrics["threshold"]["a"].get<double>() == tuned.thresholds[0]);
  auto first = task.prediction(scores[0].data_ptr<float>());
  CHECK(first["labels"].dump() == R"(["a","b"])");  // sample 0: a positive of a, and b predicted for all
  // A map names labels; unnamed labels keep 0.5; a name not among the labels is an error.
  ml.threshold = json{{"b", 0.3}};
  CHECK(ltk::MultilabelTask(ml, ltk::LabelMap::from_labels({"a", "b"})).thresholds() == std::vector<double>{0.5, 0.3});
  ml.threshold = json{{"bee", 0.3}};
  CHECK_THROWS_WITH(ltk::MultilabelTask(ml, ltk::LabelMap::from_labels({"a", "b"})),
                    Contains("task.threshold.bee") && Contains("did you mean"));
}

TEST_CASE("cli: task.calibrate temperature is fitted on valid, stored in the run, used by ltk-eval and ltk-predict",
          "[eval][calibrate][cli]") {
  ltk::test::TempDir dir;
  const std::string cfg = ltk::test::toy_config(dir);
  // A validation split with every third label wrong: the model cannot be right on all of it, so
  // the best temperature is inside its range (on a split it gets all right it is the lowest, 0.05).
  std::istringstream valid_in(ltk::test::toy_corpus(5, 2));
  std::string noisy;
  int k = 0;
  for (std::string line; std::getline(valid_in, line); ++k) {
    std::string label = line.substr(0, line.find('\t'));
    if (k % 3 == 0) label = label == "sport" ? "food" : "sport";
    noisy += label + line.substr(line.find('\t')) + "\n";
  }
  ltk::test::write_file(dir.file("valid.tsv"), noisy);
  auto r = ltk::test::run_app("ltk-train", "--config '" + cfg + "' --set task.calibrate=temperature");
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.err, Contains("[calibrate] temperature"));
  json task = json::parse(ltk::test::read_text(dir.file("run/task.json")));
  REQUIRE(task["temperature"].size() == 1);
  const double t = task["temperature"][0];
  CHECK(t > 0.06);
  CHECK(t < 19);
  bool recorded = false;
  std::istringstream metrics(ltk::test::read_text(dir.file("run/metrics.jsonl")));
  for (std::string line; std::getline(metrics, line);) {
    json m = json::parse(line);
    if (m["kind"] != "calibration") continue;
    recorded = true;
    CHECK(m["valid_ece_after"].get<double>() <= m["valid_ece_before"].get<double>() + 1e-9);
  }
  CHECK(recorded);
  CHECK_THAT(ltk::test::read_text(dir.file("run/report.html")), Contains("calibration"));
  // ltk-predict's probabilities are softmax(logits / T): the same run without its temperature
  // answers with softmax(logits), the same label, and the two are related by T exactly.
  auto calibrated = ltk::test::run_app("ltk-predict", "--run '" + dir.file("run") + "'", "goal match team\n");
  REQUIRE(calibrated.code == 0);
  ltk::test::write_file(dir.file("run/task.json"), json{{"class_weights", json::array()}}.dump());
  auto raw = ltk::test::run_app("ltk-predict", "--run '" + dir.file("run") + "'", "goal match team\n");
  REQUIRE(raw.code == 0);
  json a = json::parse(calibrated.out), b = json::parse(raw.out);
  CHECK(a["label"] == b["label"]);
  // A temperature above 1 softens the top probability, below 1 sharpens it.
  const double pa = a["score"], pb = b["score"];
  CHECK(std::abs(pa - pb) > 1e-4);  // the temperature was applied
  if (t > 1)
    CHECK(pa < pb);
  else
    CHECK(pa > pb);
  // Without a validation split, or on a regression task: an error naming the key.
  auto no_valid = ltk::test::run_app(
      "ltk-train", "--config '" + cfg + "' --set task.calibrate=temperature --set data.valid= --dump-config");
  CHECK(no_valid.code != 0);
  CHECK_THAT(no_valid.err, Contains("task.calibrate") && Contains("data.valid"));
  auto regression = ltk::test::run_app(
      "ltk-train", "--config '" + cfg + "' --set task.calibrate=temperature --set task.type=regression --dump-config");
  CHECK(regression.code != 0);
  CHECK_THAT(regression.err, Contains("task.calibrate") && Contains("regression"));
}
