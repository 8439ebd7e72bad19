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

}  // namespace

TrainSummary solve_linear(const RunContext& ctx, const PreparedData& data, const std::shared_ptr<TextModel>& model) {
  const Config& config = ctx.config;
  auto* linear = dynamic_cast<LinearImpl*>(model.get());
  if (!linear) throw ConfigError("optimizer.type \"dual_cd\" solves model.type \"linear\" only");
  const bool binary = config.task.type == "binary";
  const double C = config.model.options.at("C").get<double>();
  const double intercept = config.model.options.at("intercept_scaling").get<double>();
  const auto t0 = std::chrono::steady_clock::now();
  const SparseRows x = linear->rows_of(data.train, intercept);
  std::vector<int64_t> targets(static_cast<size_t>(x.rows()));
  for (int64_t i = 0; i < x.rows(); ++i) targets[static_cast<size_t>(i)] = data.train.label(i);
  const double build_seconds = seconds_since(t0);
  DualCdOptions options;
  options.tol = config.optimizer.tol;
  options.max_iter = config.optimizer.max_iter;
  options.seed = config.seed;
  const int64_t K = linear->options.num_outputs();
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<DualCdResult> solved;
  if (binary || K == 2) {
    // One problem, as liblinear solves two classes: the positive class (binary), or class 1 of two
    // (its weight times C for its samples, class 0's for the others); class 0's logit is its negation.
    const int64_t positive = binary ? data.train.positive_class() : 1;
    const auto& cw = data.class_weights;
    std::vector<int8_t> y(targets.size());
    std::vector<double> cost(targets.size(), C);
    for (size_t i = 0; i < y.size(); ++i) {
      y[i] = targets[i] == positive ? 1 : -1;
      if (!binary && !cw.empty()) cost[i] = C * cw[static_cast<size_t>(targets[i])];
    }
    solved.push_back(solve_l2_svc_dual(x, y, cost, options));
    if (!binary) {
      DualCdResult negated = solved[0];
      for (double& v : negated.w) v = -v;
      solved.insert(solved.begin(), std::move(negated));
    }
  } else {
    solved = solve_one_vs_rest(x, targets, K, C, data.class_weights, options, ctx.threads);
  }
  const double solve_seconds = seconds_since(t1);
  // The solution into the model: W [V, K], bias = the intercept column's weight times its value.
  const int64_t V = linear->options.vocab_size();
  auto W = torch::zeros({V, K}, torch::kDouble);
  auto bias = torch::zeros({K}, torch::kDouble);
  int64_t iterations = 0, unconverged = 0;
  double worst_gap = 0;
  for (int64_t k = 0; k < K; ++k) {
    const auto& s = solved[static_cast<size_t>(k)];
    auto column = W.select(1, k);
    auto* out = column.data_ptr<double>();
    for (int64_t f = 0; f < V; ++f) out[f * K] = s.w[static_cast<size_t>(f)];
    bias[k] = s.w[static_cast<size_t>(V)] * intercept;
    iterations = std::max(iterations, s.iterations);
    unconverged += !s.converged;
    worst_gap = std::max(worst_gap, (s.primal - s.dual) / std::max(1.0, std::abs(s.primal)));
  }
  {
    torch::NoGradGuard no_grad;
    linear->weight->weight.copy_(W);
    linear->bias.copy_(bias);
  }
  log::info(
      "[train] dual_cd: {} problem(s) over {} samples x {} features ({} nonzeros), built in {:.2f}s, solved in "
      "{:.2f}s ({} thread(s)); at most {} passes, relative duality gap at most {:.2g}",
      K, x.rows(), x.num_cols, x.cols.size(), build_seconds, solve_seconds, binary ? 1 : ctx.threads, iterations,
      worst_gap);
  if (unconverged)
    log::warn(
        "[train] dual_cd: {} of {} problem(s) stopped at optimizer.max_iter {} before the tolerance {}; raise "
        "optimizer.max_iter (or lower model.C)",
        unconverged, K, options.max_iter, options.tol);
  // The objective per sample, as the loop's training loss (the penalty included), over the problems solved.
  double objective = 0;
  for (size_t k = binary || K == 2 ? solved.size() - 1 : 0; k < solved.size(); ++k) objective += solved[k].primal;
  Trainer trainer(config, model, *data.task, ctx.device, ctx.run, data.vocab.size());
  TrainSummary summary = trainer.record_solution(data.valid ? &*data.valid : nullptr, x.rows(),
                                                 objective / static_cast<double>(std::max<int64_t>(1, x.rows())));
  summary.seconds = seconds_since(t0);
  summary.data_seconds = build_seconds;  // the rows, built once
  summary.samples_per_s = summary.seconds > 0 ? static_cast<double>(x.rows()) / summary.seconds : 0.0;
  return summary;
}

}  // namespace ltk
