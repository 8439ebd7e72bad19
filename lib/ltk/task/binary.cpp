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

// ---- binary ----

BinaryTask::BinaryTask(TaskConfig config, const LabelMap& labels, std::vector<double> class_weights)
    : Task(std::move(config), std::move(class_weights)), labels_(labels) {
  if (labels_.size() != 2)
    throw DataError(fmt::format("a binary task needs exactly 2 labels in the training data, found {} ({}); use "
                                "task.type \"multiclass\" for more",
                                labels_.size(), quoted_list(labels_.names())));
  positive_ = positive_label_index(config_, labels_);
  resolve_thresholds({labels_.name(positive_)});
}

TargetEncoder BinaryTask::target_encoder() const { return TargetEncoder{TargetKind::binary, &labels_, ",", positive_}; }

torch::Tensor BinaryTask::check(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  check_outputs(outputs, 1, "binary");
  return check_float_targets(targets, {outputs.size(0)}, "binary");
}

torch::Tensor BinaryTask::loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  auto t = check(outputs, targets);
  if (config_.loss == "squared_hinge") return reduce(per_sample_loss(outputs, targets), config_.reduction);
  auto opts = with_reduction(F::BinaryCrossEntropyWithLogitsFuncOptions(), config_.reduction);
  if (!class_weights_.empty()) opts.pos_weight(weights_tensor(class_weights_, outputs));
  return F::binary_cross_entropy_with_logits(outputs.squeeze(1), t, opts);
}

torch::Tensor BinaryTask::per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  auto t = check(outputs, targets);
  torch::Tensor pos_weight = class_weights_.empty() ? torch::Tensor() : weights_tensor(class_weights_, outputs);
  if (config_.loss == "squared_hinge") return squared_hinge(outputs.squeeze(1), t, pos_weight);
  auto opts = F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone);
  if (pos_weight.defined()) opts.pos_weight(pos_weight);
  return F::binary_cross_entropy_with_logits(outputs.squeeze(1), t, opts);
}

nlohmann::ordered_json BinaryTask::prediction(const float* scores) const {
  double p = scores[0];
  bool pos = p >= thresholds_[0];
  int64_t negative = 1 - positive_;
  nlohmann::ordered_json j, all;
  j["label"] = labels_.name(pos ? positive_ : negative);
  j["score"] = round6(pos ? p : 1 - p);
  all[labels_.name(0)] = round6(positive_ == 0 ? p : 1 - p);
  all[labels_.name(1)] = round6(positive_ == 1 ? p : 1 - p);
  j["scores"] = all;
  return j;
}

void BinaryTask::write_prediction(const float* scores, int64_t top_k, std::string& out) const {
  write_binary_answer(labels_, positive_, thresholds_[0], scores, top_k, out);
}

EvalReport BinaryTask::evaluate(const Predictions& p) const {
  auto probs = p.scores.select(1, 0).contiguous();
  auto gold = p.targets.contiguous();
  std::vector<int64_t> g, q;
  const int64_t negative = 1 - positive_;
  for (int64_t i = 0; i < probs.numel(); ++i) {
    g.push_back(gold.data_ptr<float>()[i] >= 0.5f ? positive_ : negative);
    q.push_back(probs.data_ptr<float>()[i] >= thresholds_[0] ? positive_ : negative);
  }
  auto r = classification_report(g, q, labels_, p.samples ? p.loss_sum / static_cast<double>(p.samples) : 0.0);
  add_class_averages(r, labels_);
  r.metrics["threshold"] = thresholds_[0];
  r.metrics["positive_label"] = labels_.name(positive_);
  std::vector<double> score(probs.data_ptr<float>(), probs.data_ptr<float>() + probs.numel());
  std::vector<int> truth, correct;
  std::vector<double> conf;
  for (size_t i = 0; i < score.size(); ++i) {
    truth.push_back(g[i] == positive_);
    correct.push_back(g[i] == q[i]);
    conf.push_back(q[i] == positive_ ? score[i] : 1.0 - score[i]);
  }
  r.metrics["roc_auc"] = roc_auc(score, truth);
  r.metrics["pr_auc"] = average_precision(score, truth);
  auto sweep = threshold_sweep(score, truth);
  r.metrics["best_threshold"] = {{"threshold", sweep.best.threshold}, {"f1", sweep.best.f1},
                                 {"precision", sweep.best.precision}, {"recall", sweep.best.recall}};
  auto cal = calibration(conf, correct);
  r.metrics["ece"] = cal.ece;
  r.metrics["calibration"] = cal.to_json();
  r.table += fmt::format("roc_auc {:.4f}  pr_auc {:.4f}  best F1 {:.4f} at threshold {:.4f}  ece {:.4f}\n",
                         r.metrics["roc_auc"].get<double>(), r.metrics["pr_auc"].get<double>(), sweep.best.f1,
                         sweep.best.threshold, cal.ece);
  return r;
}

bool BinaryTask::is_correct(const float* scores, const TextDataset& data, int64_t i) const {
  return (scores[0] >= thresholds_[0]) == (data.label(i) == data.positive_class());
}

std::optional<BadCase> BinaryTask::bad_case(const float* scores, const TextDataset& data, int64_t i) const {
  return single_label_bad_case(prediction(scores), labels_.name(data.label(i)));
}

}  // namespace ltk
