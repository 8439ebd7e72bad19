#include "ltk/train/dual_cd.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <system_error>
#include <thread>

#include "ltk/core/error.h"

namespace ltk {

namespace {

/// The order of each pass: splitmix64 and Lemire's multiply-shift range reduction (a 64-bit
/// modulo per sample per pass cost more than the updates of the shortest rows).
class Shuffler {
 public:
  explicit Shuffler(uint64_t seed) : state_(seed) {}
  int64_t below(int64_t n) {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<int64_t>((static_cast<unsigned __int128>(z) * static_cast<uint64_t>(n)) >> 64);
  }

 private:
  uint64_t state_;
};

double dot(const SparseRows& x, int64_t i, const std::vector<double>& w) {
  double s = 0;
  for (int64_t k = x.offsets[i]; k < x.offsets[i + 1]; ++k) s += w[static_cast<size_t>(x.cols[k])] * x.values[k];
  return s;
}

void axpy(const SparseRows& x, int64_t i, double a, std::vector<double>& w) {
  for (int64_t k = x.offsets[i]; k < x.offsets[i + 1]; ++k) w[static_cast<size_t>(x.cols[k])] += a * x.values[k];
}

void objectives(const SparseRows& x, const std::vector<int8_t>& y, const std::vector<double>& cost,
                const std::vector<double>& alpha, DualCdResult& r) {
  double ww = 0;
  for (double v : r.w) ww += v * v;
  double loss = 0, sum_alpha = 0, alpha_penalty = 0;
  for (int64_t i = 0; i < x.rows(); ++i) {
    const double margin = std::max(0.0, 1 - y[static_cast<size_t>(i)] * dot(x, i, r.w));
    loss += cost[static_cast<size_t>(i)] * margin * margin;
    const double a = alpha[static_cast<size_t>(i)];
    sum_alpha += a;
    alpha_penalty += a * a / (4 * cost[static_cast<size_t>(i)]);
  }
  r.primal = ww / 2 + loss;
  r.dual = sum_alpha - ww / 2 - alpha_penalty;
}

}  // namespace

DualCdResult solve_l2_svc_dual(const SparseRows& x, const std::vector<int8_t>& y, const std::vector<double>& cost,
                               const DualCdOptions& options) {
  const int64_t n = x.rows();
  if (static_cast<int64_t>(y.size()) != n || static_cast<int64_t>(cost.size()) != n)
    throw Error("solve_l2_svc_dual: one label and one cost per row expected");
  constexpr double kInf = std::numeric_limits<double>::infinity();
  DualCdResult r;
  r.w.assign(static_cast<size_t>(x.num_cols), 0.0);
  std::vector<double> alpha(static_cast<size_t>(n), 0.0), diag(static_cast<size_t>(n)), qd(static_cast<size_t>(n));
  std::vector<int64_t> index(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    diag[i] = 0.5 / cost[i];  // the L2 loss as a quadratic term of the dual
    double xx = 0;
    for (int64_t k = x.offsets[i]; k < x.offsets[i + 1]; ++k) xx += x.values[k] * x.values[k];
    qd[i] = diag[i] + xx;
    index[i] = i;
  }
  Shuffler rng(options.seed);
  int64_t active = n;
  double pg_max_old = kInf;  // (no upper bound on alpha with the squared hinge: only the lower one shrinks)
  for (r.iterations = 0; r.iterations < options.max_iter;) {
    double pg_max = -kInf, pg_min = kInf;
    for (int64_t s = 0; s < active; ++s) std::swap(index[s], index[s + rng.below(active - s)]);
    for (int64_t s = 0; s < active; ++s) {
      const int64_t i = index[s];
      const double yi = y[i];
      const double g = yi * dot(x, i, r.w) - 1 + alpha[i] * diag[i];
      double pg = 0;
      if (alpha[i] == 0) {
        if (g > pg_max_old) {  // shrink: at its bound and likely to stay there
          std::swap(index[s], index[--active]);
          --s;
          continue;
        }
        if (g < 0) pg = g;
      } else {
        pg = g;
      }
      pg_max = std::max(pg_max, pg);
      pg_min = std::min(pg_min, pg);
      if (std::abs(pg) > 1e-12) {
        const double old = alpha[i];
        alpha[i] = std::max(alpha[i] - g / qd[i], 0.0);
        axpy(x, i, (alpha[i] - old) * yi, r.w);
      }
    }
    ++r.iterations;
    if (pg_max - pg_min <= options.tol) {
      if (active == n) {
        r.converged = true;
        break;
      }
      active = n;  // converged on the active set: check every sample once more
      pg_max_old = kInf;
      continue;
    }
    pg_max_old = pg_max <= 0 ? kInf : pg_max;
  }
  objectives(x, y, cost, alpha, r);
  return r;
}

DualCdResult solve_l2_lr_dual(const SparseRows& x, const std::vector<int8_t>& y, const std::vector<double>& cost,
                              const DualCdOptions& options) {
  // Each sample has two dual variables, alpha_i and C_i - alpha_i (liblinear's alpha[2i], alpha[2i+1]);
  // a coordinate's sub-problem g(z) = z log z + (C - z) log(C - z) + a/2 (z - z0)^2 + s b (z - z0)
  // is solved by Newton steps kept inside (0, C).
  const int64_t n = x.rows();
  if (static_cast<int64_t>(y.size()) != n || static_cast<int64_t>(cost.size()) != n)
    throw Error("solve_l2_lr_dual: one label and one cost per row expected");
  constexpr int kMaxInner = 100;
  DualCdResult r;
  r.w.assign(static_cast<size_t>(x.num_cols), 0.0);
  std::vector<double> alpha(static_cast<size_t>(2 * n)), xx(static_cast<size_t>(n));
  std::vector<int64_t> index(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double C = cost[i];
    alpha[2 * i] = std::min(0.001 * C, 1e-8);
    alpha[2 * i + 1] = C - alpha[2 * i];
    double sq = 0;
    for (int64_t k = x.offsets[i]; k < x.offsets[i + 1]; ++k) sq += x.values[k] * x.values[k];
    xx[i] = sq;
    axpy(x, i, y[i] * alpha[2 * i], r.w);
    index[i] = i;
  }
  Shuffler rng(options.seed);
  double inner_eps = 1e-2;
  const double inner_eps_min = std::min(1e-8, options.tol);
  for (r.iterations = 0; r.iterations < options.max_iter;) {
    for (int64_t s = 0; s < n; ++s) std::swap(index[s], index[s + rng.below(n - s)]);
    int64_t newton_steps = 0;
    double g_max = 0;
    for (int64_t s = 0; s < n; ++s) {
      const int64_t i = index[s];
      const double C = cost[i], a = xx[i], b = y[i] * dot(x, i, r.w);
      int64_t first = 2 * i, second = 2 * i + 1;
      double sign = 1;
      if (0.5 * a * (alpha[second] - alpha[first]) + b < 0) {
        std::swap(first, second);
        sign = -1;
      }
      const double z0 = alpha[first];
      double z = z0;
      if (C - z < 0.5 * C) z *= 0.1;
      double gp = a * (z - z0) + sign * b + std::log(z / (C - z));
      g_max = std::max(g_max, std::abs(gp));
      int inner = 0;
      for (; inner <= kMaxInner && std::abs(gp) >= inner_eps; ++inner, ++newton_steps) {
        const double gpp = a + C / (C - z) / z;
        const double next = z - gp / gpp;
        z = next <= 0 ? z * 0.1 : next;  // a step below 0 shrinks z instead (next < C always)
        gp = a * (z - z0) + sign * b + std::log(z / (C - z));
      }
      if (inner > 0) {
        alpha[first] = z;
        alpha[second] = C - z;
        axpy(x, i, sign * (z - z0) * y[i], r.w);
      }
    }
    ++r.iterations;
    if (g_max < options.tol) {
      r.converged = true;
      break;
    }
    if (newton_steps <= n / 10) inner_eps = std::max(inner_eps_min, 0.1 * inner_eps);
  }
  double ww = 0;
  for (double v : r.w) ww += v * v;
  double loss = 0, entropy = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double m = y[i] * dot(x, i, r.w);
    loss += cost[i] * (m > 0 ? std::log1p(std::exp(-m)) : -m + std::log1p(std::exp(m)));
    const double a1 = alpha[2 * i], a2 = alpha[2 * i + 1], C = cost[i];
    entropy += a1 * std::log(a1) + a2 * std::log(a2) - C * std::log(C);
  }
  r.primal = ww / 2 + loss;
  r.dual = -ww / 2 - entropy;
  return r;
}

DualCdResult solve_l2_svr_dual(const SparseRows& x, const std::vector<double>& y, double C,
                               const DualCdOptions& options) {
  // liblinear's solve_l2r_l1l2_svr with the L2 loss and epsilon 0: beta_i unbounded, the quadratic
  // term lambda = 1/(2C), w = sum_i beta_i x_i, each coordinate's step exact (-G/H). With epsilon 0
  // no coordinate is ever shrunk (its test needs G > M and G < -M at once).
  const int64_t n = x.rows();
  if (static_cast<int64_t>(y.size()) != n) throw Error("solve_l2_svr_dual: one target per row expected");
  const double lambda = 0.5 / C;
  DualCdResult r;
  r.w.assign(static_cast<size_t>(x.num_cols), 0.0);
  std::vector<double> beta(static_cast<size_t>(n), 0.0), qd(static_cast<size_t>(n));
  std::vector<int64_t> index(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double xx = 0;
    for (int64_t k = x.offsets[i]; k < x.offsets[i + 1]; ++k) xx += x.values[k] * x.values[k];
    qd[i] = xx + lambda;
    index[i] = i;
  }
  Shuffler rng(options.seed);
  double g_norm1_init = -1;
  for (r.iterations = 0; r.iterations < options.max_iter;) {
    double g_norm1 = 0;
    for (int64_t s = 0; s < n; ++s) std::swap(index[s], index[s + rng.below(n - s)]);
    for (int64_t s = 0; s < n; ++s) {
      const int64_t i = index[s];
      const double g = -y[i] + lambda * beta[i] + dot(x, i, r.w);
      g_norm1 += std::abs(g);
      const double d = -g / qd[i];
      if (std::abs(d) < 1e-12) continue;
      beta[i] += d;
      axpy(x, i, d, r.w);
    }
    if (g_norm1_init < 0) g_norm1_init = g_norm1;
    ++r.iterations;
    if (g_norm1 <= options.tol * g_norm1_init) {
      r.converged = true;
      break;
    }
  }
  double ww = 0;
  for (double v : r.w) ww += v * v;
  double loss = 0, yb = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double residual = y[i] - dot(x, i, r.w);
    loss += residual * residual;
    yb += y[i] * beta[i];
    bb += beta[i] * beta[i];
  }
  r.primal = ww / 2 + C * loss;
  r.dual = yb - ww / 2 - bb / (4 * C);
  return r;
}

std::vector<DualCdResult> solve_independent(const SparseRows& x, int64_t problems, const ProblemMaker& make,
                                            bool logistic, const DualCdOptions& options, int threads,
                                            const std::function<void(int64_t, DualCdResult&)>& on_solved) {
  const int64_t n = x.rows();
  std::vector<DualCdResult> out(static_cast<size_t>(problems));
  std::atomic<int64_t> next{0};
  std::vector<std::exception_ptr> failures(static_cast<size_t>(problems));
  auto work = [&] {
    std::vector<int8_t> y(static_cast<size_t>(n));
    std::vector<double> cost(static_cast<size_t>(n));
    for (int64_t k; (k = next++) < problems;) {
      try {
        make(k, y, cost);
        DualCdOptions o = options;
        o.seed = options.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(k);
        out[static_cast<size_t>(k)] = logistic ? solve_l2_lr_dual(x, y, cost, o) : solve_l2_svc_dual(x, y, cost, o);
        if (on_solved) on_solved(k, out[static_cast<size_t>(k)]);
      } catch (...) {
        failures[static_cast<size_t>(k)] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  try {
    for (int t = 1; t < std::max(1, threads) && t < problems; ++t) pool.emplace_back(work);
  } catch (const std::system_error&) {  // fewer threads than asked for: the others take the problems
  }
  work();
  for (auto& t : pool) t.join();
  for (auto& failure : failures)  // the first problem's error, whichever thread met it
    if (failure) std::rethrow_exception(failure);
  return out;
}

std::vector<DualCdResult> solve_one_vs_rest(const SparseRows& x, const std::vector<int64_t>& labels,
                                            int64_t num_classes, double C, const std::vector<double>& class_weights,
                                            const DualCdOptions& options, int threads,
                                            const std::function<void(int64_t, DualCdResult&)>& on_solved) {
  const int64_t n = x.rows();
  if (static_cast<int64_t>(labels.size()) != n) throw Error("solve_one_vs_rest: one label per row expected");
  auto make = [&](int64_t k, std::vector<int8_t>& y, std::vector<double>& cost) {
    const double positive = C * (class_weights.empty() ? 1.0 : class_weights[static_cast<size_t>(k)]);
    for (int64_t i = 0; i < n; ++i) {
      y[i] = labels[i] == k ? 1 : -1;
      cost[i] = labels[i] == k ? positive : C;
    }
  };
  return solve_independent(x, num_classes, make, /*logistic=*/false, options, threads, on_solved);
}

}  // namespace ltk
