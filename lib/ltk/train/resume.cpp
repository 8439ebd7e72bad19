// ltk-train --resume: the run's saved config with overrides, refusing structural changes.
#include "ltk/train/trainer.h"

#include <map>

#include "ltk/core/log.h"
#include "ltk/core/strings.h"
#include "ltk/io/run_dir.h"
#include "ltk/models/registry.h"

namespace ltk {

Config resume_config(const std::string& run_dir, const std::vector<std::string>& overrides) {
  RunDirectory run = RunDirectory::open(run_dir);
  nlohmann::json saved = read_json_file(run.config_path());
  // Runs older than the key's defaults that depend on the model (the rnn buckets by length now)
  // trained without bucketing: they resume as they were.
  if (saved.contains("trainer") && saved["trainer"].is_object() && !saved["trainer"].contains("bucket_pool"))
    saved["trainer"]["bucket_pool"] = 0;
  nlohmann::json j = saved;
  for (const auto& o : overrides) apply_override(j, o);
  Config config;
  try {
    config = parse_config(j);
  } catch (const ConfigError& e) {
    throw ConfigError(run.config_path() + ": " + e.what());
  }
  config.output_dir = run_dir;  // the run continues where it is, wherever it was moved
  const auto before = flatten_json(saved), after = flatten_json(to_json(config));
  // A key the saved config lacks (added to ltk after the run was made, e.g. task.calibrate) has the
  // value its default gives it: only an override changes it.
  std::map<std::string, std::string> implied;
  try {
    implied = flatten_json(to_json(parse_config(saved)));
  } catch (const ConfigError&) {
  }
  std::vector<std::string> refused, allowed;
  for (const auto& [key, value] : after) {
    auto it = before.find(key);
    auto by_default = implied.find(key);
    std::string old = it != before.end() ? it->second : by_default != implied.end() ? by_default->second : "(unset)";
    if (old == value || key == "output_dir") continue;
    std::string change = key + ": " + old + " -> " + value;
    bool structural = key.rfind("data.", 0) == 0 || key.rfind("model.", 0) == 0 || key.rfind("task.", 0) == 0 ||
                      key == "seed";
    (structural ? refused : allowed).push_back(change);
  }
  if (!refused.empty())
    throw ConfigError("cannot resume " + run_dir + " with a changed data, task, model or seed (" + join(refused, "; ") +
                      "); start a new run, or fine-tune from this one with model.init_from=" + run_dir);
  for (const auto& change : allowed) log::info("[resume] {}", change);
  return config;
}

}  // namespace ltk
