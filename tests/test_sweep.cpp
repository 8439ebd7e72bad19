// Sweeps (ltk/experiment): the space, the plan, successive halving, the significance tests against
// SciPy, and ltk-sweep end to end (resume after a kill, --extend, --status, asha, ltk-eval --compare).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "ltk/core/error.h"
#include "ltk/metrics/compare.h"
#include "ltk/sweep/sweep.h"
#include "test_util.h"

using ltk::test::read_text;
using ltk::test::run_app;
using ltk::test::TempDir;
using ltk::test::write_file;
using nlohmann::json;
namespace sweep = ltk::sweep;

TEST_CASE("sweep: the grid is enumerated exactly - random draws are seeded and in range - a bad space names its key",
          "[experiment]") {
  auto space = sweep::parse_space(json::parse(R"({"optimizer.lr": [0.1, 0.01], "model.embed_dim": [8, 16, 32]})"), "s.json");
  auto g = sweep::grid(space);
  REQUIRE(g.size() == 6);
  std::set<std::string> seen;
  for (const auto& a : g) seen.insert(a.dump());
  CHECK(seen.size() == 6);
  CHECK(g[0] == json::parse(R"({"model.embed_dim": 8, "optimizer.lr": 0.1})"));
  CHECK(g[1] == json::parse(R"({"model.embed_dim": 8, "optimizer.lr": 0.01})"));  // the last key fastest
  CHECK(g[5] == json::parse(R"({"model.embed_dim": 32, "optimizer.lr": 0.01})"));

  auto dspace = sweep::parse_space(
      json::parse(R"({"optimizer.lr": {"log_uniform": [1e-4, 1e-2]}, "model.embed_dim": {"int_uniform": [8, 12]},
                      "trainer.clip_norm": {"uniform": [0.5, 2]}, "model.type": ["bow", "textcnn"]})"),
      "s.json");
  auto a = sweep::random_draws(dspace, 40, 7), b = sweep::random_draws(dspace, 40, 7), c = sweep::random_draws(dspace, 40, 8);
  CHECK(a == b);
  CHECK(a != c);
  std::set<int64_t> dims;
  std::set<std::string> types;
  double lo = 1, hi = 0;
  for (const auto& x : a) {
    const double lr = x["optimizer.lr"].get<double>();
    CHECK(lr >= 1e-4);
    CHECK(lr <= 1e-2);
    lo = std::min(lo, lr);
    hi = std::max(hi, lr);
    const auto d = x["model.embed_dim"].get<int64_t>();
    CHECK(d >= 8);
    CHECK(d <= 12);
    dims.insert(d);
    const double clip = x["trainer.clip_norm"].get<double>();
    CHECK(clip >= 0.5);
    CHECK(clip <= 2);
    types.insert(x["model.type"].get<std::string>());
  }
  CHECK(dims.size() == 5);  // both ends drawn
  CHECK(types.size() == 2);
  CHECK(lo < 1e-3);  // log-uniform: a decade each way of 1e-3 within 40 draws
  CHECK(hi > 1e-3);
  CHECK_THROWS_WITH(sweep::grid(dspace), Catch::Contains("'model.embed_dim' is a int_uniform") ||
                                             Catch::Contains("is a log_uniform"));

  auto bad = [](const char* text) {
    try {
      sweep::parse_space(json::parse(text), "s.json");
    } catch (const ltk::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(bad(R"({"optimizer.lr": []})"), Catch::Contains("'optimizer.lr': an empty list"));
  CHECK_THAT(bad(R"({"optimizer.lr": {"log_uniform": [0, 1]}})"), Catch::Contains("log_uniform needs low > 0"));
  CHECK_THAT(bad(R"({"optimizer.lr": {"normal": [0, 1]}})"), Catch::Contains("unknown distribution 'normal'"));
  CHECK_THAT(bad(R"({"optimizer.lr": [1, 1]})"), Catch::Contains("listed twice"));
  CHECK_THAT(bad(R"({"seed": [1, 2]})"), Catch::Contains("--seeds"));
  CHECK_THAT(bad(R"({"optimizer.lr": 0.1})"), Catch::Contains("expected a list"));
}

TEST_CASE("sweep: successive halving's rungs and cut", "[experiment]") {
  CHECK(sweep::rungs(1, 3, 10) == std::vector<int64_t>{1, 3, 9, 10});
  CHECK(sweep::rungs(1, 2, 4) == std::vector<int64_t>{1, 2, 4});
  CHECK(sweep::rungs(2, 3, 2) == std::vector<int64_t>{2});
  CHECK_THROWS_AS(sweep::rungs(1, 1, 4), ltk::ConfigError);
  std::vector<std::pair<std::string, double>> scores = {{"a", 0.5}, {"b", 0.9}, {"c", std::nan("")}, {"d", 0.7},
                                                        {"e", 0.7}, {"f", 0.1}};
  CHECK(sweep::promote(scores, 3, true) == std::vector<std::string>{"b", "d"});
  CHECK(sweep::promote(scores, 2, true) == std::vector<std::string>{"b", "d", "e"});  // ties keep the earlier
  CHECK(sweep::promote(scores, 3, false) == std::vector<std::string>{"f", "a"});  // lower is better (a loss)
  CHECK(sweep::promote({{"x", 0.2}}, 3, true) == std::vector<std::string>{"x"});  // at least one goes on
  CHECK(sweep::promote({{"x", std::nan("")}}, 3, true).empty());  // a failed one never
}

TEST_CASE("sweep: the folds partition the training data - stratified and seeded - and every trial validates on its fold",
          "[experiment]") {
  TempDir dir;
  const std::string cfg_path = ltk::test::toy_config(dir);
  json base = json::parse(read_text(cfg_path));
  auto space = sweep::parse_space(json::parse(R"({"model.embed_dim": [8, 16]})"), "s");
  sweep::Options o;
  o.folds = 4;
  o.seeds = 2;
  o.seed = 3;
  auto plan = sweep::make_plan(base, cfg_path, space, o, dir.file("sw"));
  REQUIRE(plan.trials.size() == 2 * 2 * 4);
  std::multiset<std::string> all, valid_union;
  std::istringstream train(read_text(dir.file("train.tsv")));
  std::map<std::string, int> per_label;
  for (std::string line; std::getline(train, line);) {
    all.insert(line);
    ++per_label[line.substr(0, line.find('\t'))];
  }
  for (int f = 0; f < 4; ++f) {
    std::multiset<std::string> tr, va;
    std::map<std::string, int> va_labels;
    std::istringstream t(read_text(dir.file("sw/folds/" + std::to_string(f) + "/train.tsv")));
    for (std::string line; std::getline(t, line);) tr.insert(line);
    std::istringstream v(read_text(dir.file("sw/folds/" + std::to_string(f) + "/valid.tsv")));
    for (std::string line; std::getline(v, line);) {
      va.insert(line);
      valid_union.insert(line);
      ++va_labels[line.substr(0, line.find('\t'))];
    }
    std::multiset<std::string> both = tr;
    both.insert(va.begin(), va.end());
    CHECK(both == all);  // train + valid of a fold is the whole training file
    for (const auto& s : va) CHECK(tr.count(s) == 0);  // no text on both sides
    for (const auto& [label, n] : per_label) {  // stratified: each label's share in each fold
      INFO("fold " << f << " label " << label);
      CHECK(std::abs(va_labels[label] - n / 4.0) <= 2.0);
    }
  }
  CHECK(valid_union == all);  // the folds' validation parts partition the file
  // Every trial of fold f trains and validates on fold f's files; seeds follow the config's seed.
  std::set<std::string> names;
  for (const auto& t : plan.trials) {
    names.insert(t.name);
    CHECK(t.document["data"]["valid"].get<std::string>() == plan.dir + "/folds/" + std::to_string(t.fold) + "/valid.tsv");
    CHECK((t.seed == 7 || t.seed == 8));
    CHECK(t.document["seed"] == t.seed);
  }
  CHECK(names.size() == plan.trials.size());
  // The same seed gives the same folds; another gives others.
  const std::string fold0 = read_text(dir.file("sw/folds/0/valid.tsv"));
  sweep::make_plan(base, cfg_path, space, o, dir.file("sw2"));
  CHECK(read_text(dir.file("sw2/folds/0/valid.tsv")) == fold0);
  o.seed = 4;
  sweep::make_plan(base, cfg_path, space, o, dir.file("sw3"));
  CHECK(read_text(dir.file("sw3/folds/0/valid.tsv")) != fold0);
  // A configuration that is no valid config is refused before anything trains.
  auto bad = sweep::parse_space(json::parse(R"({"optimizer.lr": [0.1, -1]})"), "s");
  CHECK_THROWS_WITH(sweep::make_plan(base, cfg_path, bad, sweep::Options(), dir.file("sw4")),
                    Catch::Contains("optimizer.lr=-1") && Catch::Contains("not a valid config"));
  auto unknown = sweep::parse_space(json::parse(R"({"trainer.epochz": [1, 2]})"), "s");
  CHECK_THROWS_WITH(sweep::make_plan(base, cfg_path, unknown, sweep::Options(), dir.file("sw5")),
                    Catch::Contains("'trainer.epochz' is not a key"));
}

TEST_CASE("sweep: the significance tests agree with SciPy on the same per-sample results", "[experiment]") {
  TempDir dir;
  // Three trials each of two pairs of configurations: one pair far apart, one close.
  std::mt19937 rng(5);
  const int n = 600;
  auto trials = [&](double p) {
    std::vector<std::vector<int>> out(3, std::vector<int>(n));
    std::bernoulli_distribution d(p);
    for (auto& t : out)
      for (auto& x : t) x = d(rng);
    return out;
  };
  auto accuracy = [&](const std::vector<std::vector<int>>& t) {
    std::vector<double> a;
    for (const auto& r : t) {
      double s = 0;
      for (int x : r) s += x;
      a.push_back(s / n);
    }
    return a;
  };
  auto far_a = trials(0.75), far_b = trials(0.60), near_a = trials(0.70), near_b = trials(0.695);
  json data = json::object();
  std::vector<std::pair<std::string, ltk::GroupComparison>> cases;
  for (auto [name, a, b] : {std::tuple{"far", &far_a, &far_b}, std::tuple{"near", &near_a, &near_b}}) {
    auto c = ltk::compare_groups(*a, *b, accuracy(*a), accuracy(*b), 4000, 11);
    data[name] = {{"a", *a}, {"b", *b}, {"acc_a", accuracy(*a)}, {"acc_b", accuracy(*b)}};
    cases.emplace_back(name, c);
  }
  write_file(dir.file("data.json"), data.dump());
  write_file(dir.file("check.py"), R"(import json, sys
import numpy as np
from scipy import stats, special
d = json.load(open(sys.argv[1]))
out = {}
for name, c in d.items():
    diff = np.mean(np.array(c["a"], float), axis=0) - np.mean(np.array(c["b"], float), axis=0)
    ci = stats.bootstrap((diff,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95,
                         random_state=np.random.default_rng(1)).confidence_interval
    welch = stats.ttest_ind(c["acc_a"], c["acc_b"], equal_var=False).pvalue
    out[name] = {"low": ci.low, "high": ci.high, "welch": welch, "diff": float(diff.mean())}
out["betainc"] = [special.betainc(a, b, x) for a, b, x in [(0.5, 0.5, 0.3), (2.5, 0.5, 0.9), (30, 0.5, 0.99), (1.5, 7, 0.05)]]
print(json.dumps(out))
)");
  const std::string cmd = "/usr/bin/python3 '" + dir.file("check.py") + "' '" + dir.file("data.json") + "' > '" +
                          dir.file("out.json") + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  json ref = json::parse(read_text(dir.file("out.json")));
  for (const auto& [name, c] : cases) {
    INFO(name << ": ltk [" << c.diff_low << ", " << c.diff_high << "] welch " << c.p_trials << "; scipy " << ref[name].dump());
    CHECK(c.accuracy_a - c.accuracy_b == Approx(ref[name]["diff"].get<double>()).margin(1e-12));
    // Welch's test is exact: the same p to 1e-9.
    CHECK(c.p_trials == Approx(ref[name]["welch"].get<double>()).epsilon(1e-9));
    // The bootstraps draw other resamples: the interval ends agree to Monte Carlo error (sd of an
    // end ~ 0.3 of the mean's standard error here), and the verdicts agree.
    const double se = (ref[name]["high"].get<double>() - ref[name]["low"].get<double>()) / 3.92;
    CHECK(std::abs(c.diff_low - ref[name]["low"].get<double>()) < 0.25 * se);
    CHECK(std::abs(c.diff_high - ref[name]["high"].get<double>()) < 0.25 * se);
    const bool scipy_significant = ref[name]["low"].get<double>() > 0 || ref[name]["high"].get<double>() < 0;
    CHECK(c.significant_samples() == scipy_significant);
    CHECK(c.significant_trials() == (ref[name]["welch"].get<double>() < 0.05));
  }
  CHECK(cases[0].second.significant_samples());  // the data are far from the edge both ways
  CHECK_FALSE(cases[1].second.significant_samples());
  const double args[][3] = {{0.5, 0.5, 0.3}, {2.5, 0.5, 0.9}, {30, 0.5, 0.99}, {1.5, 7, 0.05}};
  for (int i = 0; i < 4; ++i)
    CHECK(ltk::incomplete_beta(args[i][2], args[i][0], args[i][1]) == Approx(ref["betainc"][i].get<double>()).epsilon(1e-12));
}

namespace {

// A tiny sweep's base config and space in `dir`: bow on the toy corpus, 2 x 2 configurations.
std::string sweep_files(const TempDir& dir, int epochs) {
  ltk::test::toy_config(dir);
  json cfg = json::parse(read_text(dir.file("config.json")));
  cfg["trainer"]["epochs"] = epochs;
  cfg.erase("output_dir");
  write_file(dir.file("base.json"), cfg.dump(2));
  write_file(dir.file("space.json"), R"({"model.embed_dim": [4, 16], "optimizer.lr": [0.05, 0.002]})");
  return "--config '" + dir.file("base.json") + "' --space '" + dir.file("space.json") + "'";
}

// leaderboard.json without wall-clock figures (and the sweep's name).
json without_timing(json lb) {
  lb.erase("sweep");
  for (auto& row : lb["rows"]) row.erase("seconds_mean");
  return lb;
}

}  // namespace

TEST_CASE("cli: a killed ltk-sweep resumes to the leaderboard of an uninterrupted one - --extend - --status - "
          "a changed space is refused - ltk-eval --compare takes sweep configurations",
          "[experiment][cli]") {
  TempDir dir;
  const std::string common = sweep_files(dir, 6) + " --seeds 2";
  auto whole = run_app("ltk-sweep", common + " --out '" + dir.file("whole") + "'");
  INFO(whole.err);
  REQUIRE(whole.code == 0);
  CHECK_THAT(whole.out, Catch::Contains("| rank | config |") && Catch::Contains("best (on validation)"));
  const json lb = json::parse(read_text(dir.file("whole/leaderboard.json")));
  REQUIRE(lb["rows"].size() == 4);
  CHECK(lb["rows"][0]["best"] == true);
  for (size_t i = 1; i < 4; ++i) CHECK(lb["rows"][i].contains("vs_best"));
  CHECK_THAT(read_text(dir.file("whole/report.html")), Catch::Contains("<svg") && Catch::Contains("optimizer.lr"));

  // The same sweep, killed (SIGKILL, the sweep alone) while trials run, then run again.
  pid_t pid = ltk::test::spawn_app("ltk-sweep",
                                   {"--config", dir.file("base.json"), "--space", dir.file("space.json"), "--seeds", "2",
                                    "--out", dir.file("killed")},
                                   dir.file("killed.err"));
  bool killed = false;
  for (int i = 0; i < 1200 && !killed; ++i) {  // once two trials are done and the third runs
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    int done = 0, running = 0;
    if (std::filesystem::exists(dir.file("killed/trials")))
      for (const auto& e : std::filesystem::directory_iterator(dir.file("killed/trials"))) {
        const std::string p = e.path().string();
        if (p.size() > 11 && p.substr(p.size() - 11) == ".state.json") {
          std::string s = read_text(p);
          done += s.find("\"done\"") != std::string::npos;
          running += s.find("\"running\"") != std::string::npos;
        }
      }
    if (done >= 2 && running >= 1) {
      kill(pid, SIGKILL);
      killed = true;
    }
  }
  REQUIRE(killed);
  CHECK(ltk::test::wait_exit_code(pid, 30) == 137);
  auto status = run_app("ltk-sweep", "--status '" + dir.file("killed") + "'");
  CHECK(status.code == 0);
  CHECK_THAT(status.out, Catch::Contains("8 trials") && Catch::Contains("done"));
  auto again = run_app("ltk-sweep", common + " --out '" + dir.file("killed") + "'");
  INFO(again.err);
  REQUIRE(again.code == 0);
  CHECK(without_timing(json::parse(read_text(dir.file("killed/leaderboard.json")))).dump() == without_timing(lb).dump());
  // Every trial trained in one attempt, but the one the kill cut short: two.
  int second_attempts = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("killed/trials"))) {
    const std::string p = e.path().string();
    if (p.size() <= 11 || p.substr(p.size() - 11) != ".state.json") continue;
    const json s = json::parse(read_text(p));
    CHECK(s["status"] == "done");
    CHECK(s["attempts"].get<int>() <= 2);
    second_attempts += s["attempts"].get<int>() == 2;
  }
  CHECK(second_attempts == 1);

  // Ctrl-C: the running trial stops (with a checkpoint when it has begun), the sweep exits 130, and
  // the same command finishes it to the same leaderboard.
  // (trials by ltk-train-faults, which sleeps 40 ms a step, so the signal lands mid-training)
  setenv("LTK_TRAIN", LTK_BIN_DIR "/ltk-train-faults", 1);
  setenv("LTK_TEST_SLOW_STEP_MS", "40", 1);
  pid = ltk::test::spawn_app("ltk-sweep",
                             {"--config", dir.file("base.json"), "--space", dir.file("space.json"), "--seeds", "2",
                              "--out", dir.file("stopped")},
                             dir.file("stopped.err"));
  unsetenv("LTK_TRAIN");
  unsetenv("LTK_TEST_SLOW_STEP_MS");
  // Once the first trial has validated (so it has a checkpoint) and trains on.
  std::string first_trial;
  bool interrupted = false;
  for (int i = 0; i < 2400 && !interrupted; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!std::filesystem::exists(dir.file("stopped/trials"))) continue;
    for (const auto& e : std::filesystem::directory_iterator(dir.file("stopped/trials"))) {
      const std::string p = e.path().string();
      if (!interrupted && e.is_directory() && std::filesystem::exists(p + "/checkpoints/last.json") &&
          !std::filesystem::exists(p + "/report.html")) {
        kill(pid, SIGINT);
        interrupted = true;
        first_trial = p;
      }
    }
  }
  REQUIRE(interrupted);
  CHECK(ltk::test::wait_exit_code(pid, 60) == 130);
  CHECK_THAT(read_text(dir.file("stopped.err")), Catch::Contains("run the same command to continue"));
  auto stopped_status = run_app("ltk-sweep", "--status '" + dir.file("stopped") + "'");
  CHECK_THAT(stopped_status.out, Catch::Contains("interrupted"));
  auto finish = run_app("ltk-sweep", common + " --out '" + dir.file("stopped") + "'");
  REQUIRE(finish.code == 0);
  // The interrupted trial went on from its checkpoint.
  CHECK_THAT(read_text(first_trial + ".log"), Catch::Contains("stopped by signal 2") &&
                                                  Catch::Contains("[resume] continuing from"));
  CHECK(without_timing(json::parse(read_text(dir.file("stopped/leaderboard.json")))).dump() == without_timing(lb).dump());

  // Again: nothing left to train.
  auto third = run_app("ltk-sweep", common + " --out '" + dir.file("whole") + "'");
  CHECK(third.code == 0);
  CHECK_THAT(third.err, Catch::Contains("0 to train"));
  // A changed space is refused with its differences; --extend trains only the new configurations.
  write_file(dir.file("space.json"), R"({"model.embed_dim": [4, 16, 32], "optimizer.lr": [0.05, 0.002]})");
  auto changed = run_app("ltk-sweep", common + " --out '" + dir.file("whole") + "'");
  CHECK(changed.code == 2);
  CHECK_THAT(changed.err, Catch::Contains("space.model.embed_dim") && Catch::Contains("--extend"));
  auto extended = run_app("ltk-sweep", common + " --extend --out '" + dir.file("whole") + "'");
  INFO(extended.err);
  CHECK(extended.code == 0);
  CHECK_THAT(extended.err, Catch::Contains("4 to train"));
  CHECK(json::parse(read_text(dir.file("whole/leaderboard.json")))["rows"].size() == 6);
  // --jobs beyond the cores is refused.
  auto jobs = run_app("ltk-sweep", common + " --jobs 1000 --out '" + dir.file("whole") + "'");
  CHECK(jobs.code == 2);
  CHECK_THAT(jobs.err, Catch::Contains("cores"));

  // ltk-eval --compare of two configurations: each one's trials scored, both tests printed.
  const std::string other = lb["rows"][3]["id"].get<std::string>();
  auto cmp = run_app("ltk-eval", "--compare '" + dir.file("killed") + ":best' '" + dir.file("killed") + ":" + other +
                                     "' --data '" + dir.file("valid.tsv") + "' --json");
  INFO(cmp.err);
  REQUIRE(cmp.code == 0);
  auto cj = json::parse(cmp.out);
  CHECK(cj["trials_a"] == 2);
  CHECK(cj["trials_b"] == 2);
  CHECK(cj["runs_a"].size() == 2);
  CHECK_THAT(cmp.err, Catch::Contains("Welch"));
  // The leaderboard's test figures are the same trials scored the same way.
  CHECK(cj["accuracy_a"].get<double>() ==
        Approx(lb["rows"][0]["test_mean"].get<double>()).margin(1e-12));
}

TEST_CASE("cli: successive halving stops the trials it should - a paused run resumes exactly", "[experiment][cli]") {
  TempDir dir;
  // --until-epoch then --resume: the same metrics as a run never paused.
  const std::string cfg = ltk::test::toy_config(dir, R"(, "epochs": 5)");
  auto full = run_app("ltk-train", "--config '" + cfg + "' --set trainer.epochs=5 --set output_dir='" + dir.file("full") + "'");
  REQUIRE(full.code == 0);
  auto paused = run_app("ltk-train", "--config '" + cfg + "' --set trainer.epochs=5 --set output_dir='" +
                                         dir.file("paused") + "' --until-epoch 2 --json");
  INFO(paused.err);
  REQUIRE(paused.code == 0);
  CHECK(json::parse(paused.out)["paused"] == true);
  CHECK_THAT(paused.err, Catch::Contains("paused at the end of epoch 2"));
  CHECK_FALSE(std::filesystem::exists(dir.file("paused/report.html")));
  auto resumed = run_app("ltk-train", "--resume '" + dir.file("paused") + "' --until-epoch 4");
  REQUIRE(resumed.code == 0);
  auto rest = run_app("ltk-train", "--resume '" + dir.file("paused") + "'");
  REQUIRE(rest.code == 0);
  CHECK(ltk::test::strip_timing(read_text(dir.file("paused/metrics.jsonl"))) ==
        ltk::test::strip_timing(read_text(dir.file("full/metrics.jsonl"))));
  // With a validation every 4 steps (one on each epoch's last step, 8 batches an epoch), paused
  // twice at the same epoch, and stopped early by patience: still the uninterrupted run.
  const std::string every = " --set trainer.epochs=5 --set trainer.eval_every=4 --set trainer.patience=3";
  REQUIRE(run_app("ltk-train", "--config '" + cfg + "'" + every + " --set output_dir='" + dir.file("full4") + "'").code == 0);
  REQUIRE(run_app("ltk-train", "--config '" + cfg + "'" + every + " --set output_dir='" + dir.file("p4") + "' --until-epoch 1").code == 0);
  auto twice = run_app("ltk-train", "--resume '" + dir.file("p4") + "' --until-epoch 1 --json");
  REQUIRE(twice.code == 0);
  CHECK(json::parse(twice.out)["paused"] == true);
  REQUIRE(run_app("ltk-train", "--resume '" + dir.file("p4") + "' --until-epoch 3").code == 0);
  REQUIRE(run_app("ltk-train", "--resume '" + dir.file("p4") + "'").code == 0);
  CHECK(ltk::test::strip_timing(read_text(dir.file("p4/metrics.jsonl"))) ==
        ltk::test::strip_timing(read_text(dir.file("full4/metrics.jsonl"))));

  // 4 configurations, eta 2, 4 epochs: rungs at epochs 1 and 2, then the end.
  sweep_files(dir, 4);
  auto r = run_app("ltk-sweep", "--config '" + dir.file("base.json") + "' --space '" + dir.file("space.json") +
                                    "' --strategy asha --eta 2 --out '" + dir.file("asha") + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  const json lb = json::parse(read_text(dir.file("asha/leaderboard.json")));
  std::map<std::string, json> states;
  std::map<std::string, std::vector<std::pair<int64_t, double>>> history;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("asha/trials"))) {
    const std::string name = e.path().filename().string();
    if (name.size() > 11 && name.substr(name.size() - 11) == ".state.json") {
      const std::string trial = name.substr(0, name.size() - 11);
      states[trial.substr(0, trial.find("-s"))] = json::parse(read_text(e.path().string()));
      std::istringstream m(read_text(dir.file("asha/trials/" + trial + "/metrics.jsonl")));
      for (std::string line; std::getline(m, line);) {
        auto j = json::parse(line);
        if (j["kind"] == "valid") history[trial.substr(0, trial.find("-s"))].emplace_back(j["epoch"], j["accuracy"]);
      }
    }
  }
  REQUIRE(states.size() == 4);
  auto best_until = [&](const std::string& id, int64_t epoch) {
    double b = -1;
    for (auto [e, v] : history[id])
      if (e <= epoch) b = std::max(b, v);
    return b;
  };
  // Rung 1: the best 2 of 4 at epoch 1 go on; rung 2: the best 1 of those 2 at epoch 2.
  int stopped1 = 0, stopped2 = 0, finished = 0;
  for (const auto& [id, s] : states) {
    INFO(id << " " << s.dump());
    if (s["status"] == "stopped" && s["stopped_at"] == 1) {
      ++stopped1;
      CHECK(s["epochs"] == 1);
      CHECK(history[id].back().first == 1);  // no validation past the rung
    } else if (s["status"] == "stopped" && s["stopped_at"] == 2) {
      ++stopped2;
      CHECK(s["epochs"] == 2);
    } else {
      ++finished;
      CHECK(s["status"] == "done");
      CHECK(s["epochs"] == 4);
    }
  }
  CHECK(stopped1 == 2);
  CHECK(stopped2 == 1);
  CHECK(finished == 1);
  // Those stopped at rung 1 score no better at epoch 1 than those that went on (ties aside).
  double worst_kept = 2, best_stopped = -1;
  for (const auto& [id, s] : states)
    (s["stopped_at"] == 1 ? best_stopped : worst_kept) =
        s["stopped_at"] == 1 ? std::max(best_stopped, best_until(id, 1)) : std::min(worst_kept, best_until(id, 1));
  CHECK(best_stopped <= worst_kept);
  // The finished configuration is the leaderboard's best, and the trial-epochs saved are counted.
  CHECK(lb["rows"][0]["best"] == true);
  CHECK(states[lb["rows"][0]["id"].get<std::string>()]["status"] == "done");
  CHECK(lb["trial_epochs"]["full"] == 16);
  CHECK(lb["trial_epochs"]["trained"] == 1 + 1 + 2 + 4);
  CHECK(lb["trial_epochs"]["saved"] == 8);
  // The same command again trains nothing and writes the same leaderboard.
  auto again = run_app("ltk-sweep", "--config '" + dir.file("base.json") + "' --space '" + dir.file("space.json") +
                                        "' --strategy asha --eta 2 --out '" + dir.file("asha") + "'");
  CHECK(again.code == 0);
  CHECK_THAT(again.err, !Catch::Contains("[sweep] start") && !Catch::Contains("[sweep] resume"));
  CHECK(without_timing(json::parse(read_text(dir.file("asha/leaderboard.json")))).dump() == without_timing(lb).dump());
  // asha ranks at epoch ends: a validation every N steps instead is refused.
  auto every_n = run_app("ltk-sweep", "--config '" + dir.file("base.json") + "' --set trainer.eval_every=3 --space '" +
                                          dir.file("space.json") + "' --strategy asha --out '" + dir.file("asha2") + "'");
  CHECK(every_n.code == 2);
  CHECK_THAT(every_n.err, Catch::Contains("trainer.eval_every"));
}
