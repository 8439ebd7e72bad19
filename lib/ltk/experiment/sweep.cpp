// The sweep's plan (space, trials, folds) and the runner that trains its trials with ltk-train.
#include "ltk/experiment/sweep.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "ltk/config/config.h"
#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/strings.h"
#include "ltk/data/formats.h"
#include "ltk/data/split.h"
#include "ltk/experiment/sweep_detail.h"
#include "ltk/models/registry.h"
#include "ltk/task/task.h"

namespace fs = std::filesystem;

namespace ltk::sweep {

// ---- the space ----

bool Space::has_distributions() const {
  return std::any_of(dims.begin(), dims.end(), [](const Dimension& d) { return !d.distribution.empty(); });
}

Space parse_space(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || j.empty())
    throw ConfigError(where + ": the space must be a non-empty JSON object {\"config.key\": [values] | {\"log_uniform\": "
                              "[low, high]}, ...}");
  Space space;
  for (auto it = j.begin(); it != j.end(); ++it) {  // nlohmann's objects are sorted by key
    Dimension d;
    d.key = it.key();
    const auto& v = it.value();
    const std::string at = where + ": key '" + d.key + "'";
    if (d.key.empty() || d.key.front() == '.' || d.key.back() == '.')
      throw ConfigError(at + ": not a config key path like optimizer.lr");
    if (d.key == "output_dir" || d.key == "seed")
      throw ConfigError(at + ": the sweep sets it for each trial (seeds: --seeds N)");
    if (v.is_array()) {
      if (v.empty()) throw ConfigError(at + ": an empty list of values");
      std::set<std::string> seen;
      for (const auto& x : v)
        if (!seen.insert(x.dump()).second) throw ConfigError(at + ": the value " + x.dump() + " is listed twice");
      d.values = v;
    } else if (v.is_object() && v.size() == 1) {
      d.distribution = v.begin().key();
      const auto& range = v.begin().value();
      if (d.distribution != "uniform" && d.distribution != "log_uniform" && d.distribution != "int_uniform")
        throw ConfigError(at + ": unknown distribution '" + d.distribution +
                          "' (expected uniform, log_uniform or int_uniform)");
      if (!range.is_array() || range.size() != 2 || !range[0].is_number() || !range[1].is_number())
        throw ConfigError(at + ": " + d.distribution + " takes [low, high], got " + range.dump());
      d.low = range[0].get<double>();
      d.high = range[1].get<double>();
      if (!(d.low < d.high)) throw ConfigError(at + ": " + d.distribution + " needs low < high, got " + range.dump());
      if (d.distribution == "log_uniform" && !(d.low > 0))
        throw ConfigError(at + ": log_uniform needs low > 0, got " + range.dump());
      if (d.distribution == "int_uniform" && (d.low != std::floor(d.low) || d.high != std::floor(d.high) ||
                                              std::fabs(d.low) > 1e15 || std::fabs(d.high) > 1e15))
        throw ConfigError(at + ": int_uniform takes integers within +-1e15, got " + range.dump());
    } else {
      throw ConfigError(at + ": expected a list of values or {\"uniform\"|\"log_uniform\"|\"int_uniform\": [low, high]}, "
                             "got " + v.dump());
    }
    space.dims.push_back(std::move(d));
  }
  return space;
}

std::vector<nlohmann::json> grid(const Space& space) {
  size_t total = 1;
  for (const auto& d : space.dims) {
    if (!d.distribution.empty())
      throw ConfigError("the grid needs lists of values: key '" + d.key + "' is a " + d.distribution +
                        " distribution; use --strategy random --trials K");
    total *= d.values.size();
    if (total > 100000) throw ConfigError("the grid has more than 100000 configurations: use --strategy random --trials K");
  }
  std::vector<nlohmann::json> out;
  std::vector<size_t> index(space.dims.size(), 0);
  for (size_t n = 0; n < total; ++n) {
    nlohmann::json a = nlohmann::json::object();
    for (size_t k = 0; k < space.dims.size(); ++k) a[space.dims[k].key] = space.dims[k].values[index[k]];
    out.push_back(std::move(a));
    for (size_t k = space.dims.size(); k-- > 0;) {  // the last key fastest
      if (++index[k] < space.dims[k].values.size()) break;
      index[k] = 0;
    }
  }
  return out;
}

namespace {

double round_significant(double x, int digits) {
  if (x == 0 || !std::isfinite(x)) return x;
  const double scale = std::pow(10.0, digits - 1 - static_cast<int>(std::floor(std::log10(std::fabs(x)))));
  return std::round(x * scale) / scale;
}

// The uniform double in [0, 1) of one draw (53 bits), the same on every platform.
double unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

std::vector<nlohmann::json> random_draws(const Space& space, int64_t k, uint64_t seed) {
  if (k < 1) throw ConfigError("--trials must be >= 1 for a random search");
  std::mt19937_64 rng(seed);
  std::vector<nlohmann::json> out;
  std::set<std::string> seen;
  for (int64_t attempt = 0; static_cast<int64_t>(out.size()) < k && attempt < 100 * k; ++attempt) {
    nlohmann::json a = nlohmann::json::object();
    for (const auto& d : space.dims) {
      const double u = unit(rng);
      if (d.distribution.empty()) {
        a[d.key] = d.values[std::min(d.values.size() - 1, static_cast<size_t>(u * static_cast<double>(d.values.size())))];
      } else if (d.distribution == "uniform") {
        a[d.key] = std::clamp(round_significant(d.low + u * (d.high - d.low), 4), d.low, d.high);
      } else if (d.distribution == "log_uniform") {
        a[d.key] = std::clamp(round_significant(std::exp(std::log(d.low) + u * (std::log(d.high) - std::log(d.low))), 4),
                              d.low, d.high);
      } else {  // int_uniform, both ends included
        const auto lo = static_cast<int64_t>(d.low), hi = static_cast<int64_t>(d.high);
        a[d.key] = std::min(hi, lo + static_cast<int64_t>(u * static_cast<double>(hi - lo + 1)));
      }
    }
    if (seen.insert(a.dump()).second) out.push_back(std::move(a));
  }
  if (static_cast<int64_t>(out.size()) < k)
    log::warn("[sweep] the space holds only {} distinct configurations of the {} asked for", out.size(), k);
  return out;
}

nlohmann::json Options::to_json() const {
  nlohmann::json j = {{"strategy", strategy}, {"seeds", seeds}, {"trials", trials},
                      {"folds", folds},       {"seed", seed}};
  if (strategy == "asha") {
    j["eta"] = eta;
    j["min_epochs"] = min_epochs;
  }
  return j;
}

nlohmann::json TrialState::to_json() const {
  nlohmann::json j = {{"status", status}, {"epochs", epochs},      {"seconds", seconds},
                      {"attempts", attempts}, {"exit_code", exit_code}};
  if (stopped_at) j["stopped_at"] = stopped_at;
  if (pid) j["pid"] = pid;
  if (!error.empty()) j["error"] = error;
  return j;
}

Options Options::from_json(const nlohmann::json& j) {
  Options o;
  o.strategy = j.value("strategy", o.strategy);
  o.seeds = j.value("seeds", o.seeds);
  o.trials = j.value("trials", o.trials);
  o.folds = j.value("folds", o.folds);
  o.seed = j.value("seed", o.seed);
  o.eta = j.value("eta", o.eta);
  o.min_epochs = j.value("min_epochs", o.min_epochs);
  return o;
}

TrialState TrialState::from_json(const nlohmann::json& j) {
  TrialState s;
  s.status = j.value("status", "pending");
  s.epochs = j.value("epochs", int64_t{0});
  s.stopped_at = j.value("stopped_at", int64_t{0});
  s.seconds = j.value("seconds", 0.0);
  s.attempts = j.value("attempts", int64_t{0});
  s.exit_code = j.value("exit_code", 0);
  s.pid = j.value("pid", int64_t{0});
  s.error = j.value("error", "");
  return s;
}

// ---- the plan ----

std::vector<std::string> differences(const nlohmann::json& before, const nlohmann::json& after) {
  auto a = flatten_json(before), b = flatten_json(after);
  std::vector<std::string> out;
  for (const auto& [key, value] : b) {
    auto it = a.find(key);
    if (it == a.end()) out.push_back(key + ": (unset) -> " + value);
    else if (it->second != value) out.push_back(key + ": " + it->second + " -> " + value);
  }
  for (const auto& [key, value] : a)
    if (!b.count(key)) out.push_back(key + ": " + value + " -> (unset)");
  return out;
}

std::vector<int64_t> rungs(int64_t min_epochs, int64_t eta, int64_t epochs) {
  if (min_epochs < 1) throw ConfigError("--min-epochs must be >= 1");
  if (eta < 2) throw ConfigError("--eta must be >= 2");
  std::vector<int64_t> out;
  for (int64_t e = min_epochs; e < epochs; e *= eta) out.push_back(e);
  out.push_back(epochs);
  return out;
}

std::vector<std::string> promote(const std::vector<std::pair<std::string, double>>& scores, int64_t eta,
                                 bool higher_better) {
  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto better = [&](size_t x, size_t y) {
    const double a = scores[x].second, b = scores[y].second;
    if (std::isnan(a) || std::isnan(b)) return !std::isnan(a) && std::isnan(b);
    return higher_better ? a > b : a < b;
  };
  std::stable_sort(order.begin(), order.end(), better);
  const size_t keep = std::max<size_t>(1, scores.size() / static_cast<size_t>(eta));
  std::vector<std::string> out;
  for (size_t i = 0; i < std::min(keep, order.size()); ++i)
    if (!std::isnan(scores[order[i]].second)) out.push_back(scores[order[i]].first);
  return out;
}

namespace {

std::string fnv_hex(const std::string& s, int digits) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h).substr(0, static_cast<size_t>(digits));
}

// The folds of data.train: K stratified, seeded, leak-free parts; fold k validates on part k and
// trains on the others. Written in data.train's format (TSV label<TAB>text, or JSON Lines).
std::vector<std::pair<std::string, std::string>> write_folds(const Config& base, int64_t k, uint64_t seed,
                                                             const std::string& dir, bool write_files) {
  const std::string format = resolve_format(base.data.train, base.data.format);
  const bool pairs = !base.data.text_pair_column.empty() || !base.data.text_pair_field.empty();
  const bool tsv_plain = format == "tsv" && !base.data.header && base.data.label_column.empty() &&
                         base.data.text_column.empty() && !pairs;
  if (!tsv_plain && format != "jsonl")
    throw ConfigError("--folds writes its splits as label<TAB>text or JSON Lines: data.train (" + base.data.train +
                      ") is " + format + (pairs ? " with sentence pairs" : " with named columns or a header") +
                      "; convert it to JSON Lines (data.format \"jsonl\") first");
  const std::string ext = format == "jsonl" ? ".jsonl" : ".tsv";
  std::vector<std::pair<std::string, std::string>> paths;
  for (int64_t f = 0; f < k; ++f)
    paths.emplace_back(fmt::format("{}/folds/{}/train{}", dir, f, ext), fmt::format("{}/folds/{}/valid{}", dir, f, ext));
  if (!write_files) return paths;
  auto read = read_examples(base.data.train, reader_options(base.data, base.task));
  const auto& examples = read.examples;
  if (static_cast<int64_t>(examples.size()) < 2 * k)
    throw ConfigError(fmt::format("--folds {}: {} has only {} samples", k, base.data.train, examples.size()));
  const auto parts = stratified_split(examples, std::vector<double>(static_cast<size_t>(k), 1.0 / static_cast<double>(k)),
                                      seed);
  auto write = [&](const std::string& path, const std::vector<int64_t>& ids) {
    std::string out;
    for (int64_t i : ids) {
      const auto& e = examples[static_cast<size_t>(i)];
      if (format == "jsonl") {
        nlohmann::json row = {{base.data.label_field, e.label}, {base.data.text_field, e.text}};
        if (!base.data.text_pair_field.empty()) row[base.data.text_pair_field] = e.text_pair;
        out += row.dump() + "\n";
      } else {
        out += e.label + "\t" + e.text + "\n";
      }
    }
    write_file_atomic(path, out);
  };
  for (int64_t f = 0; f < k; ++f) {
    fs::create_directories(fmt::format("{}/folds/{}", dir, f));
    std::vector<int64_t> train;
    for (int64_t g = 0; g < k; ++g)
      if (g != f) train.insert(train.end(), parts[static_cast<size_t>(g)].begin(), parts[static_cast<size_t>(g)].end());
    std::sort(train.begin(), train.end());
    write(paths[static_cast<size_t>(f)].first, train);
    write(paths[static_cast<size_t>(f)].second, parts[static_cast<size_t>(f)]);
  }
  return paths;
}

}  // namespace

namespace detail {

std::string describe(const nlohmann::json& assignment) {
  std::vector<std::string> parts;
  for (auto it = assignment.begin(); it != assignment.end(); ++it) parts.push_back(it.key() + "=" + it.value().dump());
  return join(parts, " ");
}

}  // namespace detail

using detail::describe;

nlohmann::json definition(const nlohmann::json& base, const Space& space, const Options& options) {
  nlohmann::json d = {{"base", base}, {"space", nlohmann::json::object()}, {"options", options.to_json()}};
  for (const auto& dim : space.dims)
    d["space"][dim.key] = dim.distribution.empty() ? dim.values : nlohmann::json{{dim.distribution, {dim.low, dim.high}}};
  if (options.folds > 1 && base.contains("data") && base["data"].value("train", "") != "") {
    // The folds are cut from data.train: a changed file at the same path is a changed sweep.
    const std::string train = base["data"]["train"].get<std::string>();
    if (fs::exists(train)) d["folds_source"] = fmt::format("{} bytes, fnv {}", fs::file_size(train), fnv_hex(read_file(train), 16));
  }
  return d;
}

Plan make_plan(const nlohmann::json& base, const std::string& base_path, const Space& space, const Options& options,
               const std::string& dir, bool write_files) {
  if (options.strategy != "grid" && options.strategy != "random" && options.strategy != "asha")
    throw ConfigError("--strategy must be grid, random or asha, got '" + options.strategy + "'");
  if (options.seeds < 1) throw ConfigError("--seeds must be >= 1");
  if (options.folds == 1 || options.folds < 0) throw ConfigError("--folds must be >= 2 (or 0: data.valid as it is)");
  if (options.strategy == "random" && options.trials < 1) throw ConfigError("--strategy random needs --trials K");
  if (options.strategy == "grid" && options.trials > 0)
    throw ConfigError("--trials draws configurations at random: use it with --strategy random or asha");
  Config parsed;
  try {
    parsed = parse_config(base);
  } catch (const ConfigError& e) {
    throw ConfigError(base_path + ": " + e.what());
  }
  for (const auto& d : space.dims) {  // every key must exist in the resolved base config
    const nlohmann::json resolved = to_json(parsed);
    nlohmann::json::json_pointer ptr;
    for (auto part : split(d.key, '.')) ptr /= std::string(part);
    if (!resolved.contains(ptr) && d.key.rfind("model.", 0) != 0)
      throw ConfigError("space key '" + d.key + "' is not a key of the config (see the config reference in the README)");
  }
  Plan plan;
  plan.dir = dir;
  plan.epochs = parsed.trainer.epochs;
  plan.metric = Task::selection_metric(parsed.task.type, parsed.trainer.select_metric);
  plan.higher_better = Task::selection_higher_better(plan.metric, parsed.trainer.select_mode);
  plan.has_test = !parsed.data.test.empty();
  plan.test_path = parsed.data.test;
  plan.eval_batch_size = parsed.trainer.eval_batch_size;
  if (options.folds == 0 && parsed.data.valid.empty())
    throw ConfigError("a sweep chooses its best configuration on validation: the config needs data.valid (or use "
                      "--folds K)");
  for (const auto& d : space.dims) plan.keys.push_back(d.key);

  std::vector<nlohmann::json> assignments;
  if (options.strategy == "grid" || (options.strategy == "asha" && options.trials == 0)) assignments = grid(space);
  else assignments = random_draws(space, options.trials, options.seed);

  std::vector<std::pair<std::string, std::string>> folds;
  std::set<std::string> ids;
  if (options.folds > 1) folds = write_folds(parsed, options.folds, options.seed, dir, write_files);
  if (options.strategy == "asha" && parsed.trainer.eval_every > 0)
    throw ConfigError("--strategy asha ranks configurations on the validation at the end of each rung's epoch: set "
                      "trainer.eval_every to 0 (validate every epoch)");

  for (const auto& a : assignments) {
    Configuration c;
    c.assignment = a;
    c.id = fnv_hex(base.dump() + "\n" + a.dump(), 12);
    if (!ids.insert(c.id).second)
      throw Error("two configurations of the sweep hash to the same id " + c.id + " (" + describe(a) + "); report it");
    for (int64_t s = 0; s < options.seeds; ++s) {
      for (int64_t f = 0; f < std::max<int64_t>(1, options.folds); ++f) {
        Trial t;
        t.config_id = c.id;
        t.assignment = a;
        t.seed = static_cast<int64_t>(parsed.seed) + s;
        t.fold = options.folds > 1 ? f : -1;
        t.name = fmt::format("{}-s{}{}", c.id, t.seed, t.fold >= 0 ? fmt::format("-f{}", f) : "");
        nlohmann::json doc = base;
        for (auto it = a.begin(); it != a.end(); ++it) apply_override(doc, it.key() + "=" + it.value().dump());
        doc["seed"] = t.seed;
        doc["output_dir"] = dir + "/trials/" + t.name;
        if (t.fold >= 0) {
          doc["data"]["train"] = folds[static_cast<size_t>(f)].first;
          doc["data"]["valid"] = folds[static_cast<size_t>(f)].second;
        }
        Config trial_config;
        try {
          trial_config = parse_config(doc);
        } catch (const ConfigError& e) {
          throw ConfigError("the configuration " + describe(a) + " is not a valid config: " + e.what());
        }
        if (options.strategy == "asha" && trial_config.trainer.eval_every > 0)
          throw ConfigError("--strategy asha ranks configurations on the validation at the end of each rung's epoch: "
                            "the configuration " + describe(a) + " sets trainer.eval_every; validate every epoch (0)");
        t.document = std::move(doc);
        c.trials.push_back(plan.trials.size());
        plan.trials.push_back(std::move(t));
      }
    }
    plan.configs.push_back(std::move(c));
  }
  return plan;
}

// ---- running the trials ----

namespace detail {

std::string trial_path(const Plan& plan, const Trial& t, const std::string& suffix) {
  return plan.dir + "/trials/" + t.name + suffix;
}

TrialState read_state(const Plan& plan, const Trial& t) {
  const std::string path = trial_path(plan, t, ".state.json");
  if (!fs::exists(path)) return {};
  try {
    return TrialState::from_json(nlohmann::json::parse(read_file(path)));
  } catch (const std::exception& e) {
    throw Error(path + ": unreadable (" + e.what() + "); delete it to run the trial again");
  }
}

void write_state(const Plan& plan, const Trial& t, const TrialState& s) {
  write_file_atomic(trial_path(plan, t, ".state.json"), s.to_json().dump(1) + "\n");
}

std::vector<std::pair<int64_t, double>> valid_history(const std::string& run_dir, const std::string& metric) {
  std::vector<std::pair<int64_t, double>> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    nlohmann::json r;
    try {
      r = nlohmann::json::parse(line);
    } catch (const std::exception&) {
      continue;  // a line cut by a crash: the run's own resume truncates it
    }
    if (r.value("kind", "") == "valid" && r.contains(metric) && r[metric].is_number())
      out.emplace_back(r.value("epoch", int64_t{0}), r[metric].get<double>());
  }
  return out;
}

double best_valid(const std::vector<std::pair<int64_t, double>>& history, int64_t until_epoch, bool higher_better) {
  double best = std::nan("");
  for (const auto& [epoch, value] : history) {
    if (until_epoch > 0 && epoch > until_epoch) continue;
    if (std::isnan(best) || (higher_better ? value > best : value < best)) best = value;
  }
  return best;
}

bool trainer_alive(int64_t pid, const std::string& trial_name) {
  if (pid <= 0 || kill(static_cast<pid_t>(pid), 0) != 0) return false;
  std::string cmdline, stat;
  try {
    cmdline = read_file(fmt::format("/proc/{}/cmdline", pid));
    stat = read_file(fmt::format("/proc/{}/stat", pid));
  } catch (const std::exception&) {
    return false;
  }
  const auto close = stat.rfind(')');
  if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') return false;  // exited
  // ltk-train --resume DIR/trials/NAME or --config DIR/trials/NAME.config.json, and not a recycled pid
  const std::string dir_arg = "/trials/" + trial_name, config_arg = dir_arg + ".config.json";
  auto ends_with = [](const std::string& a, const std::string& b) {
    return a.size() >= b.size() && a.compare(a.size() - b.size(), b.size(), b) == 0;
  };
  size_t start = 0;
  while (start < cmdline.size()) {
    size_t end = cmdline.find('\0', start);
    if (end == std::string::npos) end = cmdline.size();
    const std::string arg = cmdline.substr(start, end - start);
    if (ends_with(arg, dir_arg) || ends_with(arg, config_arg)) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace detail

Plan stored_plan(const std::string& dir, Options* options) {
  const std::string path = dir + "/sweep.json";
  if (!fs::exists(path)) throw ConfigError(dir + " holds no sweep (no sweep.json)");
  const nlohmann::json def = read_json_file(path);
  Options o = Options::from_json(def.at("options"));
  if (options) *options = o;
  return make_plan(def.at("base"), path, parse_space(def.at("space"), path), o, dir, /*write_files=*/false);
}

namespace {

using detail::read_state;
using detail::trial_path;
using detail::write_state;

volatile sig_atomic_t g_signal = 0;
extern "C" void on_sweep_signal(int sig) { g_signal = sig; }

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The trainer of a trial that outlives a killed sweep (it writes its checkpoint on the way out):
// wait for it rather than start a second one on the same run directory.
bool wait_for_leftover(const std::string& name, int64_t pid, const std::string& run_dir) {
  if (pid <= 0 && fs::exists(run_dir + "/.lock")) {
    // No pid recorded (the sweep died between fork and its note): the run directory's lock tells.
    for (int i = 0; i < 300 && !g_signal; ++i) {
      try {
        DirectoryLock probe(run_dir);
        break;
      } catch (const Error&) {
        if (i == 0) log::info("[sweep] waiting for the ltk-train that holds {} to exit", run_dir);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return !g_signal;
  }
  for (int i = 0; detail::trainer_alive(pid, name); ++i) {
    if (g_signal) return false;
    if (i == 0) log::info("[sweep] waiting for the ltk-train of {} left by an earlier sweep (pid {}) to exit", name, pid);
    if (i > 6000) throw Error(fmt::format("the ltk-train of {} (pid {}) is still running; stop it first", name, pid));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

const char* const kAttemptMarker = "== ltk-sweep: attempt ";

// The last attempt's error line (or its last line) in a trial's log.
std::string last_error_line(const std::string& log_path) {
  std::ifstream in(log_path);
  std::string last, any;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(kAttemptMarker, 0) == 0) {
      last.clear();
      any.clear();
      continue;
    }
    if (line.find("error") != std::string::npos) last = line;
    if (!line.empty()) any = line;
  }
  return last.empty() ? any : last;
}

// The JSON summary ltk-train --json printed last; null when there is none.
nlohmann::json last_json_line(const std::string& path) {
  std::ifstream in(path);
  nlohmann::json out;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') continue;
    try {
      out = nlohmann::json::parse(line);
    } catch (const std::exception&) {
    }
  }
  return out;
}

// SIGINT and SIGTERM set g_signal while the trials run; the defaults come back afterwards.
class SignalScope {
 public:
  SignalScope() {
    struct sigaction sa {};
    sa.sa_handler = on_sweep_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

struct Child {
  pid_t pid = -1;
  size_t trial = 0;
  double started = 0;
  int64_t until = 0;
};

class Runner {
 public:
  Runner(const Plan& plan, const RunOptions& options) : plan_(plan), options_(options) {}

  // Trains `trials` (each to `until` epochs, 0: to the end) with at most options.jobs at once.
  // Returns false when stopped by a signal.
  bool run_all(const std::vector<size_t>& trials, int64_t until) {
    size_t next = 0;
    bool forwarded = false;
    while ((next < trials.size() && !g_signal) || !children_.empty()) {
      if (g_signal && !forwarded) {
        forwarded = true;
        log::warn("[sweep] stopped by signal {}: the running trials write a checkpoint; run the same command to "
                  "continue",
                  static_cast<int>(g_signal));
        for (const auto& c : children_) kill(-c.pid, g_signal);
      }
      while (!g_signal && next < trials.size() && static_cast<int>(children_.size()) < options_.jobs)
        launch(trials[next++], until);
      int status = 0;
      pid_t done = waitpid(-1, &status, WNOHANG);
      if (done <= 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      auto it = std::find_if(children_.begin(), children_.end(), [&](const Child& c) { return c.pid == done; });
      if (it == children_.end()) continue;
      finish(*it, status);
      children_.erase(it);
    }
    return g_signal == 0;
  }

  bool failed() const { return failed_; }

 private:
  void launch(size_t index, int64_t until) {
    const Trial& t = plan_.trials[index];
    const std::string run_dir = trial_path(plan_, t, "");
    const std::string config_path = trial_path(plan_, t, ".config.json");
    const std::string doc = t.document.dump(2) + "\n";
    if (!fs::exists(config_path) || read_file(config_path) != doc) write_file_atomic(config_path, doc);
    TrialState s = read_state(plan_, t);
    if (!wait_for_leftover(t.name, s.pid, run_dir)) return;  // stopped while waiting
    std::vector<std::string> args = {options_.trainer};
    // Resumed from its checkpoint when it has one; else (never started, or stopped before its first
    // checkpoint) trained from the beginning.
    const bool started = fs::exists(run_dir + "/checkpoints/last.json");
    if (started) args.insert(args.end(), {"--resume", run_dir});
    else args.insert(args.end(), {"--config", config_path, "--overwrite"});
    args.insert(args.end(), {"--set", fmt::format("threads={}", options_.threads), "--json"});
    if (until > 0) args.insert(args.end(), {"--until-epoch", std::to_string(until)});
    s.status = "running";
    ++s.attempts;
    log::info("[sweep] {} {} ({}{})", started ? "resume" : "start", t.name, describe(t.assignment),
              until > 0 ? fmt::format(", until epoch {}", until) : "");
    const std::string out_path = trial_path(plan_, t, ".summary.json"), err_path = trial_path(plan_, t, ".log");
    {
      std::ofstream log(err_path, std::ios::app);
      log << kAttemptMarker << s.attempts << ": " << join(args, " ") << "\n";
    }
    // argv and the environment are made before fork: the child only redirects and execs.
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings = {"OMP_NUM_THREADS=" + std::to_string(options_.threads)};
    for (char** e = environ; *e; ++e)
      if (std::string_view(*e).rfind("OMP_NUM_THREADS=", 0) != 0) env_strings.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) throw Error("ltk-sweep: fork failed");
    if (pid == 0) {
      signal(SIGINT, SIG_DFL);  // not the sweep's handler: a signal before execve must still stop it
      signal(SIGTERM, SIG_DFL);
      setpgid(0, 0);  // Ctrl-C reaches the sweep, which passes it on once
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // a sweep that dies stops its trials (they checkpoint)
      if (getppid() != parent) _exit(1);
      int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      int null = ::open("/dev/null", O_RDONLY);
      if (out < 0 || err < 0 || null < 0) _exit(126);
      dup2(null, 0);
      dup2(out, 1);
      dup2(err, 2);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    setpgid(pid, pid);
    s.pid = pid;
    write_state(plan_, t, s);
    children_.push_back(Child{pid, index, now_s(), until});
  }

  void finish(const Child& c, int status) {
    const Trial& t = plan_.trials[c.trial];
    TrialState s = read_state(plan_, t);
    s.seconds += now_s() - c.started;
    s.pid = 0;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    s.exit_code = code;
    const nlohmann::json summary = code == 0 ? last_json_line(trial_path(plan_, t, ".summary.json")) : nlohmann::json();
    if (code == 0 && !summary.is_object()) {
      s.status = "failed";
      s.error = "ltk-train exited 0 without its --json summary in " + trial_path(plan_, t, ".summary.json");
      failed_ = true;
      log::error("[sweep] {} failed: {}", t.name, s.error);
    } else if (code == 0) {
      s.epochs = summary.value("epochs", int64_t{0});
      s.status = summary.value("paused", false) ? "paused" : "done";
      s.error.clear();
      log::info("[sweep] {} {} ({} epochs, {:.1f}s)", t.name, s.status == "done" ? "done" : "paused", s.epochs,
                s.seconds);
    } else if (code == 128 + SIGINT || code == 128 + SIGTERM) {
      s.status = "interrupted";
    } else {
      s.status = "failed";
      s.error = last_error_line(trial_path(plan_, t, ".log"));
      if (code == 127) s.error = "could not run " + options_.trainer;
      failed_ = true;
      log::error("[sweep] {} failed (exit {}): {} (its log: {})", t.name, code, s.error, trial_path(plan_, t, ".log"));
    }
    write_state(plan_, t, s);
  }

  const Plan& plan_;
  RunOptions options_;
  std::vector<Child> children_;
  bool failed_ = false;
};

}  // namespace

int run(const Plan& plan, const Options& options, const RunOptions& run_options) {
  fs::create_directories(plan.dir + "/trials");
  SignalScope signals;
  Runner runner(plan, run_options);
  auto stopped = [&] { return 128 + static_cast<int>(g_signal); };

  if (options.strategy != "asha") {
    std::vector<size_t> todo;
    for (size_t i = 0; i < plan.trials.size(); ++i)
      if (read_state(plan, plan.trials[i]).status != "done") todo.push_back(i);
    log::info("[sweep] {} trials ({} configurations x {} seed(s){}): {} to train, {} at a time with {} thread(s) each",
              plan.trials.size(), plan.configs.size(), options.seeds,
              options.folds > 1 ? fmt::format(" x {} folds", options.folds) : "", todo.size(), run_options.jobs,
              run_options.threads);
    if (!runner.run_all(todo, 0)) return stopped();
    return runner.failed() ? 1 : 0;
  }

  // Successive halving, a rung at a time: every surviving configuration trains to the rung's epoch,
  // then the best 1/eta go on. Decided on the rung's validation metric alone, so the result does not
  // depend on --jobs or on which trial finished first.
  const auto rung_epochs = rungs(options.min_epochs, options.eta, plan.epochs);
  std::vector<size_t> active(plan.configs.size());
  for (size_t i = 0; i < active.size(); ++i) active[i] = i;
  log::info("[sweep] successive halving over {} configurations x {} seed(s): rungs at epochs {} (eta {})",
            plan.configs.size(), options.seeds, fmt::join(rung_epochs, ", "), options.eta);
  for (size_t r = 0; r < rung_epochs.size(); ++r) {
    const int64_t epoch = rung_epochs[r];
    const bool last = r + 1 == rung_epochs.size();
    std::vector<size_t> todo;
    for (size_t c : active)
      for (size_t i : plan.configs[c].trials) {
        TrialState s = read_state(plan, plan.trials[i]);
        const bool reached =
            s.status == "done" || (!last && (s.status == "paused" || s.status == "stopped") && s.epochs >= epoch);
        if (reached) continue;
        if (s.status == "stopped") {  // stopped at an earlier rung by another definition of the sweep (--extend)
          s.status = "paused";
          write_state(plan, plan.trials[i], s);
        }
        todo.push_back(i);
      }
    if (!runner.run_all(todo, last ? 0 : epoch)) return stopped();
    if (last) break;
    std::vector<std::pair<std::string, double>> scores;
    for (size_t c : active) {
      double sum = 0;
      int n = 0;
      bool failed = false;
      for (size_t i : plan.configs[c].trials) {
        const Trial& t = plan.trials[i];
        if (read_state(plan, t).status == "failed") failed = true;
        double v = detail::best_valid(detail::valid_history(trial_path(plan, t, ""), plan.metric), epoch,
                                      plan.higher_better);
        if (!std::isnan(v)) {
          sum += v;
          ++n;
        }
      }
      scores.emplace_back(plan.configs[c].id, failed || n == 0 ? std::nan("") : sum / n);
    }
    auto kept = promote(scores, options.eta, plan.higher_better);
    if (kept.empty()) {
      log::error("[sweep] rung {} (epoch {}): no configuration has a validation {} to rank by (see the trials' logs "
                 "and metrics.jsonl)", r + 1, epoch, plan.metric);
      return 1;
    }
    std::vector<size_t> next;
    for (size_t c : active) {
      if (std::find(kept.begin(), kept.end(), plan.configs[c].id) != kept.end()) {
        next.push_back(c);
        continue;
      }
      for (size_t i : plan.configs[c].trials) {
        TrialState s = read_state(plan, plan.trials[i]);
        if (s.status == "paused") {
          s.status = "stopped";
          s.stopped_at = epoch;
          write_state(plan, plan.trials[i], s);
        }
      }
    }
    log::info("[sweep] rung {} (epoch {}): {} of {} configurations go on: {}", r + 1, epoch, next.size(), active.size(),
              fmt::join(kept, ", "));
    active = next;
  }
  return runner.failed() ? 1 : 0;
}

}  // namespace ltk::sweep
