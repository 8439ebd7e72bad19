#include "ltk/task/task.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "ltk/core/error.h"
#include "ltk/core/strings.h"
#include "ltk/metrics/scores.h"
#include "ltk/task/task_util.h"

namespace ltk {

namespace F = torch::nn::functional;
using namespace task_detail;

// ---- multilabel ----

MultilabelTask::MultilabelTask(TaskConfig config, const LabelMap& labels, std::vector<double> class_weights)
    : Task(std::move(config), std::move(class_weights)), labels_(labels) {
  if (labels_.size() < 1) throw DataError("a multilabel task needs at least 1 label in the training data");
  resolve_thresholds(labels_.names());
}

TargetEncoder MultilabelTask::target_encoder() const {
  return TargetEncoder{TargetKind::multi_hot, &labels_, config_.label_separator, 1};
}

torch::Tensor MultilabelTask::check(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  check_outputs(outputs, labels_.size(), "multilabel");
  return check_float_targets(targets, {outputs.size(0), labels_.size()}, "multilabel");
}

torch::Tensor MultilabelTask::loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  auto t = check(outputs, targets);
  torch::Tensor pos_weight = class_weights_.empty() ? torch::Tensor() : weights_tensor(class_weights_, outputs);
  if (config_.loss == "squared_hinge") return reduce(squared_hinge(outputs, t, pos_weight), config_.reduction);
  auto opts = with_reduction(F::BinaryCrossEntropyWithLogitsFuncOptions(), config_.reduction);
  if (pos_weight.defined()) opts.pos_weight(pos_weight);
  return F::binary_cross_entropy_with_logits(outputs, t, opts);
}

torch::Tensor MultilabelTask::per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  auto t = check(outputs, targets);
  torch::Tensor pos_weight = class_weights_.empty() ? torch::Tensor() : weights_tensor(class_weights_, outputs);
  if (config_.loss == "squared_hinge") return squared_hinge(outputs, t, pos_weight).mean(1);
  auto opts = F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone);
  if (pos_weight.defined()) opts.pos_weight(pos_weight);
  return F::binary_cross_entropy_with_logits(outputs, t, opts).mean(1);
}

nlohmann::ordered_json MultilabelTask::prediction(const float* scores) const {
  nlohmann::ordered_json j, all;
  j["labels"] = nlohmann::ordered_json::array();
  for (int64_t c = 0; c < labels_.size(); ++c) {
    if (scores[c] >= thresholds_[static_cast<size_t>(c)]) j["labels"].push_back(labels_.name(c));
    all[labels_.name(c)] = round6(scores[c]);
  }
  j["scores"] = all;
  return j;
}

void MultilabelTask::write_prediction(const float* scores, int64_t top_k, std::string& out) const {
  write_multilabel_answer(labels_, thresholds_, scores, top_k, out);
}

EvalReport MultilabelTask::evaluate(const Predictions& p) const {
  const int64_t C = labels_.size(), N = p.scores.size(0);
  // Compared in float64, as prediction() compares a float score with its double threshold.
  auto pred = p.scores.to(torch::kDouble) >= torch::tensor(thresholds_, torch::kDouble);
  auto gold = (p.targets >= 0.5).to(torch::kBool);
  auto exact = (pred == gold).all(1).to(torch::kDouble).mean().item<double>();
  auto hamming = (pred != gold).to(torch::kDouble).mean().item<double>();
  auto tp = (pred & gold).sum(0).to(torch::kDouble), fp = (pred & ~gold).sum(0).to(torch::kDouble),
       fn = (~pred & gold).sum(0).to(torch::kDouble);
  auto f1_of = [](double t, double f_p, double f_n) { return t > 0 ? 2 * t / (2 * t + f_p + f_n) : 0.0; };
  double micro = f1_of(tp.sum().item<double>(), fp.sum().item<double>(), fn.sum().item<double>());
  double macro_sum = 0;
  int present = 0;
  nlohmann::json per = nlohmann::json::object();
  std::string rows;
  for (int64_t c = 0; c < C; ++c) {
    double t = tp[c].item<double>(), f_p = fp[c].item<double>(), f_n = fn[c].item<double>();
    double f1 = f1_of(t, f_p, f_n);
    if (t + f_p + f_n > 0) {
      macro_sum += f1;
      ++present;
    }
    per[labels_.name(c)] = {{"f1", f1}, {"support", static_cast<int64_t>(t + f_n)}};
    rows += fmt::format("{:<20}  f1 {:.4f}  support {}\n", labels_.name(c), f1, static_cast<int64_t>(t + f_n));
  }
  double macro = present ? macro_sum / present : 0.0;
  double loss = p.samples ? p.loss_sum / static_cast<double>(p.samples) : 0.0;
  auto flat = p.scores.to(torch::kDouble).contiguous().view(-1);
  auto flat_gold = gold.contiguous().view(-1), flat_pred = pred.contiguous().view(-1);
  std::vector<double> conf;
  std::vector<int> correct;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    // The confidence in what is predicted at the label's threshold (at 0.5: max(s, 1 - s)).
    const double s = flat[i].item<double>();
    const bool predicted = flat_pred[i].item<bool>();
    conf.push_back(predicted ? s : 1.0 - s);
    correct.push_back(flat_gold[i].item<bool>() == predicted);
  }
  auto cal = calibration(conf, correct);
  EvalReport r;
  r.metrics = {{"samples", N},
               {"accuracy", exact},
               {"subset_accuracy", exact},
               {"hamming_loss", hamming},
               {"micro_f1", micro},
               {"macro_f1", macro},
               {"loss", loss},
               {"per_class", per},
               {"threshold", thresholds_json()},
               {"labels", labels_.names()},
               {"ece", cal.ece},
               {"calibration", cal.to_json()}};
  r.table = fmt::format("samples {}  subset_accuracy {:.4f}  hamming_loss {:.4f}  micro_f1 {:.4f}  macro_f1 {:.4f}  "
                        "loss {:.4f}\n",
                        N, exact, hamming, micro, macro, loss) +
            rows;
  return r;
}

namespace {

// The label set of a sample and of its prediction, sorted by name.
std::pair<std::vector<std::string>, std::vector<std::string>> label_sets(const LabelMap& labels,
                                                                         const std::vector<double>& thresholds,
                                                                         const float* scores, const TextDataset& data,
                                                                         int64_t i) {
  std::vector<std::string> gold, got;
  for (int64_t c : data.labels(i)) gold.push_back(labels.name(c));
  for (int64_t c = 0; c < labels.size(); ++c)
    if (scores[c] >= thresholds[static_cast<size_t>(c)]) got.push_back(labels.name(c));
  std::sort(gold.begin(), gold.end());
  std::sort(got.begin(), got.end());
  return {gold, got};
}

}  // namespace

bool MultilabelTask::is_correct(const float* scores, const TextDataset& data, int64_t i) const {
  auto [gold, got] = label_sets(labels_, thresholds_, scores, data, i);
  return gold == got;
}

std::optional<BadCase> MultilabelTask::bad_case(const float* scores, const TextDataset& data, int64_t i) const {
  auto [gold, got] = label_sets(labels_, thresholds_, scores, data, i);
  if (gold == got) return std::nullopt;
  return BadCase{0.0, join(gold, ","), join(got, ","), ""};
}

}  // namespace ltk
