// Small string helpers shared by the config, data and app code.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ltk {

/// Splits on every occurrence of `sep` (empty fields kept).
std::vector<std::string_view> split(std::string_view s, char sep);

/// Removes ASCII whitespace at both ends.
std::string_view trim(std::string_view s);

/// Joins with `sep`.
std::string join(const std::vector<std::string>& parts, std::string_view sep);

/// Levenshtein distance, for "did you mean" suggestions.
size_t edit_distance(std::string_view a, std::string_view b);

/// " (did you mean 'x'?)" for the closest candidate within a small distance, else "".
std::string did_you_mean(std::string_view wrong, const std::vector<std::string>& candidates);

/// "'a', 'b' or 'c'" for error messages listing the allowed values.
std::string quoted_list(const std::vector<std::string>& values);

/// Folds every run of whitespace (ASCII and \r) to one space and trims the ends.
std::string fold_whitespace(std::string_view s);

/// A human-readable byte count ("1.5 MiB").
std::string human_bytes(double bytes);

}  // namespace ltk
