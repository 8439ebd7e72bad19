// Is run A really better than run B on the same data? McNemar's exact test on the samples where
// exactly one of them is right, and a paired bootstrap interval for the difference in accuracy.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
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

/// Configuration A against configuration B when each was trained several times (seeds, folds):
/// over the test samples and over the trials.
struct GroupComparison {
  int64_t samples = 0;
  int64_t trials_a = 0, trials_b = 0;
  double accuracy_a = 0, accuracy_b = 0;  ///< mean accuracy over each one's trials
  /// Paired bootstrap over test samples of accuracy_a - accuracy_b (each sample's correctness
  /// averaged over the trials): the 95% percentile interval and the two-sided p-value
  /// 2 min(P(d* <= 0), P(d* >= 0)).
  double diff_low = 0, diff_high = 0, p_samples = 1;
  /// Welch's unequal-variance t-test on the trials' metric values (the finite ones); NaN when a
  /// side has fewer than 2.
  double mean_a = 0, mean_b = 0, p_trials = std::numeric_limits<double>::quiet_NaN();
  /// The bootstrap interval excludes 0.
  bool significant_samples() const { return diff_low > 0 || diff_high < 0; }
  /// Welch's p < 0.05.
  bool significant_trials() const { return p_trials == p_trials && p_trials < 0.05; }
  nlohmann::json to_json() const;
};

/// `right_a[t][i]`: whether A's trial t got test sample i right (every trial the same samples);
/// `metric_a[t]`: trial t's test metric (Welch's test).
GroupComparison compare_groups(const std::vector<std::vector<int>>& right_a, const std::vector<std::vector<int>>& right_b,
                               const std::vector<double>& metric_a, const std::vector<double>& metric_b,
                               int resamples = 2000, uint64_t seed = 1);

/// Welch's two-sided t-test p-value for the means of `a` and `b` (each >= 2 values), as
/// scipy.stats.ttest_ind(a, b, equal_var=False). Both without spread: 1 for equal means, else 0;
/// NaN when a value is not finite.
double welch_t_test(const std::vector<double>& a, const std::vector<double>& b);

/// The regularised incomplete beta function I_x(a, b) (x in [0, 1], a, b > 0).
double incomplete_beta(double x, double a, double b);

/// Two-sided exact binomial test of k successes in n trials with p = 1/2.
double binomial_two_sided(int64_t k, int64_t n);

}  // namespace ltk
