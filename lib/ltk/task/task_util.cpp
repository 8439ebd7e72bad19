#include "ltk/task/task_util.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "ltk/core/error.h"
#include "ltk/metrics/metrics.h"

namespace ltk::task_detail {

std::string shape_of(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

torch::Tensor weights_tensor(const std::vector<double>& w, const torch::Tensor& like) {
  return torch::tensor(w, torch::kDouble).to(like.device(), like.scalar_type());
}

torch::Tensor squared_hinge(const torch::Tensor& outputs, const torch::Tensor& targets, const torch::Tensor& pos_weight) {
  auto loss = (1 - (2 * targets - 1) * outputs).clamp_min(0).pow(2);
  return pos_weight.defined() ? loss * (1 + targets * (pos_weight - 1)) : loss;
}

torch::Tensor reduce(const torch::Tensor& losses, const std::string& reduction) {
  return reduction == "sum" ? losses.sum() : losses.mean();
}

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

// Averages over classes (macro = unweighted over the classes present, weighted = by support) and
// the most frequent confusions.
void add_class_averages(EvalReport& r, const LabelMap& labels) {
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

EvalReport classification_report(const std::vector<int64_t>& gold, const std::vector<int64_t>& pred,
                                        const LabelMap& labels, double loss) {
  auto m = classification_metrics(gold, pred, labels.size());
  m.loss = loss;
  return EvalReport{m.to_json(labels.names()), m.table(labels.names())};
}

std::optional<BadCase> single_label_bad_case(const nlohmann::ordered_json& prediction, const std::string& gold) {
  std::string got = prediction.at("label").get<std::string>();
  if (got == gold) return std::nullopt;
  const double confidence = prediction.at("score").get<double>();
  return BadCase{confidence, gold, got, fmt::format("{:.6f}", confidence)};
}

}  // namespace ltk::task_detail
