// ltk-train: trains a model from a JSON config into a run directory.
#include <unistd.h>

#include <csignal>
#include <iostream>

#include "app.h"
#include "ltk/config/config.h"
#include "ltk/core/log.h"
#include "ltk/core/stop.h"
#include "ltk/models/registry.h"
#include "ltk/train/trainer.h"

namespace {

// The first SIGINT/SIGTERM asks the trainer to stop after the current step and write a
// checkpoint; a second one exits at once.
extern "C" void on_signal(int sig) {
  if (ltk::stop_signal() != 0) _exit(128 + sig);
  ltk::request_stop(sig);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  return ltk::app::guarded_main("ltk-train", argv, [&] {
    cxxopts::Options options("ltk-train", "Train a text classifier from a JSON config into a run directory.");
    options.add_options()
        ("c,config", "experiment config (JSON)", cxxopts::value<std::string>())
        ("resume", "continue the run in DIR from its last checkpoint (its config, with any --set)",
         cxxopts::value<std::string>())
        ("s,set", "override a config key, e.g. --set trainer.epochs=3 (repeatable)",
         cxxopts::value<std::vector<std::string>>())
        ("dump-config", "print the resolved config (every default filled in) and exit")
        ("overwrite", "replace an existing run in the output directory")
        ("json", "print a JSON summary of the run on stdout")
        ("baseline", "also train the tf-idf linear baseline on the same data (into RUN/baseline) and compare "
                     "them on the test split, in the log, report.html and --json")
        ("h,help", "show this help");
    bool help = false;
    auto args = ltk::app::parse(options, argc, argv, help);
    if (help) return 0;
    bool resume = args.count("resume") > 0;
    if (!args.count("config") && !resume) throw ltk::UsageError("--config (or --resume DIR) is required");
    if (args.count("config") && resume) throw ltk::UsageError("--resume takes the run's own config; drop --config");
    std::vector<std::string> overrides;
    if (args.count("set")) overrides = args["set"].as<std::vector<std::string>>();
    ltk::Config config = resume ? ltk::resume_config(args["resume"].as<std::string>(), overrides)
                                : ltk::load_config(args["config"].as<std::string>(), overrides);
    if (args.count("dump-config")) {
      std::cout << ltk::to_json(config).dump(2) << std::endl;
      return 0;
    }
    install_signal_handlers();
    ltk::TrainSummary s = ltk::run_training(config, args.count("overwrite") > 0, resume, args.count("baseline") > 0);
    if (s.interrupted) return 128 + s.interrupted;
    ltk::log::info("run directory: {} (evaluate: ltk-eval --run {} --data FILE)", config.output_dir,
                   config.output_dir);
    if (args.count("json")) {
      nlohmann::json j = {{"run", config.output_dir},     {"steps", s.steps},
                          {"epochs", s.epochs},           {"best_epoch", s.best_epoch},
                          {"seconds", s.seconds},         {"samples_per_s", s.samples_per_s},
                          {"train_loss", s.last_train_loss}, {"data_seconds", s.data_seconds},
                          {"eval_seconds", s.eval_seconds},
                          {"blas_core", ltk::openblas_core()},
                          {"train_samples_per_s", s.seconds > s.eval_seconds ? s.samples_per_s * s.seconds / (s.seconds - s.eval_seconds) : 0.0}};
      if (s.test) j["test"] = s.test->headline();
      if (!s.baseline.is_null()) j["baseline"] = s.baseline;
      std::cout << j.dump() << std::endl;
    }
    return 0;
  });
}
