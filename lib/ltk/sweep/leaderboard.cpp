// The sweep's leaderboard (which configuration is best on validation, and which differences on
// test are real), its report, ltk-sweep --status, and a configuration's runs for ltk-eval --compare.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/strings.h"
#include "ltk/eval/badcases.h"
#include "ltk/eval/svg.h"
#include "ltk/infer/score_file.h"
#include "ltk/io/run.h"
#include "ltk/metrics/compare.h"
#include "ltk/sweep/sweep.h"
#include "ltk/sweep/trials.h"

namespace fs = std::filesystem;

namespace ltk::sweep {

using detail::read_state;
using detail::trial_path;

namespace {

struct TrialResult {
  std::string name;
  TrialState state;
  double valid = std::nan("");
  double test = std::nan("");
  std::vector<int> right;  ///< per test sample (empty: none, e.g. regression)
  int64_t params = 0;
};

// The best checkpoint scored on data.test, once per checkpoint (NAME.result.json).
void score_trial(const Plan& plan, const Trial& t, TrialResult& r) {
  const std::string run_dir = trial_path(plan, t, "");
  const std::string cache_path = trial_path(plan, t, ".result.json");
  const std::string best = RunDirectory::open(run_dir).checkpoint("best");
  if (fs::exists(cache_path)) {
    try {
      auto c = nlohmann::json::parse(read_file(cache_path));
      if (c.value("checkpoint", "") == best) {
        r.params = c.value("params", int64_t{0});
        if (c.contains("test") && c["test"].is_number()) r.test = c["test"].get<double>();
        for (char ch : c.value("right", std::string())) r.right.push_back(ch == '1');
        return;
      }
    } catch (const std::exception&) {  // scored again below
    }
  }
  LoadedRun run = load_run(run_dir, "best", "cpu");
  for (const auto& p : run.model->parameters()) r.params += p.numel();
  nlohmann::json cache = {{"checkpoint", best}, {"params", r.params}};
  if (plan.has_test) {
    ScoredFile s = score_file(run, plan.test_path, plan.eval_batch_size);
    r.test = s.report.get(plan.metric);
    cache["test"] = r.test;
    try {
      r.right = per_sample_correct(*run.task, s.data, s.predictions);
      std::string bits;
      for (int x : r.right) bits += x ? '1' : '0';
      cache["right"] = bits;
    } catch (const ConfigError&) {  // a regression task: no right or wrong
    }
  }
  write_file_atomic(cache_path, cache.dump() + "\n");
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? std::nan("") : s / static_cast<double>(v.size());
}

double stdev(const std::vector<double>& v) {  // sample standard deviation (n - 1)
  if (v.size() < 2) return std::nan("");
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

nlohmann::json number_or_null(double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); }

std::string value_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string mean_std(const nlohmann::json& row, const std::string& key) {
  if (row[key + "_mean"].is_null()) return "-";
  std::string s = fmt::format("{:.4f}", row[key + "_mean"].get<double>());
  if (!row[key + "_std"].is_null()) s += fmt::format(" ± {:.4f}", row[key + "_std"].get<double>());
  return s;
}

// The difference to the best configuration, in words a reader can act on.
std::string verdict(const nlohmann::json& row) {
  if (row.value("best", false)) return "best (on validation)";
  if (!row.contains("vs_best")) return "-";
  const auto& c = row["vs_best"];
  const bool samples = c.value("significant_samples", false), trials = c.value("significant_trials", false);
  if (samples && trials) return "differs (samples and seeds)";
  if (samples) return "differs (samples)";
  if (trials) return "differs (seeds)";
  return "no significant difference";
}

std::vector<std::string> table_header(const nlohmann::json& lb) {
  std::vector<std::string> h = {"rank", "config"};
  for (const auto& k : lb["keys"]) h.push_back(k.get<std::string>());
  const std::string m = lb["metric"].get<std::string>();
  h.insert(h.end(), {"trials", "valid " + m, "test " + m, "test Δ vs best [95% CI]", "p samples", "p seeds", "verdict",
                     "train s", "params", "status"});
  return h;
}

std::vector<std::string> table_row(const nlohmann::json& lb, const nlohmann::json& row, size_t rank) {
  std::vector<std::string> cells = {std::to_string(rank), row["id"].get<std::string>()};
  for (const auto& k : lb["keys"]) cells.push_back(value_text(row["values"][k.get<std::string>()]));
  cells.push_back(fmt::format("{}/{}", row["finished"].get<int64_t>(), row["trials"].get<int64_t>()));
  cells.push_back(mean_std(row, "valid"));
  cells.push_back(mean_std(row, "test"));
  if (row.contains("vs_best")) {
    const auto& c = row["vs_best"];
    cells.push_back(fmt::format("{:+.4f} [{:+.4f}, {:+.4f}]", c["difference"].get<double>(),
                                c["bootstrap_95"][0].get<double>(), c["bootstrap_95"][1].get<double>()));
    const double p = c["bootstrap_p"].get<double>();  // 0: none of the resamples crossed zero
    cells.push_back(p > 0 ? fmt::format("{:.3g}", p) : "<1e-03");
    cells.push_back(c["welch_p"].is_null() ? "n/a" : fmt::format("{:.3g}", c["welch_p"].get<double>()));
  } else {
    cells.insert(cells.end(), {"", "", ""});
  }
  cells.push_back(verdict(row));
  cells.push_back(row["seconds_mean"].is_null() ? "-" : fmt::format("{:.1f}", row["seconds_mean"].get<double>()));
  cells.push_back(std::to_string(row["params"].get<int64_t>()));
  cells.push_back(row["status"].get<std::string>());
  return cells;
}

std::string markdown(const nlohmann::json& lb) {
  std::ostringstream md;
  md << "# Sweep " << lb["sweep"].get<std::string>() << "\n\n";
  md << fmt::format("Strategy {}, {} configurations, {} trials; selection metric `{}` ({} is better) on the validation "
                    "split{}.\n\n",
                    lb["strategy"].get<std::string>(), lb["rows"].size(), lb["trials"].get<int64_t>(),
                    lb["metric"].get<std::string>(), lb["higher_better"].get<bool>() ? "higher" : "lower",
                    lb["folds"].get<int64_t>() > 1 ? fmt::format(" (held-out fold of {})", lb["folds"].get<int64_t>()) : "");
  md << "The best configuration is chosen on validation alone. For every other one, the test difference to it is "
        "checked twice: a paired bootstrap over the test samples (each sample's correctness averaged over the "
        "configuration's trials; 2000 resamples, 95% interval) and Welch's t-test over the trials' test metric "
        "(seeds and folds). \"no significant difference\" means the data cannot tell it from the best.\n\n";
  auto header = table_header(lb);
  md << "| " << join(header, " | ") << " |\n|";
  for (size_t i = 0; i < header.size(); ++i) md << "---|";
  md << "\n";
  size_t rank = 1;
  for (const auto& row : lb["rows"]) md << "| " << join(table_row(lb, row, rank++), " | ") << " |\n";
  if (lb.contains("trial_epochs")) {
    const auto& te = lb["trial_epochs"];
    md << fmt::format("\nSuccessive halving trained {} trial-epochs of the {} a full grid takes: {} saved ({:.0f}%).\n",
                      te["trained"].get<int64_t>(), te["full"].get<int64_t>(), te["saved"].get<int64_t>(),
                      100.0 * te["saved"].get<double>() / std::max(1.0, te["full"].get<double>()));
  }
  if (!lb["failed"].empty()) {
    md << "\nFailed trials:\n\n";
    for (const auto& f : lb["failed"]) md << "- " << f["trial"].get<std::string>() << ": " << f["error"].get<std::string>() << "\n";
  }
  return md.str();
}

std::string html(const nlohmann::json& lb, const std::string& md_intro) {
  std::ostringstream h;
  h << "<!doctype html><html><head><meta charset=\"utf-8\"><title>sweep " << svg::escape(lb["sweep"].get<std::string>())
    << "</title><style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
       "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}"
       "tr.best td{background:#e8f5e9}td.l{text-align:left}.charts svg{margin:8px}</style></head><body>\n";
  h << "<h1>Sweep " << svg::escape(lb["sweep"].get<std::string>()) << "</h1>\n<p>" << svg::escape(md_intro) << "</p>\n";
  h << "<h2>Leaderboard</h2>\n<table><tr>";
  for (const auto& c : table_header(lb)) h << "<th>" << svg::escape(c) << "</th>";
  h << "</tr>\n";
  size_t rank = 1;
  for (const auto& row : lb["rows"]) {
    h << (row.value("best", false) ? "<tr class=\"best\">" : "<tr>");
    auto cells = table_row(lb, row, rank++);
    for (size_t i = 0; i < cells.size(); ++i)
      h << (i == 1 || i + 5 >= cells.size() ? "<td class=\"l\">" : "<td>") << svg::escape(cells[i]) << "</td>";
    h << "</tr>\n";
  }
  h << "</table>\n<h2>The metric against each varied key</h2>\n<p>Each point: the mean over the configurations (and "
       "their trials) with that value.</p><div class=\"charts\">\n";
  const std::string metric = lb["metric"].get<std::string>();
  for (const auto& k : lb["keys"]) {
    const std::string key = k.get<std::string>();
    std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> by_value;  // value -> (valid, test)
    std::map<std::string, nlohmann::json> raw;
    bool numeric = true;
    for (const auto& row : lb["rows"]) {
      const auto& v = row["values"][key];
      numeric = numeric && v.is_number();
      const std::string text = value_text(v);
      raw[text] = v;
      if (!row["valid_mean"].is_null()) by_value[text].first.push_back(row["valid_mean"].get<double>());
      if (!row["test_mean"].is_null()) by_value[text].second.push_back(row["test_mean"].get<double>());
    }
    if (numeric) {
      double lo = 1e300, hi = -1e300;
      for (const auto& [text, v] : raw) {
        lo = std::min(lo, v.get<double>());
        hi = std::max(hi, v.get<double>());
      }
      const bool log_x = lo > 0 && hi / lo >= 10;
      svg::Series valid{"valid", "#1f77b4", {}}, test{"test", "#d62728", {}};
      std::vector<std::pair<double, std::string>> xs;
      for (const auto& [text, v] : raw) xs.emplace_back(v.get<double>(), text);
      std::sort(xs.begin(), xs.end());
      for (const auto& [x, text] : xs) {
        const double px = log_x ? std::log10(x) : x;
        if (!by_value[text].first.empty()) valid.points.emplace_back(px, mean(by_value[text].first));
        if (!by_value[text].second.empty()) test.points.emplace_back(px, mean(by_value[text].second));
      }
      std::vector<svg::Series> series = {valid};
      if (!test.points.empty()) series.push_back(test);
      h << svg::line_chart(metric + " against " + key, log_x ? "log10(" + key + ")" : key, series, 420, 240);
    } else {
      std::vector<std::string> names;
      std::vector<double> values;
      for (const auto& [text, v] : by_value)
        if (!v.first.empty()) {
          names.push_back(key + "=" + text);
          values.push_back(mean(v.first));
        }
      h << svg::bar_chart("valid " + metric + " by " + key, names, values);
    }
  }
  h << "</div>\n</body></html>\n";
  return h.str();
}

}  // namespace

namespace {

// A configuration's row: its trials' validation and test means and spreads, its status.
nlohmann::json config_row(const Configuration& c, const std::vector<TrialResult>& results) {
  std::vector<double> valid, test, seconds;
  int64_t finished = 0, stopped_at = 0, params = 0;
  bool any_failed = false, all_done = true;
  for (size_t i : c.trials) {
    const auto& r = results[i];
    any_failed = any_failed || r.state.status == "failed";
    all_done = all_done && r.state.status == "done";
    if (r.state.status != "done" && r.state.status != "stopped") continue;
    ++finished;
    if (r.state.status == "stopped") stopped_at = r.state.stopped_at;
    if (!std::isnan(r.valid)) valid.push_back(r.valid);
    if (!std::isnan(r.test)) test.push_back(r.test);
    seconds.push_back(r.state.seconds);
    params = r.params;
  }
  std::string status = all_done     ? "done"
                       : any_failed ? "failed"
                       : stopped_at ? fmt::format("stopped at epoch {}", stopped_at)
                                    : fmt::format("{} of {} trials finished", finished, c.trials.size());
  return {{"id", c.id},
          {"values", c.assignment},
          {"trials", static_cast<int64_t>(c.trials.size())},
          {"finished", finished},
          {"complete", all_done},
          {"status", status},
          {"valid_mean", number_or_null(mean(valid))},
          {"valid_std", number_or_null(stdev(valid))},
          {"test_mean", number_or_null(mean(test))},
          {"test_std", number_or_null(stdev(test))},
          {"valid_values", valid},
          {"test_values", test},
          {"seconds_mean", number_or_null(mean(seconds))},
          {"params", params}};
}

// The rows ranked: complete configurations by their validation mean, then the rest the same way;
// the first is marked best when it is complete and has a mean. Returns the best's id ("" if none).
std::string rank_rows(const Plan& plan, const nlohmann::json& rows, nlohmann::json& ranked) {
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto key = [&](size_t i) {
    const auto& v = rows[i]["valid_mean"];
    return v.is_null() ? std::nan("") : v.get<double>();
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const bool ca = rows[a]["complete"].get<bool>(), cb = rows[b]["complete"].get<bool>();
    if (ca != cb) return ca;
    const double va = key(a), vb = key(b);
    if (std::isnan(va) || std::isnan(vb)) return !std::isnan(va) && std::isnan(vb);
    return plan.higher_better ? va > vb : va < vb;
  });
  for (size_t i : order) ranked.push_back(rows[i]);
  std::string best_id;
  if (!ranked.empty() && ranked[0]["complete"].get<bool>() && !std::isnan(key(order[0]))) {
    ranked[0]["best"] = true;
    best_id = ranked[0]["id"].get<std::string>();
  }
  return best_id;
}

// The test differences of each configuration to the best: over samples (bootstrap) and over
// trials (Welch).
void compare_to_best(const Plan& plan, const std::vector<TrialResult>& results, const std::string& best_id,
                     nlohmann::json& ranked) {
  if (best_id.empty() || !plan.has_test) return;
  auto rights = [&](const std::string& id, std::vector<double>& tests) {
    std::vector<std::vector<int>> out;
    for (const auto& c : plan.configs)
      if (c.id == id)
        for (size_t i : c.trials)
          if (!results[i].right.empty()) {
            out.push_back(results[i].right);
            tests.push_back(results[i].test);
          }
    return out;
  };
  std::vector<double> best_tests;
  auto best_rights = rights(best_id, best_tests);
  for (size_t k = 1; k < ranked.size(); ++k) {
    std::vector<double> tests;
    auto r = rights(ranked[k]["id"].get<std::string>(), tests);
    if (r.empty() || best_rights.empty()) continue;
    ranked[k]["vs_best"] = compare_groups(r, best_rights, tests, best_tests).to_json();
  }
}

}  // namespace

nlohmann::json write_leaderboard(const Plan& plan, const Options& options) {
  std::vector<TrialResult> results(plan.trials.size());
  nlohmann::json failed = nlohmann::json::array();
  int64_t trained_epochs = 0;
  for (size_t i = 0; i < plan.trials.size(); ++i) {
    const Trial& t = plan.trials[i];
    TrialResult& r = results[i];
    r.name = t.name;
    r.state = read_state(plan, t);
    trained_epochs += r.state.status == "done" || r.state.status == "stopped" ? r.state.epochs : 0;
    if (r.state.status == "failed") failed.push_back({{"trial", t.name}, {"error", r.state.error}});
    if (r.state.status != "done" && r.state.status != "stopped") continue;
    r.valid = detail::best_valid(detail::valid_history(trial_path(plan, t, ""), plan.metric), 0, plan.higher_better);
    score_trial(plan, t, r);
  }
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& c : plan.configs) rows.push_back(config_row(c, results));
  nlohmann::json ranked = nlohmann::json::array();
  const std::string best_id = rank_rows(plan, rows, ranked);
  compare_to_best(plan, results, best_id, ranked);
  const int64_t full = static_cast<int64_t>(plan.trials.size()) * plan.epochs;
  nlohmann::json lb = {{"sweep", fs::path(plan.dir).filename().string()},
                       {"strategy", options.strategy},
                       {"metric", plan.metric},
                       {"higher_better", plan.higher_better},
                       {"keys", plan.keys},
                       {"trials", static_cast<int64_t>(plan.trials.size())},
                       {"seeds", options.seeds},
                       {"folds", options.folds},
                       {"test", plan.test_path},
                       {"best", best_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(best_id)},
                       {"rows", ranked},
                       {"failed", failed}};
  if (options.strategy == "asha")
    lb["trial_epochs"] = {{"trained", trained_epochs}, {"full", full}, {"saved", full - trained_epochs}};
  const std::string md = markdown(lb);
  write_file_atomic(plan.dir + "/leaderboard.json", lb.dump(1) + "\n");
  write_file_atomic(plan.dir + "/leaderboard.md", md);
  std::string intro = md.substr(md.find("\n\n") + 2);
  intro = intro.substr(0, intro.find("\n| "));
  write_file_atomic(plan.dir + "/report.html", html(lb, intro));
  return lb;
}

namespace {

// --status when the stored definition no longer makes a plan (a moved file, a config that newer
// checks refuse): the trials that have state files.
std::string status_from_files(const std::string& dir, const std::string& why) {
  std::ostringstream out;
  out << "sweep " << dir << " (its plan cannot be rebuilt: " << why << "); the trials started so far:\n";
  std::vector<fs::path> states;
  if (fs::exists(dir + "/trials"))
    for (const auto& e : fs::directory_iterator(dir + "/trials")) {
      const std::string n = e.path().filename().string();
      if (n.size() > 11 && n.compare(n.size() - 11, 11, ".state.json") == 0) states.push_back(e.path());
    }
  std::sort(states.begin(), states.end());
  for (const auto& p : states) {
    const std::string n = p.filename().string();
    const TrialState s = TrialState::from_json(nlohmann::json::parse(read_file(p.string())));
    out << fmt::format("  {:<28} {:<12} {:>3} epoch(s) {:>8.1f}s\n", n.substr(0, n.size() - 11), s.status, s.epochs,
                       s.seconds);
  }
  return out.str();
}

}  // namespace

std::string status_text(const std::string& dir) {
  if (!fs::exists(dir + "/sweep.json")) throw ConfigError(dir + " holds no sweep (no sweep.json)");
  Options options;
  Plan plan;
  try {
    plan = stored_plan(dir, &options);
  } catch (const std::exception& e) {
    return status_from_files(dir, e.what());
  }
  std::map<std::string, int64_t> counts;
  std::ostringstream lines;
  double seconds = 0;
  for (const auto& t : plan.trials) {
    const TrialState s = read_state(plan, t);
    std::string status = s.status;
    if (status == "running" && !detail::trainer_alive(s.pid, t.name)) status = "interrupted";
    ++counts[status];
    seconds += s.seconds;
    lines << fmt::format("  {:<28} {:<12} {:>3} epoch(s) {:>8.1f}s  {}{}{}\n", t.name, status, s.epochs, s.seconds,
                         detail::describe(t.assignment),
                         s.stopped_at ? fmt::format("  (stopped at rung epoch {})", s.stopped_at) : "",
                         s.error.empty() ? "" : "  " + s.error);
  }
  std::ostringstream out;
  out << fmt::format("sweep {} ({}): {} trials", dir, options.strategy, plan.trials.size());
  for (const auto& [k, n] : counts) out << fmt::format(", {} {}", n, k);
  out << fmt::format("; {:.0f}s of training so far\n", seconds) << lines.str();
  if (fs::exists(dir + "/leaderboard.md")) out << "leaderboard: " << dir << "/leaderboard.md\n";
  return out.str();
}

std::vector<std::string> configuration_runs(const std::string& spec) {
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0) return {};
  const std::string dir = spec.substr(0, colon);
  std::string id = spec.substr(colon + 1);
  if (id.empty() || !fs::exists(dir + "/sweep.json")) return {};
  if (id == "best") {
    if (!fs::exists(dir + "/leaderboard.json"))
      throw ConfigError(dir + " has no leaderboard yet: run ltk-sweep to the end first");
    const auto lb = nlohmann::json::parse(read_file(dir + "/leaderboard.json"));
    if (lb["best"].is_null()) throw ConfigError(dir + "/leaderboard.json names no best configuration yet");
    id = lb["best"].get<std::string>();
  }
  std::vector<std::string> runs;
  if (fs::exists(dir + "/trials"))
    for (const auto& e : fs::directory_iterator(dir + "/trials")) {
      const std::string name = e.path().filename().string();
      const std::string suffix = ".state.json";
      if (name.rfind(id + "-s", 0) != 0 || name.size() <= suffix.size() ||
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      const auto s = TrialState::from_json(nlohmann::json::parse(read_file(e.path().string())));
      if (s.status == "done" || s.status == "stopped")
        runs.push_back(dir + "/trials/" + name.substr(0, name.size() - suffix.size()));
    }
  std::sort(runs.begin(), runs.end());
  if (runs.empty())
    throw ConfigError("no finished trial of configuration '" + id + "' in " + dir + " (the ids are in " + dir +
                      "/leaderboard.md)");
  return runs;
}

}  // namespace ltk::sweep
