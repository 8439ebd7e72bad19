#include "ltk/task/task.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/nn/functional/loss.h>

#include <cmath>
#include <set>

#include "ltk/core/error.h"
#include "ltk/core/strings.h"
#include "ltk/metrics/metrics.h"
#include "ltk/metrics/scores.h"

namespace ltk {

namespace F = torch::nn::functional;

namespace {

std::string shape_of(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

double round6(double x) { return std::round(x * 1e6) / 1e6; }

template <typename Options>
Options with_reduction(Options o, const std::string& reduction) {
  if (reduction == "sum") {
    o.reduction(torch::kSum);
  } else {
    o.reduction(torch::kMean);
  }
  return o;
}

torch::Tensor weights_tensor(const std::vector<double>& w, const torch::Tensor& like) {
  return torch::tensor(w, torch::kDouble).to(like.device(), like.scalar_type());
}

// Float targets in [0, 1] of the given shape: the BCE pitfall (P7).
torch::Tensor check_float_targets(const torch::Tensor& targets, at::IntArrayRef shape, const char* task) {
  if (!targets.defined()) throw TrainError(std::string(task) + " loss: the batch has no targets");
  torch::Tensor t = targets;
  if (t.dim() == static_cast<int64_t>(shape.size()) + 1 && t.size(-1) == 1) t = t.squeeze(-1);
  if (t.sizes() != shape)
    throw TrainError(fmt::format("{} targets must have shape [{}], got {}", task, fmt::join(shape, ", "), shape_of(targets)));
  if (!t.is_floating_point())
    throw TrainError(fmt::format("{} targets must be float (BCE-with-logits needs float targets), got {}; "
                                 "convert them with .to(torch::kFloat)",
                                 task, std::string(c10::toString(t.scalar_type()))));
  if (t.numel() > 0) {
    double lo = t.min().item<double>(), hi = t.max().item<double>();
    if (lo < 0 || hi > 1)
      throw TrainError(fmt::format("{} targets must lie in [0, 1], found {}; BCE on targets such as 1, 2, 3 gives "
                                   "a negative, meaningless loss",
                                   task, lo < 0 ? lo : hi));
  }
  return t;
}

void check_outputs(const torch::Tensor& outputs, int64_t width, const char* task) {
  if (outputs.dim() != 2 || outputs.size(1) != width)
    throw TrainError(fmt::format("{} loss: outputs must be [batch, {}], got {}", task, width, shape_of(outputs)));
}

}  // namespace

double EvalReport::get(const std::string& name) const {
  auto it = metrics.find(name);
  if (it == metrics.end() || !it->is_number())
    throw ConfigError("config key 'trainer.select_metric': this task reports no '" + name + "'");
  return it->get<double>();
}

static const char* kHeadline[] = {"accuracy", "macro_f1", "micro_f1", "hamming_loss", "mae", "rmse", "loss"};

nlohmann::json EvalReport::headline() const {
  nlohmann::json j = nlohmann::json::object();
  for (const char* k : kHeadline)
    if (metrics.contains(k)) j[k] = metrics.at(k);
  if (metrics.contains("samples")) j["samples"] = metrics.at("samples");
  return j;
}

std::string EvalReport::summary() const {
  std::string out;
  for (const char* k : kHeadline)
    if (metrics.contains(k)) out += fmt::format("{}{} {:.4f}", out.empty() ? "" : " ", k, metrics.at(k).get<double>());
  return out;
}

bool Task::higher_is_better(const std::string& metric) {
  return !(metric == "loss" || metric == "mae" || metric == "rmse" || metric == "hamming_loss");
}

std::string Task::selection_metric(const std::string& configured) const {
  if (configured != "auto") return configured;
  return type() == "regression" ? "loss" : "accuracy";
}

// ---- multiclass ----

MulticlassTask::MulticlassTask(TaskConfig config, const LabelMap& labels, std::vector<double> class_weights)
    : Task(std::move(config), std::move(class_weights)), labels_(labels) {
  if (labels_.size() < 2)
    throw DataError(fmt::format("a multiclass task needs at least 2 labels in the training data, found {}",
                                labels_.size()));
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
  auto opts = with_reduction(F::CrossEntropyFuncOptions(), config_.reduction).label_smoothing(config_.label_smoothing);
  if (!class_weights_.empty()) opts.weight(weights_tensor(class_weights_, logits));
  return F::cross_entropy(logits, t, opts);
}

torch::Tensor MulticlassTask::per_sample_loss(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto t = check_targets(logits, targets);
  auto opts = F::CrossEntropyFuncOptions().reduction(torch::kNone).label_smoothing(config_.label_smoothing);
  if (!class_weights_.empty()) opts.weight(weights_tensor(class_weights_, logits));
  return F::cross_entropy(logits, t, opts);
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

// Averages over classes (macro = unweighted over the classes present, weighted = by support) and
// the most frequent confusions.
static void add_class_averages(EvalReport& r, const LabelMap& labels) {
  const auto& per = r.metrics.at("per_class");
  double wp = 0, wr = 0, wf = 0, mp = 0, mr = 0, n = 0;
  int present = 0;
  for (const auto& name : labels.names()) {
    const auto& c = per.at(name);
    double support = c.at("support").get<double>();
    wp += c.at("precision").get<double>() * support;
    wr += c.at("recall").get<double>() * support;
    wf += c.at("f1").get<double>() * support;
    n += support;
  }
  const auto& confusion = r.metrics.at("confusion");
  const size_t C = labels.names().size();
  for (size_t c = 0; c < C; ++c) {
    double predicted = 0;
    for (size_t g = 0; g < C; ++g) predicted += confusion[g][c].get<double>();
    if (per.at(labels.name(static_cast<int64_t>(c))).at("support").get<double>() > 0 || predicted > 0) {
      mp += per.at(labels.name(static_cast<int64_t>(c))).at("precision").get<double>();
      mr += per.at(labels.name(static_cast<int64_t>(c))).at("recall").get<double>();
      ++present;
    }
  }
  r.metrics["macro_precision"] = present ? mp / present : 0.0;
  r.metrics["macro_recall"] = present ? mr / present : 0.0;
  r.metrics["micro_f1"] = r.metrics.at("accuracy");  // single-label: micro P = R = F1 = accuracy
  r.metrics["weighted_precision"] = n ? wp / n : 0.0;
  r.metrics["weighted_recall"] = n ? wr / n : 0.0;
  r.metrics["weighted_f1"] = n ? wf / n : 0.0;
  std::vector<std::tuple<int64_t, size_t, size_t>> pairs;
  for (size_t g = 0; g < C; ++g)
    for (size_t q = 0; q < C; ++q)
      if (g != q && confusion[g][q].get<int64_t>() > 0) pairs.emplace_back(confusion[g][q].get<int64_t>(), g, q);
  std::stable_sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) { return std::get<0>(a) > std::get<0>(b); });
  nlohmann::json ranked = nlohmann::json::array();
  std::string lines;
  for (size_t i = 0; i < pairs.size() && i < 10; ++i) {
    auto [count, g, q] = pairs[i];
    ranked.push_back({{"gold", labels.name(static_cast<int64_t>(g))}, {"predicted", labels.name(static_cast<int64_t>(q))},
                      {"count", count}});
    lines += fmt::format("  {} -> {}: {}\n", labels.name(static_cast<int64_t>(g)), labels.name(static_cast<int64_t>(q)), count);
  }
  r.metrics["top_confusions"] = ranked;
  if (!lines.empty()) r.table += "most frequent confusions (gold -> predicted):\n" + lines;
}

static EvalReport classification_report(const std::vector<int64_t>& gold, const std::vector<int64_t>& pred,
                                        const LabelMap& labels, double loss) {
  auto m = classification_metrics(gold, pred, labels.size());
  m.loss = loss;
  return EvalReport{m.to_json(labels.names()), m.table(labels.names())};
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

// ---- binary ----

BinaryTask::BinaryTask(TaskConfig config, const LabelMap& labels, std::vector<double> class_weights)
    : Task(std::move(config), std::move(class_weights)), labels_(labels) {
  if (labels_.size() != 2)
    throw DataError(fmt::format("a binary task needs exactly 2 labels in the training data, found {} ({}); use "
                                "task.type \"multiclass\" for more",
                                labels_.size(), quoted_list(labels_.names())));
  if (!config_.positive_label.empty()) {
    positive_ = labels_.find(config_.positive_label);
    if (positive_ < 0)
      throw ConfigError("config key 'task.positive_label': '" + config_.positive_label +
                        "' is not one of the labels " + quoted_list(labels_.names()));
  }
}

TargetEncoder BinaryTask::target_encoder() const { return TargetEncoder{TargetKind::binary, &labels_, ",", positive_}; }

torch::Tensor BinaryTask::check(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  check_outputs(outputs, 1, "binary");
  return check_float_targets(targets, {outputs.size(0)}, "binary");
}

torch::Tensor BinaryTask::loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  auto t = check(outputs, targets);
  auto opts = with_reduction(F::BinaryCrossEntropyWithLogitsFuncOptions(), config_.reduction);
  if (!class_weights_.empty()) opts.pos_weight(weights_tensor(class_weights_, outputs));
  return F::binary_cross_entropy_with_logits(outputs.squeeze(1), t, opts);
}

torch::Tensor BinaryTask::per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  auto t = check(outputs, targets);
  auto opts = F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone);
  if (!class_weights_.empty()) opts.pos_weight(weights_tensor(class_weights_, outputs));
  return F::binary_cross_entropy_with_logits(outputs.squeeze(1), t, opts);
}

nlohmann::ordered_json BinaryTask::prediction(const float* scores) const {
  double p = scores[0];
  bool pos = p >= config_.threshold;
  int64_t negative = 1 - positive_;
  nlohmann::ordered_json j, all;
  j["label"] = labels_.name(pos ? positive_ : negative);
  j["score"] = round6(pos ? p : 1 - p);
  all[labels_.name(0)] = round6(positive_ == 0 ? p : 1 - p);
  all[labels_.name(1)] = round6(positive_ == 1 ? p : 1 - p);
  j["scores"] = all;
  return j;
}

EvalReport BinaryTask::evaluate(const Predictions& p) const {
  auto probs = p.scores.select(1, 0).contiguous();
  auto gold = p.targets.contiguous();
  std::vector<int64_t> g, q;
  const int64_t negative = 1 - positive_;
  for (int64_t i = 0; i < probs.numel(); ++i) {
    g.push_back(gold.data_ptr<float>()[i] >= 0.5f ? positive_ : negative);
    q.push_back(probs.data_ptr<float>()[i] >= config_.threshold ? positive_ : negative);
  }
  auto r = classification_report(g, q, labels_, p.samples ? p.loss_sum / static_cast<double>(p.samples) : 0.0);
  add_class_averages(r, labels_);
  r.metrics["threshold"] = config_.threshold;
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

// ---- multilabel ----

MultilabelTask::MultilabelTask(TaskConfig config, const LabelMap& labels, std::vector<double> class_weights)
    : Task(std::move(config), std::move(class_weights)), labels_(labels) {
  if (labels_.size() < 1) throw DataError("a multilabel task needs at least 1 label in the training data");
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
  auto opts = with_reduction(F::BinaryCrossEntropyWithLogitsFuncOptions(), config_.reduction);
  if (!class_weights_.empty()) opts.pos_weight(weights_tensor(class_weights_, outputs));
  return F::binary_cross_entropy_with_logits(outputs, t, opts);
}

torch::Tensor MultilabelTask::per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  auto t = check(outputs, targets);
  auto opts = F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone);
  if (!class_weights_.empty()) opts.pos_weight(weights_tensor(class_weights_, outputs));
  return F::binary_cross_entropy_with_logits(outputs, t, opts).mean(1);
}

nlohmann::ordered_json MultilabelTask::prediction(const float* scores) const {
  nlohmann::ordered_json j, all;
  j["labels"] = nlohmann::ordered_json::array();
  for (int64_t c = 0; c < labels_.size(); ++c) {
    if (scores[c] >= config_.threshold) j["labels"].push_back(labels_.name(c));
    all[labels_.name(c)] = round6(scores[c]);
  }
  j["scores"] = all;
  return j;
}

EvalReport MultilabelTask::evaluate(const Predictions& p) const {
  const int64_t C = labels_.size(), N = p.scores.size(0);
  auto pred = (p.scores >= config_.threshold).to(torch::kBool);
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
    double s = flat[i].item<double>();
    conf.push_back(std::max(s, 1.0 - s));
    correct.push_back(flat_gold[i].item<bool>() == flat_pred[i].item<bool>());
  }
  auto cal = calibration(conf, correct);
  EvalReport r;
  r.metrics = {{"samples", N},        {"accuracy", exact}, {"subset_accuracy", exact}, {"hamming_loss", hamming},
               {"micro_f1", micro},   {"macro_f1", macro}, {"loss", loss},             {"per_class", per},
               {"threshold", config_.threshold}, {"labels", labels_.names()}, {"ece", cal.ece},
               {"calibration", cal.to_json()}};
  r.table = fmt::format("samples {}  subset_accuracy {:.4f}  hamming_loss {:.4f}  micro_f1 {:.4f}  macro_f1 {:.4f}  "
                        "loss {:.4f}\n",
                        N, exact, hamming, micro, macro, loss) +
            rows;
  return r;
}

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

// ---- factory and helpers ----

bool task_has_labels(const std::string& type) { return type != "regression"; }

LabelMap labels_from_examples(const TaskConfig& config, const std::vector<Example>& examples) {
  std::vector<std::string> names;
  for (const auto& e : examples) {
    if (config.type == "multilabel") {
      for (auto part : split(e.label, config.label_separator[0])) {
        part = trim(part);
        if (!part.empty()) names.emplace_back(part);
      }
    } else {
      names.push_back(e.label);
    }
  }
  return LabelMap::from_labels(names);
}

std::vector<double> resolve_class_weights(const TaskConfig& config, const LabelMap& labels, const TextDataset& train) {
  const auto& cw = config.class_weights;
  if (cw.is_null() || (cw.is_string() && cw.get<std::string>() == "none")) return {};
  if (config.type == "regression") throw ConfigError("config key 'task.class_weights': a regression task has no classes");
  const int64_t C = labels.size(), N = train.size();
  std::vector<double> count(static_cast<size_t>(C), 0.0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c : train.labels(i)) count[static_cast<size_t>(c)] += 1;
  std::vector<double> w;
  if (cw.is_string()) {  // "auto", validated by the config parser
    if (config.type == "multiclass") {
      for (double n : count) w.push_back(n > 0 ? static_cast<double>(N) / (static_cast<double>(C) * n) : 0.0);
    } else if (config.type == "binary") {
      int64_t pos = train.positive_class();
      double npos = count[static_cast<size_t>(pos)], nneg = static_cast<double>(N) - npos;
      w.push_back(npos > 0 ? nneg / npos : 1.0);
    } else {  // multilabel: pos_weight = negatives / positives per label
      for (double n : count) w.push_back(n > 0 ? (static_cast<double>(N) - n) / n : 1.0);
    }
    return w;
  }
  // A map by label; labels not named weigh 1.
  std::vector<double> by_label(static_cast<size_t>(C), 1.0);
  for (auto it = cw.begin(); it != cw.end(); ++it) {
    int64_t id = labels.find(it.key());
    if (id < 0)
      throw ConfigError("config key 'task.class_weights." + it.key() + "': not a label of the training data" +
                        did_you_mean(it.key(), labels.names()));
    by_label[static_cast<size_t>(id)] = it.value().get<double>();
  }
  if (config.type == "binary") return {by_label[static_cast<size_t>(train.positive_class())]};
  return by_label;
}

std::unique_ptr<Task> make_task(const TaskConfig& config, const LabelMap& labels, std::vector<double> class_weights) {
  if (config.type == "multiclass") return std::make_unique<MulticlassTask>(config, labels, std::move(class_weights));
  if (config.type == "binary") return std::make_unique<BinaryTask>(config, labels, std::move(class_weights));
  if (config.type == "multilabel") return std::make_unique<MultilabelTask>(config, labels, std::move(class_weights));
  if (config.type == "regression") return std::make_unique<RegressionTask>(config);
  throw ConfigError("config key 'task.type': unknown task '" + config.type + "'");
}

void check_scalar_loss(const torch::Tensor& loss) {
  if (loss.dim() != 0)
    throw TrainError(fmt::format("the loss must be a scalar for backward(), got shape {}; set "
                                 "task.reduction to \"mean\" or \"sum\"",
                                 shape_of(loss)));
}

}  // namespace ltk
