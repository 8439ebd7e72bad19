// ltk-train: trains a model from a JSON config into a run directory.
#include <iostream>

#include "app.h"
#include "ltk/config/config.h"
#include "ltk/core/log.h"
#include "ltk/train/trainer.h"

int main(int argc, char** argv) {
  return ltk::app::guarded_main("ltk-train", [&] {
    cxxopts::Options options("ltk-train", "Train a text classifier from a JSON config into a run directory.");
    options.add_options()
        ("c,config", "experiment config (JSON)", cxxopts::value<std::string>())
        ("s,set", "override a config key, e.g. --set trainer.epochs=3 (repeatable)",
         cxxopts::value<std::vector<std::string>>())
        ("dump-config", "print the resolved config (every default filled in) and exit")
        ("overwrite", "replace an existing run in the output directory")
        ("json", "print a JSON summary of the run on stdout")
        ("h,help", "show this help");
    bool help = false;
    auto args = ltk::app::parse(options, argc, argv, help);
    if (help) return 0;
    if (!args.count("config")) throw ltk::UsageError("--config is required");
    std::vector<std::string> overrides;
    if (args.count("set")) overrides = args["set"].as<std::vector<std::string>>();
    ltk::Config config = ltk::load_config(args["config"].as<std::string>(), overrides);
    if (args.count("dump-config")) {
      std::cout << ltk::to_json(config).dump(2) << std::endl;
      return 0;
    }
    ltk::TrainSummary s = ltk::run_training(config, args.count("overwrite") > 0);
    ltk::log::info("run directory: {} (evaluate: ltk-eval --run {} --data FILE)", config.output_dir,
                   config.output_dir);
    if (args.count("json")) {
      nlohmann::json j = {{"run", config.output_dir},     {"steps", s.steps},
                          {"epochs", s.epochs},           {"best_epoch", s.best_epoch},
                          {"seconds", s.seconds},         {"samples_per_s", s.samples_per_s},
                          {"train_loss", s.last_train_loss}};
      if (s.test) j["test"] = s.test->headline();
      std::cout << j.dump() << std::endl;
    }
    return 0;
  });
}
