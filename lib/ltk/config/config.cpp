#include "ltk/config/config.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ltk/config/json_reader.h"
#include "ltk/core/files.h"
#include "ltk/config/sections.h"
#include "ltk/core/strings.h"

namespace ltk {

ModelConfig parse_model_section(const nlohmann::json& section, const ModelSchema& models) {
  JsonReader r(section, "model");
  ModelConfig config;
  r.get("type", config.type);
  // Keys every model has: where its weights start from and which stay fixed.
  r.get("init_from", config.init_from);
  r.get("init_strict", config.init_strict);
  const nlohmann::json& freeze = r.raw("freeze");
  if (!freeze.is_null()) {
    if (!freeze.is_array()) config_fail("model.freeze", "expected an array of parameter name prefixes");
    for (const auto& f : freeze) {
      if (!f.is_string()) config_fail("model.freeze", "expected strings, found " + json_type_name(f));
      config.freeze.push_back(f.get<std::string>());
    }
  }
  config.options = models.resolve(config.type, r);
  r.finish();
  config.options["type"] = config.type;
  config.options["init_from"] = config.init_from;
  config.options["init_strict"] = config.init_strict;
  config.options["freeze"] = config.freeze;
  return config;
}

Config parse_config(const nlohmann::json& j, const ModelSchema& models, const std::string& default_name) {
  Config c;
  JsonReader r(j, "");
  c.name = default_name;
  r.get("name", c.name);
  if (c.name.empty() || c.name.find('/') != std::string::npos)
    config_fail("name", "must be a non-empty name without '/' (got '" + c.name + "')");
  int64_t seed = static_cast<int64_t>(c.seed);
  r.get("seed", seed);
  check_min("seed", seed, 0);
  c.seed = static_cast<uint64_t>(seed);
  c.output_dir = "runs/" + c.name;
  r.get("output_dir", c.output_dir);
  config_detail::read_top(r, c);
  config_detail::read_data(r.child("data"), c.data);
  config_detail::read_task(r.child("task"), c.task);
  c.model = parse_model_section(r.raw("model"), models);
  config_detail::read_optimizer(r.child("optimizer"), c.optimizer);
  config_detail::read_scheduler(r.child("scheduler"), c.scheduler);
  config_detail::read_trainer(r.child("trainer"), c.trainer);
  r.finish();
  // Checks that span sections.
  models.complete(j, c);
  config_detail::check_data(c.data);
  if (c.task.calibrate != "none" && c.data.valid.empty())
    config_fail("task.calibrate", "fits the temperature on the validation split: set data.valid");
  if (c.data.long_text == "window" && (c.task.type == "mlm" || c.model.type == "linear"))
    config_fail("data.long_text", c.task.type == "mlm"
                                      ? "mlm pretraining packs or truncates texts; windows are for classifiers"
                                      : "the linear model reads every n-gram of a text whatever its length: "
                                        "data.max_len and windows do not apply to it");
  if (c.task.threshold.is_string() && c.data.valid.empty())
    config_fail("task.threshold", "\"tune\" chooses each label's threshold on the validation split: set data.valid");
  models.check(c);
  const std::string& m = c.trainer.select_metric;
  bool regression = c.task.type == "regression";
  if (regression && (m == "accuracy" || m == "macro_f1"))
    config_fail("trainer.select_metric", "'" + m + "' needs classes; a regression task selects by loss, mae or rmse");
  if (!regression && (m == "mae" || m == "rmse"))
    config_fail("trainer.select_metric", "'" + m + "' applies to regression; use accuracy, macro_f1 or loss");
  const bool mlm = c.task.type == "mlm";
  const bool mlm_metric = m == "masked_accuracy" || m == "perplexity";
  if (mlm && !(mlm_metric || m == "loss" || m == "auto"))
    config_fail("trainer.select_metric", "an mlm task selects by masked_accuracy, perplexity or loss (got '" + m + "')");
  if (!mlm && mlm_metric) config_fail("trainer.select_metric", "'" + m + "' applies to mlm only");
  return c;
}

nlohmann::json read_json_file(const std::string& path) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const DataError& e) {
    throw ConfigError(std::string("config file: ") + e.what());
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // Turn the byte offset into line:column.
    size_t line = 1, col = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    std::string what = e.what();
    auto pos = what.find("parse error");
    if (pos != std::string::npos) what = what.substr(pos);
    throw ConfigError(fmt::format("{}:{}:{}: invalid JSON: {}", path, line, col, what));
  } catch (const nlohmann::json::exception& e) {  // a number beyond double's range (1e999)
    throw ConfigError(fmt::format("{}: {}; write numbers within double's range", path, e.what()));
  }
}

void apply_override(nlohmann::json& j, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--set '" + assignment + "': expected key.path=value, e.g. --set trainer.epochs=3");
  std::string key = assignment.substr(0, eq);
  std::string value = assignment.substr(eq + 1);
  try {
    (void)nlohmann::json(assignment).dump();  // throws on invalid UTF-8, which no config may hold
  } catch (const nlohmann::json::exception&) {
    throw ConfigError("--set " + key + "=...: the assignment is not valid UTF-8 text");
  }
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(value);
  } catch (const nlohmann::json::parse_error&) {
    parsed = value;  // a bare word is a string
  } catch (const nlohmann::json::exception& e) {  // 1e999
    throw ConfigError("--set '" + assignment + "': " + e.what() + "; give a number within double's range");
  }
  nlohmann::json* node = &j;
  auto parts = split(key, '.');
  std::string walked;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string part(parts[i]);
    if (part.empty()) throw ConfigError("--set '" + assignment + "': empty key component");
    if (!node->is_object()) {
      if (!node->is_null())
        throw ConfigError("--set '" + assignment + "': '" + walked + "' is not an object");
      *node = nlohmann::json::object();
    }
    walked += (walked.empty() ? "" : ".") + part;
    node = &(*node)[part];
  }
  *node = parsed;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides, const ModelSchema& models) {
  nlohmann::json j = read_config_file(path);
  for (const auto& o : overrides) apply_override(j, o);
  std::string stem = std::filesystem::path(path).stem().string();
  try {
    return parse_config(j, models, stem);
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

namespace {

void flatten_into(const nlohmann::json& j, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      flatten_into(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
  } else {
    out[prefix] = j.dump();
  }
}

}  // namespace

std::map<std::string, std::string> flatten_json(const nlohmann::json& j) {
  std::map<std::string, std::string> out;
  flatten_into(j, "", out);
  return out;
}

nlohmann::json to_json(const Config& c) { return config_detail::write_sections(c); }

}  // namespace ltk
