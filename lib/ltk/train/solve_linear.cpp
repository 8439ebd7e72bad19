// optimizer.type "dual_cd": the linear model's fit without the loop (phases.h). The training split's
// tf-idf rows are built once, as one sparse matrix with scikit-learn's intercept column (value
// model.intercept_scaling, penalised like every weight), and solved exactly: LinearSVC's problem.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/models/linear.h"
#include "ltk/train/dual_cd.h"
#include "ltk/train/phases.h"

namespace ltk {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// Where each problem's weights go as soon as it is solved (so that K weight vectors are never
/// held at once): column k of the model's W, written in place on the CPU, and the bias, the
/// intercept column's weight times its value. store() may run on several threads for distinct k.
class SolutionSink {
 public:
  SolutionSink(LinearImpl& linear, double intercept)
      : linear_(linear), intercept_(intercept), V_(linear.options.vocab_size()), K_(linear.options.num_outputs()) {
    const torch::Tensor& weight = linear.weight->weight;
    in_place_ = weight.device().is_cpu() && weight.is_contiguous();
    W_ = in_place_ ? weight.detach() : torch::empty({V_, K_}, weight.options().device(torch::kCPU));
    bias_.assign(static_cast<size_t>(K_), 0.0);
  }
  /// Column k from `r.w` times `sign`; frees r.w unless `keep`.
  void store(int64_t k, DualCdResult& r, double sign = 1, bool keep = false) {
    auto column = W_.select(1, k);
    AT_DISPATCH_FLOATING_TYPES(W_.scalar_type(), "store", [&] {
      auto* out = column.data_ptr<scalar_t>();
      for (int64_t f = 0; f < V_; ++f) out[f * K_] = static_cast<scalar_t>(sign * r.w[static_cast<size_t>(f)]);
    });
    bias_[static_cast<size_t>(k)] = sign * r.w[static_cast<size_t>(V_)] * intercept_;
    if (!keep) std::vector<double>().swap(r.w);
  }
  void finish() {
    torch::NoGradGuard no_grad;
    if (!in_place_) linear_.weight->weight.copy_(W_);
    linear_.bias.copy_(torch::tensor(bias_, torch::kDouble));
  }

 private:
  LinearImpl& linear_;
  double intercept_;
  int64_t V_, K_;
  bool in_place_ = false;
  torch::Tensor W_;
  std::vector<double> bias_;
};

/// Solves the run's problems on rows `x` into `sink`: one per class (one-vs-rest), or one for a
/// binary task or two classes, as liblinear solves them (class 0's weights are then the negation of
/// class 1's). Returns the results without their weights (one per problem).
std::vector<DualCdResult> solve_problems(const RunContext& ctx, const PreparedData& data, const SparseRows& x,
                                         int64_t K, bool logistic, SolutionSink& sink) {
  const Config& config = ctx.config;
  const bool binary = config.task.type == "binary";
  const double C = config.model.options.at("C").get<double>();
  DualCdOptions options;
  options.tol = config.optimizer.tol;
  options.max_iter = config.optimizer.max_iter;
  options.seed = config.seed;
  if (config.task.type == "regression") {  // ridge: one problem on the values
    std::vector<double> y(static_cast<size_t>(x.rows()));
    for (int64_t i = 0; i < x.rows(); ++i) y[static_cast<size_t>(i)] = data.train.value(i);
    DualCdResult r = solve_l2_svr_dual(x, y, C, options);
    sink.store(0, r);
    return {r};
  }
  if (config.task.type == "multilabel") {  // one problem per label: is it in the sample's set?
    std::vector<std::vector<int64_t>> sets(static_cast<size_t>(x.rows()));
    for (int64_t i = 0; i < x.rows(); ++i) sets[static_cast<size_t>(i)] = data.train.labels(i);
    const auto& cw = data.class_weights;
    auto make = [&](int64_t k, std::vector<int8_t>& y, std::vector<double>& cost) {
      for (size_t i = 0; i < y.size(); ++i) {
        const bool in = std::find(sets[i].begin(), sets[i].end(), k) != sets[i].end();
        y[i] = in ? 1 : -1;
        cost[i] = in && !cw.empty() ? C * cw[static_cast<size_t>(k)] : C;  // a label's weight scales its positives
      }
    };
    return solve_independent(x, K, make, logistic, options, ctx.threads,
                             [&](int64_t k, DualCdResult& r) { sink.store(k, r); });
  }
  std::vector<int64_t> targets(static_cast<size_t>(x.rows()));
  for (int64_t i = 0; i < x.rows(); ++i) targets[static_cast<size_t>(i)] = data.train.label(i);
  if (!binary && K != 2)
    return solve_one_vs_rest(x, targets, K, C, data.class_weights, options, ctx.threads,
                             [&](int64_t k, DualCdResult& r) { sink.store(k, r); });
  // The positive class (binary), or class 1 of two (its weight times C for its samples, class 0's
  // for the others).
  const int64_t positive = binary ? data.train.positive_class() : 1;
  const auto& cw = data.class_weights;
  std::vector<int8_t> y(targets.size());
  std::vector<double> cost(targets.size(), C);
  for (size_t i = 0; i < y.size(); ++i) {
    y[i] = targets[i] == positive ? 1 : -1;
    if (!binary && !cw.empty()) cost[i] = C * cw[static_cast<size_t>(targets[i])];
  }
  DualCdResult r = logistic ? solve_l2_lr_dual(x, y, cost, options) : solve_l2_svc_dual(x, y, cost, options);
  if (!binary) sink.store(0, r, -1, /*keep=*/true);
  sink.store(binary ? 0 : 1, r);
  return {r};
}

/// What the solve left, for the log.
struct SolveStats {
  int64_t iterations = 0, unconverged = 0;
  double worst_gap = 0, objective = 0;
};

SolveStats stats_of(const std::vector<DualCdResult>& solved) {
  SolveStats stats;
  for (const auto& s : solved) {
    stats.iterations = std::max(stats.iterations, s.iterations);
    stats.unconverged += !s.converged;
    stats.worst_gap = std::max(stats.worst_gap, (s.primal - s.dual) / std::max(1.0, std::abs(s.primal)));
    stats.objective += s.primal;
  }
  return stats;
}

}  // namespace

TrainSummary solve_linear(const RunContext& ctx, const PreparedData& data, const std::shared_ptr<TextModel>& model) {
  const Config& config = ctx.config;
  auto* linear = dynamic_cast<LinearImpl*>(model.get());
  if (!linear) throw ConfigError("optimizer.type \"dual_cd\" solves model.type \"linear\" only");
  const bool binary = config.task.type == "binary", regression = config.task.type == "regression";
  // A binary (or multilabel) task's cross-entropy is logistic regression, a regression's squared
  // error ridge regression; every other problem is the squared hinge's.
  const bool logistic = (binary || config.task.type == "multilabel") && config.task.loss != "squared_hinge";
  const char* problem = regression ? "ridge regression" : logistic ? "logistic regression" : "squared hinge";
  const double intercept = config.model.options.at("intercept_scaling").get<double>();
  const int64_t K = linear->options.num_outputs();
  const auto t0 = std::chrono::steady_clock::now();
  SparseRows x = linear->rows_of(data.train, intercept, ctx.threads);
  const int64_t n = x.rows(), cols = x.num_cols, nonzeros = static_cast<int64_t>(x.cols.size());
  const double build_seconds = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  SolutionSink sink(*linear, intercept);
  const SolveStats stats = stats_of(solve_problems(ctx, data, x, K, logistic, sink));
  sink.finish();
  const double solve_seconds = seconds_since(t1);
  x = SparseRows();  // the validation, checkpoint and test need memory more
  const bool one_problem = binary || regression || K == 2;
  log::info(
      "[train] dual_cd ({}): {} problem(s) over {} samples x {} features ({} nonzeros), built in {:.2f}s, solved "
      "in {:.2f}s ({} thread(s)); at most {} passes, relative duality gap at most {:.2g}",
      problem, one_problem ? 1 : K, n, cols, nonzeros, build_seconds, solve_seconds, one_problem ? 1 : ctx.threads,
      stats.iterations, stats.worst_gap);
  if (stats.unconverged)
    log::warn(
        "[train] dual_cd: {} of {} problem(s) stopped at optimizer.max_iter {} before the tolerance {}; raise "
        "optimizer.max_iter (or lower model.C)",
        stats.unconverged, one_problem ? 1 : K, config.optimizer.max_iter, config.optimizer.tol);
  // The objective as the loop's training loss (the mean loss plus the penalty's share): the solved
  // objectives over n C (a multilabel's also over its K labels, whose losses it averages).
  const double C = config.model.options.at("C").get<double>();
  const double scale =
      C * static_cast<double>(std::max<int64_t>(1, n)) * static_cast<double>(config.task.type == "multilabel" ? K : 1);
  Trainer trainer(config, model, *data.task, ctx.device, ctx.run, data.vocab.size());
  TrainSummary summary = trainer.record_solution(data.valid ? &*data.valid : nullptr, n, stats.objective / scale);
  summary.seconds = seconds_since(t0);
  summary.data_seconds = build_seconds;  // the rows, built once
  summary.samples_per_s = summary.seconds > 0 ? static_cast<double>(n) / summary.seconds : 0.0;
  return summary;
}

}  // namespace ltk
