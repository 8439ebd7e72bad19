#include "ltk/config/json_reader.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

#include "ltk/core/strings.h"

namespace ltk {

const nlohmann::json JsonReader::kEmpty = nlohmann::json::object();

void config_fail(const std::string& path, const std::string& message) {
  throw ConfigError("config key '" + path + "': " + message);
}

void check_min(const std::string& path, double value, double min, bool inclusive) {
  if (inclusive ? value < min : value <= min)
    config_fail(path, fmt::format("must be {} {} (got {})", inclusive ? ">=" : ">", min, value));
}

void check_max(const std::string& path, double value, double max, bool inclusive) {
  if (inclusive ? value > max : value >= max)
    config_fail(path, fmt::format("must be {} {} (got {})", inclusive ? "<=" : "<", max, value));
}

std::string json_type_name(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::string: return "a string " + j.dump();
    case nlohmann::json::value_t::boolean: return std::string("the boolean ") + j.dump();
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "the integer " + j.dump();
    case nlohmann::json::value_t::number_float: return "the number " + j.dump();
    default: return "an unsupported value";
  }
}

JsonReader::JsonReader(const nlohmann::json& j, std::string path)
    : j_(j.is_null() ? kEmpty : j), path_(std::move(path)) {
  if (!j_.is_object())
    config_fail(path_, "expected an object {...}, got " + json_type_name(j_));
}

std::string JsonReader::key_path(const char* key) const {
  return path_.empty() ? std::string(key) : path_ + "." + key;
}

const nlohmann::json* JsonReader::find(const char* key) {
  known_.insert(key);
  auto it = j_.find(key);
  if (it == j_.end()) return nullptr;
  return &*it;
}

void JsonReader::get(const char* key, std::string& out) {
  if (auto v = find(key)) {
    if (!v->is_string()) config_fail(key_path(key), "expected a string, got " + json_type_name(*v));
    out = v->get<std::string>();
  }
}

void JsonReader::get(const char* key, int64_t& out) {
  if (auto v = find(key)) {
    if (v->is_number_float()) {
      // A double converts to int64 only inside its range (beyond it the cast is undefined):
      // [-2^63, 2^63) holds exactly the doubles that fit.
      const double d = v->get<double>();
      constexpr double kLimit = 9223372036854775808.0;  // 2^63
      if (!(d >= -kLimit && d < kLimit) || d != std::trunc(d))
        config_fail(key_path(key), "expected an integer, got " + json_type_name(*v));
      out = static_cast<int64_t>(d);
      return;
    }
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      config_fail(key_path(key), "expected an integer up to 2^63-1, got " + json_type_name(*v));
    if (!v->is_number_integer())
      config_fail(key_path(key), "expected an integer, got " + json_type_name(*v));
    out = v->get<int64_t>();
  }
}

void JsonReader::get(const char* key, double& out) {
  if (auto v = find(key)) {
    if (!v->is_number()) config_fail(key_path(key), "expected a number, got " + json_type_name(*v));
    out = v->get<double>();
  }
}

void JsonReader::get(const char* key, bool& out) {
  if (auto v = find(key)) {
    if (!v->is_boolean())
      config_fail(key_path(key), "expected true or false, got " + json_type_name(*v));
    out = v->get<bool>();
  }
}

void JsonReader::get(const char* key, std::vector<int64_t>& out) {
  if (auto v = find(key)) {
    if (!v->is_array()) config_fail(key_path(key), "expected an array of integers, got " + json_type_name(*v));
    std::vector<int64_t> values;
    for (const auto& e : *v) {
      if (!e.is_number_integer())
        config_fail(key_path(key), "expected an array of integers, found " + json_type_name(e));
      values.push_back(e.get<int64_t>());
    }
    out = std::move(values);
  }
}

void JsonReader::get_enum(const char* key, std::string& out, const std::vector<std::string>& allowed) {
  get(key, out);
  if (std::find(allowed.begin(), allowed.end(), out) == allowed.end())
    config_fail(key_path(key), "unknown value '" + out + "'" + did_you_mean(out, allowed) +
                                   "; allowed: " + quoted_list(allowed));
}

JsonReader JsonReader::child(const char* key) {
  const nlohmann::json* v = find(key);
  return JsonReader(v ? *v : kEmpty, key_path(key));
}

const nlohmann::json& JsonReader::raw(const char* key) {
  static const nlohmann::json null_value;
  const nlohmann::json* v = find(key);
  return v ? *v : null_value;
}

void JsonReader::finish() const {
  std::vector<std::string> known(known_.begin(), known_.end());
  for (auto it = j_.begin(); it != j_.end(); ++it) {
    if (known_.count(it.key())) continue;
    std::string where = path_.empty() ? "at the top level" : "in '" + path_ + "'";
    throw ConfigError("unknown config key '" + (path_.empty() ? it.key() : path_ + "." + it.key()) +
                      "'" + did_you_mean(it.key(), known) + "; keys allowed " + where + ": " +
                      join(known, ", "));
  }
}

}  // namespace ltk
