// An exact solver for linear models on sparse features (optimizer.type "dual_cd"): liblinear's dual
// coordinate descent for L2-regularised, L2-loss (squared hinge) support vector classification
// (Hsieh et al., ICML 2008; Fan et al., JMLR 2008), the solver behind scikit-learn's LinearSVC,
// with shrinking, one problem per class (one-vs-rest) solved on several threads.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "ltk/data/sparse_rows.h"

namespace ltk {

struct DualCdOptions {
  double tol = 1e-4;        ///< stop when the projected gradient's spread is below this (liblinear's eps)
  int64_t max_iter = 1000;  ///< passes over the (active) samples at most
  uint64_t seed = 0;        ///< the order of each pass
};

struct DualCdResult {
  std::vector<double> w;   ///< num_cols weights
  int64_t iterations = 0;  ///< passes made
  bool converged = false;  ///< the stopping criterion was met within max_iter
  double primal = 0;       ///< 1/2 ||w||^2 + sum_i c_i max(0, 1 - y_i w.x_i)^2
  double dual = 0;         ///< the dual objective at the solution (primal - dual >= 0 is the gap)
};

/// Solves min_w 1/2 ||w||^2 + sum_i c_i max(0, 1 - y_i w.x_i)^2 for labels y_i in {+1, -1} and
/// per-sample costs c_i > 0 (C, times a class weight).
DualCdResult solve_l2_svc_dual(const SparseRows& x, const std::vector<int8_t>& y, const std::vector<double>& cost,
                               const DualCdOptions& options);

/// Solves min_w 1/2 ||w||^2 + sum_i c_i log(1 + exp(-y_i w.x_i)), L2-regularised logistic
/// regression, by liblinear's dual coordinate descent with a Newton step per coordinate (Yu, Huang
/// and Lin, Machine Learning 2011): the optimum scikit-learn's LogisticRegression(solver="liblinear")
/// finds. Stops when a pass's largest |gradient| is below options.tol. `primal` and `dual` as above,
/// with the logistic loss.
DualCdResult solve_l2_lr_dual(const SparseRows& x, const std::vector<int8_t>& y, const std::vector<double>& cost,
                              const DualCdOptions& options);

/// Solves min_w 1/2 ||w||^2 + C sum_i (y_i - w.x_i)^2, ridge regression with scikit-learn's C (its
/// LinearSVR with loss "squared_epsilon_insensitive" and epsilon 0), by liblinear's dual coordinate
/// descent for the L2-loss SVR, with shrinking; stops when a pass's summed violation falls below
/// options.tol times the first pass's. `primal` and `dual` as above, with the squared error.
DualCdResult solve_l2_svr_dual(const SparseRows& x, const std::vector<double>& y, double C,
                               const DualCdOptions& options);

/// Fills problem k's labels (+1/-1) and per-sample costs, both already of one entry per row.
using ProblemMaker = std::function<void(int64_t k, std::vector<int8_t>& y, std::vector<double>& cost)>;

/// Solves `problems` independent binary problems on the same rows (squared hinge, or logistic
/// regression when `logistic`), problem k's labels and costs from `make`, on up to `threads`
/// threads; each's order is seeded by (seed, k), so the result does not depend on the thread count.
/// `on_solved(k, result)`, when given, runs on the solving thread as soon as problem k is solved.
std::vector<DualCdResult> solve_independent(const SparseRows& x, int64_t problems, const ProblemMaker& make,
                                            bool logistic, const DualCdOptions& options, int threads,
                                            const std::function<void(int64_t, DualCdResult&)>& on_solved = {});

/// One-vs-rest over `num_classes` classes: problem k has y = +1 for class k and -1 otherwise, cost
/// C * class_weights[k] for its positives and C for the rest (liblinear's; no weights: C for all).
/// Problems run on up to `threads` threads; each's order is seeded by (seed, k), so the result does
/// not depend on the thread count.
/// `on_solved(k, result)`, when given, runs on the solving thread as soon as problem k is solved
/// (it may take result.w: a caller that stores each solution at once never holds them all).
std::vector<DualCdResult> solve_one_vs_rest(const SparseRows& x, const std::vector<int64_t>& labels,
                                            int64_t num_classes, double C, const std::vector<double>& class_weights,
                                            const DualCdOptions& options, int threads,
                                            const std::function<void(int64_t, DualCdResult&)>& on_solved = {});

}  // namespace ltk
