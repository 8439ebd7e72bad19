// A config file and what it is made of: "extends" chains and ${env:...} values (config.h,
// read_config_file).
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/core/error.h"

namespace ltk {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const char* kind_of(const json& v) {
  if (v.is_object()) return "an object";
  if (v.is_array()) return "a list";
  if (v.is_string()) return "a string";
  if (v.is_number()) return "a number";
  if (v.is_boolean()) return "true or false";
  return "null";
}

std::string where(const std::string& file, const std::string& key) {
  return file + ": key '" + key + "'";
}

bool valid_env_name(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

// One string value with its ${env:NAME} and ${env:NAME:-default} replaced ($${ is a literal ${).
std::string expand(const std::string& s, const std::string& file, const std::string& key) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 3, "$${") == 0) {
      out += "${";
      i += 3;
      continue;
    }
    if (s.compare(i, 2, "${") != 0) {
      out += s[i++];
      continue;
    }
    const size_t end = s.find('}', i + 2);
    if (end == std::string::npos)
      throw ConfigError(where(file, key) + ": '${' without its closing '}' (write $${ for a literal ${)");
    const std::string ref = s.substr(i + 2, end - i - 2);
    if (ref.rfind("env:", 0) != 0)
      throw ConfigError(where(file, key) + ": unknown substitution '${" + ref +
                        "}' (ltk knows ${env:NAME} and ${env:NAME:-default}; write $${ for a literal ${)");
    std::string name = ref.substr(4), fallback;
    const size_t dash = name.find(":-");
    const bool has_default = dash != std::string::npos;
    if (has_default) {
      fallback = name.substr(dash + 2);
      name = name.substr(0, dash);
    }
    if (!valid_env_name(name))
      throw ConfigError(where(file, key) + ": '" + name +
                        "' is not an environment variable's name (letters, digits, _)");
    const char* value = std::getenv(name.c_str());
    if (value && (*value || !has_default)) {
      out += value;
    } else if (has_default) {  // unset or empty, as the shell's ${NAME:-default}
      out += fallback;
    } else {
      throw ConfigError(where(file, key) + ": the environment variable " + name +
                        " is not set (set it, or give a default: ${env:" + name + ":-VALUE})");
    }
    i = end + 1;
  }
  return out;
}

void substitute_env(json& v, const std::string& file, const std::string& key) {
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it)
      substitute_env(it.value(), file, key.empty() ? it.key() : key + "." + it.key());
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) substitute_env(v[i], file, key + "[" + std::to_string(i) + "]");
  } else if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s.find("${") != std::string::npos) v = expand(s, file, key);
  }
}

// `child` over `base`: objects merge key by key, anything else replaces; a value of another kind
// than its base's (an object for a number, a string for a list) is a mistake, not an override.
void merge_into(json& base, const json& child, const std::string& child_file, const std::string& base_file,
                const std::string& prefix) {
  for (auto it = child.begin(); it != child.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    auto found = base.find(it.key());
    if (found == base.end()) {
      base[it.key()] = it.value();
      continue;
    }
    json& b = *found;
    const json& v = it.value();
    // A section of another type (model, optimizer, scheduler, tokenizer) starts afresh: the base's
    // type-specific keys would not apply to it. class_weights ("auto", "none" or a map) and
    // threshold (a number, "tune" or a map) are replaced whole.
    const bool other_type =
        b.is_object() && v.is_object() && v.contains("type") && b.contains("type") && v["type"] != b["type"];
    const bool whole = key == "task.class_weights" || key == "task.threshold";
    if (b.is_object() && v.is_object() && !other_type && !whole) {
      merge_into(b, v, child_file, base_file, key);
      continue;
    }
    if (!whole && !b.is_null() && !v.is_null() && std::string(kind_of(b)) != kind_of(v))
      throw ConfigError(where(child_file, key) + " is " + kind_of(v) + " here but " + kind_of(b) + " in its base " +
                        base_file + ": give it the base's kind, or rename the key");
    b = v;
  }
}

json read_layer(const std::string& path, std::vector<std::string>& chain) {
  std::error_code ec;
  std::string canonical = fs::weakly_canonical(path, ec).string();
  if (ec || canonical.empty()) canonical = fs::absolute(path).lexically_normal().string();
  for (const auto& seen : chain)
    if (seen == canonical) {
      std::string cycle;
      for (const auto& c : chain) cycle += c + " -> ";
      throw ConfigError("config files extend each other in a cycle: " + cycle + canonical);
    }
  chain.push_back(canonical);
  if (fs::is_directory(path)) throw ConfigError(path + " is a directory, not a config file");
  json j = read_json_file(path);
  if (!j.is_object()) throw ConfigError(path + ": the config must be a JSON object {...}");
  substitute_env(j, path, "");
  auto ext = j.find("extends");
  if (ext == j.end()) return j;
  if (!ext->is_string() || ext->get<std::string>().empty())
    throw ConfigError(where(path, "extends") +
                      ": expected the path of a base config (a string, relative to this file)");
  const fs::path given = ext->get<std::string>();
  const std::string base_path = given.is_absolute() ? given.string() : (fs::path(path).parent_path() / given).string();
  j.erase(ext);
  if (!fs::exists(base_path))
    throw ConfigError(where(path, "extends") + ": the base config " + base_path + " does not exist");
  json merged = read_layer(base_path, chain);
  // A run's name and directory are the file's own: without them, the name comes from this file's
  // name (not the base's, whose run it would overwrite).
  merged.erase("name");
  merged.erase("output_dir");
  merge_into(merged, j, path, base_path, "");
  return merged;
}

}  // namespace

json escape_substitutions(json j) {
  if (j.is_object() || j.is_array()) {
    for (auto& v : j) v = escape_substitutions(std::move(v));
  } else if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s.find("${") == std::string::npos) return j;
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s.compare(i, 2, "${") == 0) out += '$';
      out += s[i];
    }
    return out;
  }
  return j;
}

json read_config_file(const std::string& path) {
  std::vector<std::string> chain;
  return read_layer(path, chain);
}

}  // namespace ltk
