// The model registry: every model is registered once, by name, in registry.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/models/text_model.h"

namespace ltk {

struct ModelEntry {
  std::string name;
  std::string summary;
  /// Reads the model's config section (every key checked), returns it with defaults filled.
  std::function<nlohmann::json(JsonReader&)> resolve;
  /// Builds the model from a resolved section.
  std::function<std::shared_ptr<TextModel>(const nlohmann::json&, const ModelContext&)> build;
};

const std::vector<ModelEntry>& model_registry();

/// Validates a `model` section (its `type` picks the registry entry) and fills its defaults.
ModelConfig resolve_model_config(const nlohmann::json& section, const std::string& path = "model");

/// Builds the model a resolved config describes.
std::shared_ptr<TextModel> build_model(const ModelConfig& config, const ModelContext& context);

}  // namespace ltk
