// The plan of a sweep: its trials (configurations x seeds x folds), their documents and the folds'
// files, successive halving's rungs, and the options and trial states as JSON.
#include "ltk/sweep/sweep.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "ltk/config/config.h"
#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/strings.h"
#include "ltk/data/formats.h"
#include "ltk/data/shards.h"
#include "ltk/data/split.h"
#include "ltk/models/registry.h"
#include "ltk/sweep/trials.h"
#include "ltk/task/task.h"

namespace fs = std::filesystem;

namespace ltk::sweep {

nlohmann::json Options::to_json() const {
  nlohmann::json j = {{"strategy", strategy}, {"seeds", seeds}, {"trials", trials}, {"folds", folds}, {"seed", seed}};
  if (strategy == "asha") {
    j["eta"] = eta;
    j["min_epochs"] = min_epochs;
  }
  return j;
}

nlohmann::json TrialState::to_json() const {
  nlohmann::json j = {
      {"status", status}, {"epochs", epochs}, {"seconds", seconds}, {"attempts", attempts}, {"exit_code", exit_code}};
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

std::vector<std::string> differences(const nlohmann::json& before, const nlohmann::json& after) {
  auto a = flatten_json(before), b = flatten_json(after);
  std::vector<std::string> out;
  for (const auto& [key, value] : b) {
    auto it = a.find(key);
    if (it == a.end())
      out.push_back(key + ": (unset) -> " + value);
    else if (it->second != value)
      out.push_back(key + ": " + it->second + " -> " + value);
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
  const bool tsv_plain =
      format == "tsv" && !base.data.header && base.data.label_column.empty() && base.data.text_column.empty() && !pairs;
  if (!tsv_plain && format != "jsonl")
    throw ConfigError("--folds writes its splits as label<TAB>text or JSON Lines: data.train (" + base.data.train +
                      ") is " + format + (pairs ? " with sentence pairs" : " with named columns or a header") +
                      "; convert it to JSON Lines (data.format \"jsonl\") first");
  const std::string ext = format == "jsonl" ? ".jsonl" : ".tsv";
  std::vector<std::pair<std::string, std::string>> paths;
  for (int64_t f = 0; f < k; ++f)
    paths.emplace_back(fmt::format("{}/folds/{}/train{}", dir, f, ext),
                       fmt::format("{}/folds/{}/valid{}", dir, f, ext));
  if (!write_files) return paths;
  if (is_shard(base.data.train))
    throw ConfigError(fmt::format("--folds {}: data.train {} is a shard; folds are cut from the raw file: name {}", k,
                                  base.data.train, read_shard_manifest(base.data.train).value("source_path", "it")));
  auto read = read_examples(base.data.train, reader_options(base.data, base.task));
  const auto& examples = read.examples;
  if (static_cast<int64_t>(examples.size()) < 2 * k)
    throw ConfigError(fmt::format("--folds {}: {} has only {} samples", k, base.data.train, examples.size()));
  const auto parts =
      stratified_split(examples, std::vector<double>(static_cast<size_t>(k), 1.0 / static_cast<double>(k)), seed);
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

namespace {

// The leaderboard scores data.test with ltk-eval's reader, which reads raw files.
void refuse_shard_test(const nlohmann::json& base) {
  const std::string test = base.contains("data") ? base["data"].value("test", "") : "";
  if (is_shard(test))
    throw ConfigError(
        fmt::format("ltk-sweep scores data.test from the raw file (its bad cases show the texts), and {} "
                    "is a shard: name {}",
                    test, read_shard_manifest(test).value("source_path", "the file")));
}

}  // namespace

nlohmann::json definition(const nlohmann::json& base, const Space& space, const Options& options) {
  nlohmann::json d = {{"base", base}, {"space", nlohmann::json::object()}, {"options", options.to_json()}};
  refuse_shard_test(base);
  for (const auto& dim : space.dims)
    d["space"][dim.key] =
        dim.distribution.empty() ? dim.values : nlohmann::json{{dim.distribution, {dim.low, dim.high}}};
  if (options.folds > 1 && base.contains("data") && base["data"].value("train", "") != "") {
    // The folds are cut from data.train: a changed file at the same path is a changed sweep.
    const std::string train = base["data"]["train"].get<std::string>();
    if (is_shard(train))
      throw ConfigError(fmt::format("--folds {}: data.train {} is a shard; folds are cut from the raw file: name {}",
                                    options.folds, train, read_shard_manifest(train).value("source_path", "it")));
    if (fs::exists(train))
      d["folds_source"] = fmt::format("{} bytes, fnv {}", fs::file_size(train), fnv_hex(read_file(train), 16));
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
      throw ConfigError("space key '" + d.key +
                        "' is not a key of the config (see the config reference in the README)");
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
    throw ConfigError(
        "a sweep chooses its best configuration on validation: the config needs data.valid (or use "
        "--folds K)");
  for (const auto& d : space.dims) plan.keys.push_back(d.key);

  std::vector<nlohmann::json> assignments;
  if (options.strategy == "grid" || (options.strategy == "asha" && options.trials == 0))
    assignments = grid(space);
  else
    assignments = random_draws(space, options.trials, options.seed);

  std::vector<std::pair<std::string, std::string>> folds;
  std::set<std::string> ids;
  if (options.folds > 1) folds = write_folds(parsed, options.folds, options.seed, dir, write_files);
  if (options.strategy == "asha" && parsed.trainer.eval_every > 0)
    throw ConfigError(
        "--strategy asha ranks configurations on the validation at the end of each rung's epoch: set "
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
        if (options.strategy == "asha" && trial_config.optimizer.type == "dual_cd")
          throw ConfigError(
              "--strategy asha trains its trials a rung of epochs at a time, and optimizer.type "
              "\"dual_cd\" solves a run in one go (the configuration " +
              describe(a) +
              "; the linear model's default where it applies): use --strategy grid or random, or set "
              "optimizer.type \"adagrad\"");
        if (options.strategy == "asha" && trial_config.trainer.eval_every > 0)
          throw ConfigError(
              "--strategy asha ranks configurations on the validation at the end of each rung's epoch: "
              "the configuration " +
              describe(a) + " sets trainer.eval_every; validate every epoch (0)");
        t.document = std::move(doc);
        c.trials.push_back(plan.trials.size());
        plan.trials.push_back(std::move(t));
      }
    }
    plan.configs.push_back(std::move(c));
  }
  return plan;
}

Plan stored_plan(const std::string& dir, Options* options) {
  const std::string path = dir + "/sweep.json";
  if (!fs::exists(path)) throw ConfigError(dir + " holds no sweep (no sweep.json)");
  const nlohmann::json def = read_json_file(path);
  Options o = Options::from_json(def.at("options"));
  if (options) *options = o;
  return make_plan(def.at("base"), path, parse_space(def.at("space"), path), o, dir, /*write_files=*/false);
}

}  // namespace ltk::sweep
