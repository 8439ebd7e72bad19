// ltk-sweep: the experiment, not the run, as the unit of work. Trains every trial of a search
// space (configurations x seeds x folds) with ltk-train into one directory, resumably, and writes a
// leaderboard that says which differences between configurations are real.
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "app.h"
#include "ltk/config/config.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/parallel.h"
#include "ltk/core/runtime.h"
#include "ltk/core/strings.h"
#include "ltk/models/registry.h"
#include "ltk/sweep/sweep.h"

namespace fs = std::filesystem;

namespace {

std::string trainer_path() {
  if (const char* t = std::getenv("LTK_TRAIN")) return t;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  fs::path train = ec ? fs::path("ltk-train") : self.parent_path() / "ltk-train";
  if (access(train.c_str(), X_OK) != 0)
    throw ltk::Error("cannot find ltk-train next to ltk-sweep (" + train.string() + "); set LTK_TRAIN to its path");
  return train.string();
}

}  // namespace

int main(int argc, char** argv) {
  return ltk::app::guarded_main("ltk-sweep", argv, [&] {
    cxxopts::Options options("ltk-sweep",
                             "Train every trial of a search space over config keys (configurations x seeds x folds) "
                             "with ltk-train, resumably, and write a leaderboard of the configurations.");
    options.add_options()
        ("c,config", "the base config (JSON)", cxxopts::value<std::string>())
        ("space", "the search space (JSON): {\"key\": [values] | {\"log_uniform\": [low, high]}, ...}",
         cxxopts::value<std::string>())
        ("s,set", "override a key of the base config, e.g. --set trainer.epochs=1 (repeatable)",
         cxxopts::value<std::vector<std::string>>())
        ("o,out", "the sweep directory (runs/NAME)", cxxopts::value<std::string>())
        ("seeds", "trials per configuration, with seeds seed, seed+1, ...", cxxopts::value<int64_t>()->default_value("1"))
        ("jobs", "trials trained at once (the cores are shared out between them)",
         cxxopts::value<int>()->default_value("1"))
        ("strategy", "grid | random | asha (successive halving at epoch boundaries)",
         cxxopts::value<std::string>()->default_value("grid"))
        ("trials", "random and asha: configurations drawn from the space", cxxopts::value<int64_t>()->default_value("0"))
        ("folds", "K-fold cross-validation on data.train (stratified, seeded); 0: data.valid",
         cxxopts::value<int64_t>()->default_value("0"))
        ("seed", "seeds the random draws and the folds", cxxopts::value<uint64_t>()->default_value("0"))
        ("eta", "asha: keep the best 1/eta of the configurations at each rung", cxxopts::value<int64_t>()->default_value("3"))
        ("min-epochs", "asha: the epochs of the first rung", cxxopts::value<int64_t>()->default_value("1"))
        ("extend", "accept a changed space or base config: trials already trained with the same config are kept")
        ("dry-run", "list the trials and exit")
        ("status", "print the progress of the sweep in DIR and exit", cxxopts::value<std::string>())
        ("h,help", "show this help");
    bool help = false;
    auto args = ltk::app::parse(options, argc, argv, help);
    if (help) return 0;
    if (args.count("status")) {
      std::cout << ltk::sweep::status_text(args["status"].as<std::string>()) << std::flush;
      return 0;
    }
    for (const char* required : {"config", "space", "out"})
      if (!args.count(required)) throw ltk::UsageError(std::string("--") + required + " is required");
    const std::string config_path = args["config"].as<std::string>();
    const std::string space_path = args["space"].as<std::string>();
    const std::string dir = args["out"].as<std::string>();
    nlohmann::json base = ltk::read_config_file(config_path);
    if (args.count("set"))
      for (const auto& o : args["set"].as<std::vector<std::string>>()) ltk::apply_override(base, o);
    base.erase("output_dir");  // each trial has its own
    const ltk::sweep::Space space = ltk::sweep::parse_space(ltk::read_json_file(space_path), space_path);
    ltk::sweep::Options o;
    o.strategy = args["strategy"].as<std::string>();
    o.seeds = args["seeds"].as<int64_t>();
    o.trials = args["trials"].as<int64_t>();
    o.folds = args["folds"].as<int64_t>();
    o.seed = args["seed"].as<uint64_t>();
    o.eta = args["eta"].as<int64_t>();
    o.min_epochs = args["min-epochs"].as<int64_t>();
    const int cores = ltk::usable_cores();
    ltk::sweep::RunOptions run;
    run.jobs = args["jobs"].as<int>();
    if (run.jobs < 1) throw ltk::UsageError("--jobs must be >= 1");
    if (run.jobs > cores)
      throw ltk::UsageError(fmt::format("--jobs {} is more than this machine's {} cores: trials that share a core slow "
                                        "each other down many times over (README, Sweeps)",
                                        run.jobs, cores));
    run.threads = std::max(1, cores / run.jobs);

    fs::create_directories(dir);
    ltk::DirectoryLock lock(dir);  // one ltk-sweep at a time in a directory
    const nlohmann::json def = ltk::sweep::definition(base, space, o);
    const std::string def_path = dir + "/sweep.json";
    if (fs::exists(def_path)) {
      const nlohmann::json old = ltk::read_json_file(def_path);
      auto diffs = ltk::sweep::differences(old, def);
      if (!diffs.empty()) {
        if (!args.count("extend"))
          throw ltk::ConfigError(dir + " holds a sweep with another definition (" + ltk::join(diffs, "; ") +
                                 "); run it with --extend to keep its trials and add the new ones, or use another --out");
        const auto& oo = old["options"];
        if ((oo.value("folds", int64_t{0}) > 1 || o.folds > 1) &&
            (oo.value("folds", int64_t{0}) != o.folds || oo.value("seed", uint64_t{0}) != o.seed ||
             old.value("folds_source", "") != def.value("folds_source", "")))
          throw ltk::ConfigError("--extend cannot change --folds, --seed or data.train of a cross-validated sweep: "
                                 "its trials train on the fold files in " + dir + "/folds");
        ltk::log::info("[sweep] extending {}: {}", dir, ltk::join(diffs, "; "));
      }
    }
    ltk::sweep::Plan plan = ltk::sweep::make_plan(base, config_path, space, o, dir, !args.count("dry-run"));
    if (args.count("dry-run")) {
      for (const auto& t : plan.trials) std::cout << t.name << "\t" << t.assignment.dump() << "\n";
      std::cout << plan.trials.size() << " trials\n";
      return 0;
    }
    ltk::write_file_atomic(def_path, def.dump(1) + "\n");
    run.trainer = trainer_path();
    const int rc = ltk::sweep::run(plan, o, run);
    if (rc >= 128) {
      std::cerr << "ltk-sweep: stopped; run the same command to continue (finished trials are kept, the others resume "
                   "from their checkpoints)\n";
      return rc;
    }
    ltk::apply_threads(0);  // scoring the trials on data.test: every core
    auto lb = ltk::sweep::write_leaderboard(plan, o);
    std::cout << ltk::read_file(dir + "/leaderboard.md") << std::flush;
    ltk::log::info("[sweep] leaderboard: {}/leaderboard.md, {}/report.html", dir, dir);
    if (rc != 0)
      std::cerr << "ltk-sweep: " << lb["failed"].size()
                << " trial(s) failed (listed in the leaderboard); the same command tries them again\n";
    return rc;
  });
}
