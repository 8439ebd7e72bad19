// A config section's keys, each defined once: its name, the struct member that holds it (whose
// initializer is its default) and its check. Reading a section and writing it back (to_json) both
// come from the table, so a key cannot be parsed but not written, or written under another name.
// Internal to lib/ltk/config.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <variant>
#include <vector>

#include "ltk/config/json_reader.h"

namespace ltk::config_detail {

/// What a value must satisfy.
struct Check {
  enum Kind { none, min, range, one_of } kind = none;
  double lo = 0, hi = 0;
  bool lo_inclusive = true, hi_inclusive = true;
  std::vector<std::string> allowed;
};

inline Check any() { return {}; }
/// >= lo (or > lo).
inline Check at_least(double lo, bool inclusive = true) { return {Check::min, lo, 0, inclusive, true, {}}; }
/// Between lo and hi, each end inclusive or not.
inline Check between(double lo, double hi, bool lo_inclusive = true, bool hi_inclusive = true) {
  return {Check::range, lo, hi, lo_inclusive, hi_inclusive, {}};
}
/// One of the listed strings.
inline Check one_of(std::vector<std::string> allowed) { return {Check::one_of, 0, 0, true, true, std::move(allowed)}; }

template <typename S>
struct Field {
  const char* key;
  std::variant<std::string S::*, int64_t S::*, double S::*, bool S::*> member;
  Check check = {};
};

/// Reads every field of `fields` present in `r` into `out`, and checks it.
template <typename S>
void read_fields(JsonReader& r, S& out, const std::vector<Field<S>>& fields) {
  for (const auto& f : fields) {
    std::visit(
        [&](auto member) {
          auto& value = out.*member;
          using T = std::decay_t<decltype(value)>;
          if constexpr (std::is_same_v<T, std::string>) {
            if (f.check.kind == Check::one_of) {
              r.get_enum(f.key, value, f.check.allowed);
              return;
            }
            r.get(f.key, value);
          } else {
            r.get(f.key, value);
            if constexpr (!std::is_same_v<T, bool>) {
              const auto v = static_cast<double>(value);
              if (f.check.kind == Check::min || f.check.kind == Check::range)
                check_min(r.key_path(f.key), v, f.check.lo, f.check.lo_inclusive);
              if (f.check.kind == Check::range) check_max(r.key_path(f.key), v, f.check.hi, f.check.hi_inclusive);
            }
          }
        },
        f.member);
  }
}

/// The fields of `in` as a JSON object, by key.
template <typename S>
nlohmann::json write_fields(const S& in, const std::vector<Field<S>>& fields) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& f : fields) std::visit([&](auto member) { j[f.key] = in.*member; }, f.member);
  return j;
}

}  // namespace ltk::config_detail
