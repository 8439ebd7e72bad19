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

nlohmann::ordered_json Task::prediction(const float* scores, int64_t top_k) const {
  nlohmann::ordered_json j = prediction(scores);
  if (top_k <= 0 || !j.contains("scores")) return j;
  std::vector<std::pair<double, std::string>> ranked;
  for (auto& [label, v] : j["scores"].items()) ranked.emplace_back(v.get<double>(), label);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  nlohmann::ordered_json top = nlohmann::ordered_json::array();
  for (size_t r = 0; r < ranked.size() && r < static_cast<size_t>(top_k); ++r)
    top.push_back({{"label", ranked[r].second}, {"score", ranked[r].first}});
  j["top"] = top;
  return j;
}

void Task::write_prediction(const float* scores, int64_t top_k, std::string& out) const {
  out += prediction(scores, top_k).dump();
}

double EvalReport::get(const std::string& name) const {
  auto it = metrics.find(name);
  if (it == metrics.end() || !it->is_number())
    throw ConfigError("config key 'trainer.select_metric': this task reports no '" + name + "'");
  return it->get<double>();
}

static const char* kHeadline[] = {"accuracy", "macro_f1", "micro_f1", "hamming_loss", "mae", "rmse",
                                  "masked_accuracy", "perplexity", "loss"};

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
  return !(metric == "loss" || metric == "mae" || metric == "rmse" || metric == "hamming_loss" ||
           metric == "perplexity");
}

std::string Task::selection_metric(const std::string& task_type, const std::string& configured) {
  if (configured != "auto") return configured;
  return task_type == "regression" || task_type == "mlm" ? "loss" : "accuracy";
}

// ---- factory and helpers ----

bool task_has_labels(const std::string& type) { return type != "regression" && type != "mlm"; }

void label_names(const TaskConfig& config, const Example& example, std::vector<std::string>& out) {
  out.clear();
  if (config.type != "multilabel") {
    out.push_back(example.label);
    return;
  }
  for (auto part : split(example.label, config.label_separator[0])) {
    part = trim(part);
    if (!part.empty()) out.emplace_back(part);
  }
}

LabelMap labels_from_examples(const TaskConfig& config, const std::vector<Example>& examples) {
  std::vector<std::string> names, one;
  for (const auto& e : examples) {
    label_names(config, e, one);
    names.insert(names.end(), one.begin(), one.end());
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
  if (config.type == "mlm") return std::make_unique<MaskedLmTask>(config);
  throw ConfigError("config key 'task.type': unknown task '" + config.type + "'");
}

void check_scalar_loss(const torch::Tensor& loss) {
  if (loss.dim() != 0)
    throw TrainError(fmt::format("the loss must be a scalar for backward(), got shape {}; set "
                                 "task.reduction to \"mean\" or \"sum\"",
                                 shape_of(loss)));
}

}  // namespace ltk

namespace ltk {

void Task::set_thresholds(std::vector<double> t) {
  if (static_cast<int64_t>(t.size()) != num_outputs())
    throw Error(fmt::format("{} thresholds for a task of {} outputs", t.size(), num_outputs()));
  thresholds_ = std::move(t);
}

AnswerHead answer_head(const Task& task, const LabelMap& labels) {
  AnswerHead head(task.type(), task.type() == "regression" ? LabelMap{} : labels);
  if (const auto* binary = dynamic_cast<const BinaryTask*>(&task)) head.positive = binary->positive();
  head.thresholds = task.thresholds();
  head.temperature = task.temperature();
  head.check("the run's task.json");
  return head;
}

void Task::resolve_thresholds(const std::vector<std::string>& names) {
  thresholds_ = configured_thresholds(config_, names);
}

nlohmann::json Task::thresholds_json(const std::vector<std::string>& names) const {
  if (thresholds_.empty()) return nullptr;
  if (std::all_of(thresholds_.begin(), thresholds_.end(), [&](double v) { return v == thresholds_[0]; }))
    return thresholds_[0];
  nlohmann::json j = nlohmann::json::object();
  for (size_t c = 0; c < thresholds_.size(); ++c) j[names[c]] = thresholds_[c];
  return j;
}

torch::Tensor Task::row_scores(const torch::Tensor& outputs) const {
  const std::string& t = type();
  const size_t temperatures = temperature_.size();
  if (outputs.dim() != 2 || (t != "multiclass" && t != "binary" && t != "multilabel" && t != "regression") ||
      (temperatures > 1 && static_cast<int64_t>(temperatures) != outputs.size(1)))
    return scores(outputs);  // (a temperature per output that does not fit: LibTorch's error names the shapes)
  const torch::Tensor logits = outputs.to(torch::kCPU, torch::kFloat).contiguous();
  torch::Tensor out = torch::empty_like(logits);
  const int64_t K = logits.size(1);
  const float* in = logits.data_ptr<float>();
  float* to = out.data_ptr<float>();
  for (int64_t r = 0; r < logits.size(0); ++r) answer_scores(t, temperature_, in + r * K, K, to + r * K);
  return out;
}

torch::Tensor Task::calibrated(const torch::Tensor& outputs) const {
  if (temperature_.empty()) return outputs;
  if (temperature_.size() == 1) return outputs / temperature_[0];
  auto t = torch::tensor(temperature_, torch::TensorOptions().dtype(torch::kFloat64)).to(outputs.options());
  return outputs / t;
}

}  // namespace ltk
