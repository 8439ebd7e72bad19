// Is run A really better than run B on the same data? McNemar's exact test on the samples where
// exactly one of them is right, and a paired bootstrap interval for the difference in accuracy.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace ltk {

struct Comparison {
  int64_t samples = 0;
  double accuracy_a = 0, accuracy_b = 0;
  int64_t only_a = 0;  ///< samples A gets right and B wrong
  int64_t only_b = 0;
  double p_value = 1;  ///< McNemar, exact two-sided binomial on only_a vs only_b
  double diff_low = 0, diff_high = 0;  ///< 95% paired-bootstrap interval of accuracy_a - accuracy_b
  nlohmann::json to_json() const;
};

/// `right_a[i]` / `right_b[i]`: whether each run got sample i right.
Comparison compare_runs(const std::vector<int>& right_a, const std::vector<int>& right_b, int resamples = 2000,
                        uint64_t seed = 1);

/// Two-sided exact binomial test of k successes in n trials with p = 1/2.
double binomial_two_sided(int64_t k, int64_t n);

}  // namespace ltk
