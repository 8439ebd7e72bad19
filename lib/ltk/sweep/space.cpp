// The search space of a sweep: its keys and their values or distributions, the grid, seeded draws.
#include "ltk/sweep/sweep.h"

#include <fmt/format.h>

#include <cmath>
#include <random>
#include <set>

#include "ltk/config/config.h"
#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/core/strings.h"

namespace ltk::sweep {

bool Space::has_distributions() const {
  return std::any_of(dims.begin(), dims.end(), [](const Dimension& d) { return !d.distribution.empty(); });
}

Space parse_space(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || j.empty())
    throw ConfigError(where +
                      ": the space must be a non-empty JSON object {\"config.key\": [values] | {\"log_uniform\": "
                      "[low, high]}, ...}");
  Space space;
  for (auto it = j.begin(); it != j.end(); ++it) {  // nlohmann's objects are sorted by key
    Dimension d;
    d.key = it.key();
    const auto& v = it.value();
    const std::string at = where + ": key '" + d.key + "'";
    if (d.key.empty() || d.key.front() == '.' || d.key.back() == '.')
      throw ConfigError(at + ": not a config key path like optimizer.lr");
    if (d.key == "output_dir" || d.key == "seed")
      throw ConfigError(at + ": the sweep sets it for each trial (seeds: --seeds N)");
    if (v.is_array()) {
      if (v.empty()) throw ConfigError(at + ": an empty list of values");
      std::set<std::string> seen;
      for (const auto& x : v)
        if (!seen.insert(x.dump()).second) throw ConfigError(at + ": the value " + x.dump() + " is listed twice");
      d.values = v;
    } else if (v.is_object() && v.size() == 1) {
      d.distribution = v.begin().key();
      const auto& range = v.begin().value();
      if (d.distribution != "uniform" && d.distribution != "log_uniform" && d.distribution != "int_uniform")
        throw ConfigError(at + ": unknown distribution '" + d.distribution +
                          "' (expected uniform, log_uniform or int_uniform)");
      if (!range.is_array() || range.size() != 2 || !range[0].is_number() || !range[1].is_number())
        throw ConfigError(at + ": " + d.distribution + " takes [low, high], got " + range.dump());
      d.low = range[0].get<double>();
      d.high = range[1].get<double>();
      if (!(d.low < d.high)) throw ConfigError(at + ": " + d.distribution + " needs low < high, got " + range.dump());
      if (d.distribution == "log_uniform" && !(d.low > 0))
        throw ConfigError(at + ": log_uniform needs low > 0, got " + range.dump());
      if (d.distribution == "int_uniform" && (d.low != std::floor(d.low) || d.high != std::floor(d.high) ||
                                              std::fabs(d.low) > 1e15 || std::fabs(d.high) > 1e15))
        throw ConfigError(at + ": int_uniform takes integers within +-1e15, got " + range.dump());
    } else {
      throw ConfigError(at +
                        ": expected a list of values or {\"uniform\"|\"log_uniform\"|\"int_uniform\": [low, high]}, "
                        "got " +
                        v.dump());
    }
    space.dims.push_back(std::move(d));
  }
  return space;
}

std::vector<nlohmann::json> grid(const Space& space) {
  size_t total = 1;
  for (const auto& d : space.dims) {
    if (!d.distribution.empty())
      throw ConfigError("the grid needs lists of values: key '" + d.key + "' is a " + d.distribution +
                        " distribution; use --strategy random --trials K");
    total *= d.values.size();
    if (total > 100000)
      throw ConfigError("the grid has more than 100000 configurations: use --strategy random --trials K");
  }
  std::vector<nlohmann::json> out;
  std::vector<size_t> index(space.dims.size(), 0);
  for (size_t n = 0; n < total; ++n) {
    nlohmann::json a = nlohmann::json::object();
    for (size_t k = 0; k < space.dims.size(); ++k) a[space.dims[k].key] = space.dims[k].values[index[k]];
    out.push_back(std::move(a));
    for (size_t k = space.dims.size(); k-- > 0;) {  // the last key fastest
      if (++index[k] < space.dims[k].values.size()) break;
      index[k] = 0;
    }
  }
  return out;
}

namespace {

double round_significant(double x, int digits) {
  if (x == 0 || !std::isfinite(x)) return x;
  const double scale = std::pow(10.0, digits - 1 - static_cast<int>(std::floor(std::log10(std::fabs(x)))));
  return std::round(x * scale) / scale;
}

// The uniform double in [0, 1) of one draw (53 bits), the same on every platform.
double unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace

std::vector<nlohmann::json> random_draws(const Space& space, int64_t k, uint64_t seed) {
  if (k < 1) throw ConfigError("--trials must be >= 1 for a random search");
  std::mt19937_64 rng(seed);
  std::vector<nlohmann::json> out;
  std::set<std::string> seen;
  for (int64_t attempt = 0; static_cast<int64_t>(out.size()) < k && attempt < 100 * k; ++attempt) {
    nlohmann::json a = nlohmann::json::object();
    for (const auto& d : space.dims) {
      const double u = unit(rng);
      if (d.distribution.empty()) {
        a[d.key] =
            d.values[std::min(d.values.size() - 1, static_cast<size_t>(u * static_cast<double>(d.values.size())))];
      } else if (d.distribution == "uniform") {
        a[d.key] = std::clamp(round_significant(d.low + u * (d.high - d.low), 4), d.low, d.high);
      } else if (d.distribution == "log_uniform") {
        a[d.key] = std::clamp(
            round_significant(std::exp(std::log(d.low) + u * (std::log(d.high) - std::log(d.low))), 4), d.low, d.high);
      } else {  // int_uniform, both ends included
        const auto lo = static_cast<int64_t>(d.low), hi = static_cast<int64_t>(d.high);
        a[d.key] = std::min(hi, lo + static_cast<int64_t>(u * static_cast<double>(hi - lo + 1)));
      }
    }
    if (seen.insert(a.dump()).second) out.push_back(std::move(a));
  }
  if (static_cast<int64_t>(out.size()) < k)
    log::warn("[sweep] the space holds only {} distinct configurations of the {} asked for", out.size(), k);
  return out;
}

}  // namespace ltk::sweep
