// The model registry: every model is registered once, by name, in registry.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/models/load_config.h"
#include "ltk/models/text_model.h"

namespace ltk {

struct ModelEntry {
  std::string name;
  std::string summary;
  /// Reads the model's config section (every key checked), returns it with defaults filled.
  std::function<nlohmann::json(JsonReader&)> resolve;
  /// Builds the model from a resolved section.
  std::function<std::shared_ptr<TextModel>(const nlohmann::json&, const ModelContext&)> build;
  /// Checks of the model's keys against other sections (may be empty); throws ConfigError.
  std::function<void(const nlohmann::json& options, const Config& config)> check;
  /// Fills keys of other sections the model decides (ModelSchema::complete); may be empty.
  std::function<void(const nlohmann::json& options, const nlohmann::json& document, Config& config)> complete;
};

const std::vector<ModelEntry>& model_registry();

/// The registry as the config layer sees it: each entry validates its own section.
const ModelSchema& model_schema();

/// Validates a `model` section (its `type` picks the registry entry) and fills its defaults.
ModelConfig resolve_model_config(const nlohmann::json& section);

/// Builds the model a resolved config describes.
std::shared_ptr<TextModel> build_model(const ModelConfig& config, const ModelContext& context);

}  // namespace ltk
