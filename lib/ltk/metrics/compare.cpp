#include "ltk/metrics/compare.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "ltk/core/error.h"

namespace ltk {

double binomial_two_sided(int64_t k, int64_t n) {
  if (n == 0) return 1.0;
  int64_t lo = std::min(k, n - k);
  // P(X <= lo) in log space, doubled.
  double log_half_n = static_cast<double>(n) * std::log(0.5), total = 0;
  for (int64_t i = 0; i <= lo; ++i)
    total += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) + log_half_n);
  return std::min(1.0, 2 * total);
}

Comparison compare_runs(const std::vector<int>& a, const std::vector<int>& b, int resamples, uint64_t seed) {
  if (a.size() != b.size()) throw Error("compare: both runs must score the same samples");
  if (resamples < 1) throw Error("compare: the bootstrap needs at least 1 resample (got " + std::to_string(resamples) + ")");
  Comparison c;
  const auto N = static_cast<int64_t>(a.size());
  c.samples = N;
  int64_t ra = 0, rb = 0;
  for (int64_t i = 0; i < N; ++i) {
    ra += a[i];
    rb += b[i];
    c.only_a += a[i] && !b[i];
    c.only_b += !a[i] && b[i];
  }
  if (N == 0) return c;
  c.accuracy_a = static_cast<double>(ra) / static_cast<double>(N);
  c.accuracy_b = static_cast<double>(rb) / static_cast<double>(N);
  c.p_value = binomial_two_sided(c.only_a, c.only_a + c.only_b);
  std::mt19937_64 rng(seed);
  std::vector<double> diffs;
  diffs.reserve(static_cast<size_t>(resamples));
  for (int r = 0; r < resamples; ++r) {
    int64_t d = 0;
    for (int64_t i = 0; i < N; ++i) {
      auto j = static_cast<size_t>(rng() % static_cast<uint64_t>(N));
      d += a[j] - b[j];
    }
    diffs.push_back(static_cast<double>(d) / static_cast<double>(N));
  }
  std::sort(diffs.begin(), diffs.end());
  c.diff_low = diffs[static_cast<size_t>(0.025 * (resamples - 1))];
  c.diff_high = diffs[static_cast<size_t>(0.975 * (resamples - 1))];
  return c;
}

nlohmann::json Comparison::to_json() const {
  return {{"samples", samples},        {"accuracy_a", accuracy_a},    {"accuracy_b", accuracy_b},
          {"difference", accuracy_a - accuracy_b}, {"only_a_right", only_a}, {"only_b_right", only_b},
          {"mcnemar_p", p_value},      {"bootstrap_95", {diff_low, diff_high}}};
}

}  // namespace ltk
