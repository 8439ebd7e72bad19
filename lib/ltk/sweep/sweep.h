// Config-driven experiments (ltk-sweep): a search space over config keys, trials (a
// configuration x a seed x a fold) that are ordinary run directories trained by ltk-train, and
// a leaderboard that says which differences between configurations are real.
//
// A sweep directory:
//   sweep.json                 the definition (base config as written, space, strategy, seeds, folds, ...)
//   trials/NAME.config.json    a trial's config, as ltk-train reads it
//   trials/NAME/               its run directory (made by ltk-train)
//   trials/NAME.log            ltk-train's stderr; NAME.state.json what the sweep knows of the trial
//   folds/K/train.*, valid.*   the cross-validation splits (--folds)
//   leaderboard.{md,json}, report.html
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ltk::sweep {

/// One varied key: a list of values, or a distribution to draw from.
struct Dimension {
  std::string key;               ///< a config key path, e.g. "optimizer.lr"
  nlohmann::json values;         ///< the list (empty when a distribution)
  std::string distribution;      ///< "" | uniform | log_uniform | int_uniform
  double low = 0, high = 0;
};

/// The search space: keys in sorted order.
struct Space {
  std::vector<Dimension> dims;
  bool has_distributions() const;
};

/// Parses SPACE.json: {"key": [v1, v2, ...] | {"uniform": [lo, hi]} | {"log_uniform": [lo, hi]} |
/// {"int_uniform": [lo, hi]}}. Errors (ConfigError) name `where` and the key.
Space parse_space(const nlohmann::json& j, const std::string& where);

/// Every combination of the lists (the last key varies fastest). A distribution is an error.
std::vector<nlohmann::json> grid(const Space& space);
/// `k` distinct assignments drawn with `seed` (lists uniformly, distributions by their law; floats
/// rounded to 4 significant digits so that configs stay readable).
std::vector<nlohmann::json> random_draws(const Space& space, int64_t k, uint64_t seed);

struct Options {
  std::string strategy = "grid";  ///< grid | random | asha
  int64_t seeds = 1;              ///< trials per configuration (and fold), seeds base, base + 1, ...
  int64_t trials = 0;             ///< random (and asha): configurations drawn; 0 = the grid
  int64_t folds = 0;              ///< cross-validation folds of data.train (0: data.valid as it is)
  uint64_t seed = 0;              ///< the draws and the folds
  int64_t eta = 3;                ///< asha: keep the best 1/eta at each rung
  int64_t min_epochs = 1;         ///< asha: the first rung's epochs
  nlohmann::json to_json() const;
  static Options from_json(const nlohmann::json& j);
};

struct Trial {
  std::string name;       ///< CONFIG-sSEED[-fFOLD]
  std::string config_id;  ///< a hash of the base config and the assignment
  nlohmann::json assignment;
  int64_t seed = 0;
  int64_t fold = -1;
  nlohmann::json document;  ///< the trial's config
};

struct Configuration {
  std::string id;
  nlohmann::json assignment;
  std::vector<size_t> trials;  ///< indices into Plan::trials
};

struct Plan {
  std::string dir;
  std::vector<std::string> keys;  ///< the varied keys
  std::vector<Configuration> configs;
  std::vector<Trial> trials;
  int64_t epochs = 0;            ///< trainer.epochs of the base config
  std::string metric;            ///< the selection metric (trainer.select_metric resolved)
  bool higher_better = true;
  bool has_test = false;
  std::string test_path;         ///< data.test of the base config
  int64_t eval_batch_size = 256;
};

/// What sweep.json holds: the base config as written, the space and the options (and, with folds,
/// a fingerprint of data.train: the folds are cut from it). A sweep run again compares it with the
/// stored one.
nlohmann::json definition(const nlohmann::json& base, const Space& space, const Options& options);

/// The plan of a sweep into `dir` from the base config document (as written) and the space; every
/// trial's config is parsed, so a bad combination is refused before anything trains. With
/// `write_files`, writes the folds' files when options.folds > 1.
Plan make_plan(const nlohmann::json& base, const std::string& base_path, const Space& space, const Options& options,
               const std::string& dir, bool write_files = true);

/// The plan of the sweep in `dir` as its sweep.json defines it (nothing written).
Plan stored_plan(const std::string& dir, Options* options = nullptr);

/// "key: old -> new" for every leaf that differs between two JSON documents.
std::vector<std::string> differences(const nlohmann::json& before, const nlohmann::json& after);

/// The rungs of successive halving: min_epochs, min_epochs * eta, ... below `epochs`, then `epochs`.
std::vector<int64_t> rungs(int64_t min_epochs, int64_t eta, int64_t epochs);

/// Successive halving's cut: of the configurations with their rung scores (NaN: none yet, ranked
/// last), the best max(1, n / eta) go on; ties keep the earlier one.
std::vector<std::string> promote(const std::vector<std::pair<std::string, double>>& scores, int64_t eta,
                                 bool higher_better);

/// What the sweep knows of a trial (NAME.state.json).
struct TrialState {
  std::string status = "pending";  ///< pending | running | paused | stopped | done | failed | interrupted
  int64_t epochs = 0;              ///< epochs finished
  int64_t stopped_at = 0;          ///< asha: the rung epoch at which it was stopped
  double seconds = 0;              ///< ltk-train's wall time, all attempts
  int64_t attempts = 0;
  int exit_code = 0;
  int64_t pid = 0;                 ///< the ltk-train process of the last attempt
  std::string error;               ///< a failed trial's last error line
  nlohmann::json to_json() const;
  static TrialState from_json(const nlohmann::json& j);
};

struct RunOptions {
  int jobs = 1;
  int threads = 1;          ///< per trial
  std::string trainer;      ///< the ltk-train executable
};

/// Runs the plan's unfinished trials (resuming the interrupted ones); asha by rungs. Returns 0,
/// 1 when a trial failed (the others still run), or 128 + signal when stopped (SIGINT, SIGTERM:
/// the running trials checkpoint; the same command continues).
int run(const Plan& plan, const Options& options, const RunOptions& run_options);

/// The leaderboard of the finished trials: leaderboard.{md,json} and report.html in the sweep
/// directory; returns the JSON. Scores each finished trial's best checkpoint on data.test once
/// (kept in NAME.result.json) for the significance tests.
nlohmann::json write_leaderboard(const Plan& plan, const Options& options);

/// A progress table of the sweep in `dir` (ltk-sweep --status).
std::string status_text(const std::string& dir);

/// The run directories of one configuration of a sweep, from "SWEEP_DIR:ID" (an id of its
/// leaderboard, or "best"); empty when `spec` names no sweep configuration.
std::vector<std::string> configuration_runs(const std::string& spec);

}  // namespace ltk::sweep
