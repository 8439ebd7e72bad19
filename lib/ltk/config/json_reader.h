// Reads one JSON object into typed fields, remembering which keys were used so that an
// unknown key is an error with a "did you mean" suggestion. Paths are dotted config keys.
#pragma once

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

#include "ltk/core/error.h"

namespace ltk {

class JsonReader {
 public:
  /// `j` must be an object (or null, read as an empty object); `path` is its config key.
  JsonReader(const nlohmann::json& j, std::string path);

  /// Reads `key` into `out` when present; `out` keeps its default otherwise.
  void get(const char* key, std::string& out);
  void get(const char* key, int64_t& out);
  void get(const char* key, double& out);
  void get(const char* key, bool& out);
  void get(const char* key, std::vector<int64_t>& out);

  /// Like get(), and the value must be one of `allowed`.
  void get_enum(const char* key, std::string& out, const std::vector<std::string>& allowed);

  /// The sub-object at `key` (an empty one when absent).
  JsonReader child(const char* key);

  /// The raw JSON at `key` (null when absent); marks the key as known.
  const nlohmann::json& raw(const char* key);

  /// Throws ConfigError for the first key that no get()/child()/raw() asked for.
  void finish() const;

  /// The dotted path of `key` inside this object.
  std::string key_path(const char* key) const;

 private:
  const nlohmann::json* find(const char* key);

  static const nlohmann::json kEmpty;
  const nlohmann::json& j_;
  std::string path_;
  std::set<std::string> known_;
};

/// ConfigError "config key 'path': message".
[[noreturn]] void config_fail(const std::string& path, const std::string& message);

/// Checks a numeric range and throws ConfigError naming the key otherwise.
void check_min(const std::string& path, double value, double min, bool inclusive = true);
void check_max(const std::string& path, double value, double max, bool inclusive = true);

/// A JSON value's type in words, for error messages.
std::string json_type_name(const nlohmann::json& j);

}  // namespace ltk
