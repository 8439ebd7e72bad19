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

// ---- multiclass ----

MulticlassTask::MulticlassTask(TaskConfig config, const LabelMap& labels, std::vector<double> class_weights)
    : Task(std::move(config), std::move(class_weights)), labels_(labels) {
  if (labels_.size() < 2)
    throw DataError(fmt::format("a multiclass task needs at least 2 labels in the training data (data.train), found "
                                "{}{}: is data.label_column the label's column?",
                                labels_.size(), labels_.size() == 1 ? " ('" + labels_.name(0) + "')" : std::string()));
}

static LabelMap numbered_labels(int64_t n) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < n; ++i) names.push_back(fmt::format("{:06d}", i));
  return LabelMap::from_labels(names);
}

static TaskConfig reduction_config(const std::string& type, const std::string& reduction) {
  TaskConfig c;
  c.type = type;
  c.reduction = reduction;
  return c;
}

MulticlassTask::MulticlassTask(int64_t num_classes, const std::string& reduction)
    : MulticlassTask(reduction_config("multiclass", reduction), numbered_labels(num_classes)) {}

torch::Tensor MulticlassTask::check_targets(const torch::Tensor& logits, const torch::Tensor& targets) const {
  const int64_t C = labels_.size();
  if (!targets.defined()) throw TrainError("multiclass loss: the batch has no labels");
  check_outputs(logits, C, "multiclass");
  torch::Tensor t = targets;
  if (t.dim() == 2 && t.size(1) == 1) t = t.squeeze(1);  // an [N, 1] column is fine
  if (t.dim() != 1) {
    std::string hint = (t.dim() == 2 && t.size(1) == C)
                           ? " (these look one-hot: pass class ids, e.g. argmax over the last dimension)"
                           : "";
    throw TrainError(fmt::format("multiclass targets must be class ids of shape [{}], got {}{}", logits.size(0),
                                 shape_of(targets), hint));
  }
  if (t.size(0) != logits.size(0))
    throw TrainError(fmt::format("multiclass targets: {} targets for {} logit rows", t.size(0), logits.size(0)));
  if (t.scalar_type() != torch::kLong)
    throw TrainError(fmt::format("multiclass targets must be int64 class ids, got {}",
                                 std::string(c10::toString(t.scalar_type()))));
  if (t.numel() > 0) {
    auto lo = t.min().item<int64_t>(), hi = t.max().item<int64_t>();
    if (lo < 0 || hi >= C) {
      int64_t bad = lo < 0 ? lo : hi;
      throw TrainError(fmt::format("multiclass target {} is out of range [0, {}): class ids start at 0 "
                                   "(labels 1..{} must be mapped to 0..{})",
                                   bad, C, C, C - 1));
    }
  }
  return t;
}

torch::Tensor MulticlassTask::loss(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto t = check_targets(logits, targets);
  if (config_.loss == "squared_hinge") return reduce(hinge_losses(logits, t), config_.reduction);
  auto opts = with_reduction(F::CrossEntropyFuncOptions(), config_.reduction).label_smoothing(config_.label_smoothing);
  if (!class_weights_.empty()) opts.weight(weights_tensor(class_weights_, logits));
  return F::cross_entropy(logits, t, opts);
}

double MulticlassTask::batch_weight(const Batch& batch) const {
  if (class_weights_.empty() || config_.loss == "squared_hinge" || !batch.labels.defined())
    return static_cast<double>(batch.size());
  double sum = 0;
  auto t = batch.labels.to(torch::kLong).contiguous();
  const int64_t* y = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (y[i] >= 0 && y[i] < static_cast<int64_t>(class_weights_.size())) sum += class_weights_[static_cast<size_t>(y[i])];
  return sum;
}

torch::Tensor MulticlassTask::per_sample_loss(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto t = check_targets(logits, targets);
  if (config_.loss == "squared_hinge") return hinge_losses(logits, t);
  auto opts = F::CrossEntropyFuncOptions().reduction(torch::kNone).label_smoothing(config_.label_smoothing);
  if (!class_weights_.empty()) opts.weight(weights_tensor(class_weights_, logits));
  return F::cross_entropy(logits, t, opts);
}

torch::Tensor MulticlassTask::hinge_losses(const torch::Tensor& logits, const torch::Tensor& t) const {
  // LinearSVC's one-vs-rest: class k's problem weighs its positives by class_weight[k] (liblinear's
  // weighted C), its negatives by 1.
  auto one_hot = F::one_hot(t, labels_.size()).to(logits.scalar_type());
  torch::Tensor pos_weight = class_weights_.empty() ? torch::Tensor() : weights_tensor(class_weights_, logits);
  return squared_hinge(logits, one_hot, pos_weight).sum(1);
}

nlohmann::ordered_json MulticlassTask::prediction(const float* scores) const {
  int64_t best = 0;
  for (int64_t c = 1; c < labels_.size(); ++c)
    if (scores[c] > scores[best]) best = c;
  nlohmann::ordered_json j, all;
  j["label"] = labels_.name(best);
  j["score"] = round6(scores[best]);
  for (int64_t c = 0; c < labels_.size(); ++c) all[labels_.name(c)] = round6(scores[c]);
  j["scores"] = all;
  return j;
}

void MulticlassTask::write_prediction(const float* scores, int64_t top_k, std::string& out) const {
  write_multiclass_answer(labels_, scores, top_k, out);
}

EvalReport MulticlassTask::evaluate(const Predictions& p) const {
  auto pred = p.scores.argmax(1).contiguous();
  auto gold = p.targets.contiguous();
  std::vector<int64_t> g(gold.data_ptr<int64_t>(), gold.data_ptr<int64_t>() + gold.numel());
  std::vector<int64_t> q(pred.data_ptr<int64_t>(), pred.data_ptr<int64_t>() + pred.numel());
  auto r = classification_report(g, q, labels_, p.samples ? p.loss_sum / static_cast<double>(p.samples) : 0.0);
  add_class_averages(r, labels_);
  const int64_t C = labels_.size(), N = static_cast<int64_t>(g.size());
  for (int64_t k : {3, 5}) {
    if (k >= C || N == 0) continue;
    auto topk = std::get<1>(p.scores.topk(k, 1));
    double hit = (topk == gold.unsqueeze(1)).any(1).to(torch::kDouble).mean().item<double>();
    r.metrics[fmt::format("top{}_accuracy", k)] = hit;
  }
  auto conf = std::get<0>(p.scores.max(1)).to(torch::kDouble).contiguous();
  std::vector<double> c(conf.data_ptr<double>(), conf.data_ptr<double>() + N);
  std::vector<int> correct(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) correct[i] = g[i] == q[i];
  auto cal = calibration(c, correct);
  r.metrics["ece"] = cal.ece;
  r.metrics["calibration"] = cal.to_json();
  return r;
}

bool MulticlassTask::is_correct(const float* scores, const TextDataset& data, int64_t i) const {
  int64_t best = 0;
  for (int64_t k = 1; k < labels_.size(); ++k)
    if (scores[k] > scores[best]) best = k;
  return best == data.label(i);
}

std::optional<BadCase> MulticlassTask::bad_case(const float* scores, const TextDataset& data, int64_t i) const {
  return single_label_bad_case(prediction(scores), labels_.name(data.label(i)));
}

}  // namespace ltk
