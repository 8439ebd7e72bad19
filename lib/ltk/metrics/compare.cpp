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

namespace {

// The continued fraction of I_x(a, b) (modified Lentz), for x < (a + 1) / (a + b + 2).
double beta_fraction(double x, double a, double b) {
  const double tiny = 1e-300, eps = 1e-15;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  if (std::fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const double dm = m;
    // The even step, then the odd one.
    double num = dm * (b - dm) * x / ((a + 2 * dm - 1) * (a + 2 * dm));
    d = 1 + num * d;
    c = 1 + num / c;
    if (std::fabs(d) < tiny) d = tiny;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    num = -(a + dm) * (a + b + dm) * x / ((a + 2 * dm) * (a + 2 * dm + 1));
    d = 1 + num * d;
    c = 1 + num / c;
    if (std::fabs(d) < tiny) d = tiny;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double step = d * c;
    h *= step;
    if (std::fabs(step - 1) < eps) break;
  }
  return h;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

double variance_of(const std::vector<double>& v) {  // unbiased (n - 1)
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return v.size() > 1 ? s / static_cast<double>(v.size() - 1) : 0.0;
}

}  // namespace

double incomplete_beta(double x, double a, double b) {
  if (!(a > 0) || !(b > 0) || !(x >= 0) || !(x <= 1)) throw Error("incomplete_beta: needs x in [0, 1] and a, b > 0");
  if (x == 0 || x == 1) return x;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_fraction(x, a, b) / a;
  return 1 - front * beta_fraction(1 - x, b, a) / b;
}

double welch_t_test(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() < 2 || b.size() < 2) throw Error("welch_t_test: needs at least 2 values on each side");
  for (const auto* side : {&a, &b})
    for (double x : *side)
      if (!std::isfinite(x)) return std::nan("");
  const double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size());
  const double va = variance_of(a) / na, vb = variance_of(b) / nb;
  const double diff = mean_of(a) - mean_of(b);
  if (va + vb == 0) return diff == 0 ? 1.0 : 0.0;
  const double t = diff / std::sqrt(va + vb);
  const double df = (va + vb) * (va + vb) / (va * va / (na - 1) + vb * vb / (nb - 1));
  // P(|T| > |t|) for Student's t with df degrees of freedom.
  return incomplete_beta(df / (df + t * t), df / 2, 0.5);
}

GroupComparison compare_groups(const std::vector<std::vector<int>>& right_a, const std::vector<std::vector<int>>& right_b,
                               const std::vector<double>& metric_a, const std::vector<double>& metric_b, int resamples,
                               uint64_t seed) {
  if (right_a.empty() || right_b.empty()) throw Error("compare: each side needs at least one trial");
  if (resamples < 1) throw Error("compare: the bootstrap needs at least 1 resample (got " + std::to_string(resamples) + ")");
  const size_t n = right_a[0].size();
  for (const auto* side : {&right_a, &right_b})
    for (const auto& t : *side)
      if (t.size() != n) throw Error("compare: every trial must score the same samples");
  GroupComparison c;
  c.samples = static_cast<int64_t>(n);
  c.trials_a = static_cast<int64_t>(right_a.size());
  c.trials_b = static_cast<int64_t>(right_b.size());
  // Each sample's difference in correctness, averaged over each side's trials.
  std::vector<double> d(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    double sa = 0, sb = 0;
    for (const auto& t : right_a) sa += t[i];
    for (const auto& t : right_b) sb += t[i];
    sa /= static_cast<double>(right_a.size());
    sb /= static_cast<double>(right_b.size());
    c.accuracy_a += sa;
    c.accuracy_b += sb;
    d[i] = sa - sb;
  }
  if (n == 0) return c;
  c.accuracy_a /= static_cast<double>(n);
  c.accuracy_b /= static_cast<double>(n);
  std::mt19937_64 rng(seed);
  std::vector<double> diffs;
  diffs.reserve(static_cast<size_t>(resamples));
  int64_t at_most_0 = 0, at_least_0 = 0;
  for (int r = 0; r < resamples; ++r) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += d[rng() % n];
    s /= static_cast<double>(n);
    at_most_0 += s <= 0;
    at_least_0 += s >= 0;
    diffs.push_back(s);
  }
  std::sort(diffs.begin(), diffs.end());
  c.diff_low = diffs[static_cast<size_t>(0.025 * (resamples - 1))];
  c.diff_high = diffs[static_cast<size_t>(0.975 * (resamples - 1))];
  c.p_samples = std::min(1.0, 2.0 * static_cast<double>(std::min(at_most_0, at_least_0)) / resamples);
  std::vector<double> fa, fb;  // a diverged trial's infinite loss has no place in a mean
  for (double x : metric_a)
    if (std::isfinite(x)) fa.push_back(x);
  for (double x : metric_b)
    if (std::isfinite(x)) fb.push_back(x);
  c.mean_a = fa.empty() ? std::nan("") : mean_of(fa);
  c.mean_b = fb.empty() ? std::nan("") : mean_of(fb);
  c.p_trials = fa.size() >= 2 && fb.size() >= 2 ? welch_t_test(fa, fb) : std::nan("");
  return c;
}

nlohmann::json GroupComparison::to_json() const {
  nlohmann::json j = {{"samples", samples},
                      {"trials_a", trials_a},
                      {"trials_b", trials_b},
                      {"accuracy_a", accuracy_a},
                      {"accuracy_b", accuracy_b},
                      {"difference", accuracy_a - accuracy_b},
                      {"bootstrap_95", {diff_low, diff_high}},
                      {"bootstrap_p", p_samples},
                      {"significant_samples", significant_samples()},
                      {"metric_a", mean_a},
                      {"metric_b", mean_b},
                      {"significant_trials", significant_trials()}};
  j["welch_p"] = p_trials == p_trials ? nlohmann::json(p_trials) : nlohmann::json(nullptr);
  return j;
}

nlohmann::json Comparison::to_json() const {
  return {{"samples", samples},        {"accuracy_a", accuracy_a},    {"accuracy_b", accuracy_b},
          {"difference", accuracy_a - accuracy_b}, {"only_a_right", only_a}, {"only_b_right", only_b},
          {"mcnemar_p", p_value},      {"bootstrap_95", {diff_low, diff_high}}};
}

}  // namespace ltk
