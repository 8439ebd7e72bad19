#include "ltk/task/task.h"

#include <fmt/format.h>

#include <cmath>

#include "ltk/core/error.h"
#include "ltk/core/strings.h"
#include "ltk/metrics/scores.h"
#include "ltk/task/task_util.h"

namespace ltk {

namespace F = torch::nn::functional;
using namespace task_detail;

// ---- regression ----

RegressionTask::RegressionTask(TaskConfig config) : Task(std::move(config), {}) {}

torch::Tensor RegressionTask::check(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  check_outputs(outputs, 1, "regression");
  if (!targets.defined()) throw TrainError("regression loss: the batch has no targets");
  torch::Tensor t = targets;
  if (t.dim() == 2 && t.size(1) == 1) t = t.squeeze(1);
  if (t.dim() != 1 || t.size(0) != outputs.size(0))
    throw TrainError(fmt::format("regression targets must have shape [{}], got {}", outputs.size(0), shape_of(targets)));
  if (!t.is_floating_point())
    throw TrainError(fmt::format("regression targets must be float, got {}", std::string(c10::toString(t.scalar_type()))));
  return t;
}

torch::Tensor RegressionTask::raw_loss(const torch::Tensor& out, const torch::Tensor& t, bool reduce) const {
  auto o = out.squeeze(1);
  const std::string& kind = config_.loss;
  if (kind == "l1") {
    auto opts = reduce ? with_reduction(F::L1LossFuncOptions(), config_.reduction) : F::L1LossFuncOptions(torch::kNone);
    return F::l1_loss(o, t, opts);
  }
  if (kind == "huber") {
    auto opts = reduce ? with_reduction(F::HuberLossFuncOptions(), config_.reduction)
                       : F::HuberLossFuncOptions().reduction(torch::kNone);
    return F::huber_loss(o, t, opts.delta(config_.huber_delta));
  }
  auto opts = reduce ? with_reduction(F::MSELossFuncOptions(), config_.reduction) : F::MSELossFuncOptions(torch::kNone);
  return F::mse_loss(o, t, opts);
}

torch::Tensor RegressionTask::loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  return raw_loss(outputs, check(outputs, targets), true);
}

torch::Tensor RegressionTask::per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  return raw_loss(outputs, check(outputs, targets), false);
}

nlohmann::ordered_json RegressionTask::prediction(const float* scores) const {
  nlohmann::ordered_json j;
  j["value"] = round6(scores[0]);
  return j;
}

void RegressionTask::write_prediction(const float* scores, int64_t, std::string& out) const {
  write_regression_answer(scores, out);
}

EvalReport RegressionTask::evaluate(const Predictions& p) const {
  auto pred = p.scores.select(1, 0).to(torch::kDouble), gold = p.targets.to(torch::kDouble);
  auto err = pred - gold;
  int64_t n = pred.numel();
  double mae = n ? err.abs().mean().item<double>() : 0.0;
  double rmse = n ? std::sqrt(err.pow(2).mean().item<double>()) : 0.0;
  double loss = p.samples ? p.loss_sum / static_cast<double>(p.samples) : 0.0;
  auto pc = pred.contiguous(), gc = gold.contiguous();
  std::vector<double> x(pc.data_ptr<double>(), pc.data_ptr<double>() + n), y(gc.data_ptr<double>(), gc.data_ptr<double>() + n);
  double r2 = r2_score(y, x), pr = pearson(y, x), sp = spearman(y, x);
  EvalReport r;
  r.metrics = {{"samples", n}, {"mae", mae},      {"rmse", rmse},    {"r2", r2},
               {"pearson", pr}, {"spearman", sp}, {"loss", loss}};
  r.table = fmt::format("samples {}  mae {:.4f}  rmse {:.4f}  r2 {:.4f}  pearson {:.4f}  spearman {:.4f}  loss {:.4f}\n",
                        n, mae, rmse, r2, pr, sp, loss);
  return r;
}

bool RegressionTask::is_correct(const float*, const TextDataset&, int64_t) const {
  throw ConfigError("comparing runs needs a classification task (task.type is regression)");
}

std::optional<BadCase> RegressionTask::bad_case(const float* scores, const TextDataset& data, int64_t i) const {
  const double err = std::fabs(scores[0] - data.value(i));
  return BadCase{err, fmt::format("{}", data.value(i)), fmt::format("{:.6g}", scores[0]), fmt::format("{:.6g}", err)};
}

}  // namespace ltk
