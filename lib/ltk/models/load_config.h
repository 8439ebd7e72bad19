// Reading a config with every model's keys checked: parse_config and load_config of
// ltk/config/config.h with the model registry's schema (registry.cpp). No LibTorch here: the public
// facade (ltk/ltk.h) includes it.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "ltk/config/config.h"

namespace ltk {

/// A JSON document (already overridden) as a validated Config, every section checked, the model
/// section by its own registry entry; `default_name` fills `name` when the document has none.
/// Throws ConfigError naming the key at fault and what to do.
Config parse_config(const nlohmann::json& j, const std::string& default_name = "experiment");
/// A JSON config file (errors name file:line:column) with `overrides` ("a.b=value", as ltk-train's
/// --set) applied, parsed as parse_config.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

}  // namespace ltk
