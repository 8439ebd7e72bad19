#include "ltk/metrics/metrics.h"

#include <fmt/format.h>

#include "ltk/core/error.h"

namespace ltk {

ClassificationMetrics classification_metrics(const std::vector<int64_t>& gold,
                                             const std::vector<int64_t>& predicted, int64_t num_classes) {
  if (gold.size() != predicted.size())
    throw Error(fmt::format("metrics: {} gold labels for {} predictions", gold.size(), predicted.size()));
  ClassificationMetrics m;
  auto C = static_cast<size_t>(num_classes);
  m.samples = static_cast<int64_t>(gold.size());
  m.confusion.assign(C, std::vector<int64_t>(C, 0));
  m.per_class.assign(C, ClassScores{});
  int64_t correct = 0;
  for (size_t i = 0; i < gold.size(); ++i) {
    auto g = gold[i], p = predicted[i];
    if (g < 0 || g >= num_classes || p < 0 || p >= num_classes)
      throw Error(fmt::format("metrics: class id out of range [0, {}) at sample {}", num_classes, i));
    m.confusion[g][p]++;
    correct += g == p;
  }
  m.accuracy = m.samples ? static_cast<double>(correct) / static_cast<double>(m.samples) : 0.0;
  double f1_sum = 0;
  int present = 0;
  for (size_t c = 0; c < C; ++c) {
    int64_t tp = m.confusion[c][c], support = 0, pred = 0;
    for (size_t k = 0; k < C; ++k) {
      support += m.confusion[c][k];
      pred += m.confusion[k][c];
    }
    auto& s = m.per_class[c];
    s.support = support;
    s.predicted = pred;
    s.precision = pred ? static_cast<double>(tp) / static_cast<double>(pred) : 0.0;
    s.recall = support ? static_cast<double>(tp) / static_cast<double>(support) : 0.0;
    s.f1 = (s.precision + s.recall) > 0 ? 2 * s.precision * s.recall / (s.precision + s.recall) : 0.0;
    if (support || pred) {
      f1_sum += s.f1;
      ++present;
    }
  }
  m.macro_f1 = present ? f1_sum / present : 0.0;
  return m;
}

nlohmann::json ClassificationMetrics::to_json(const std::vector<std::string>& labels) const {
  nlohmann::json per = nlohmann::json::object();
  for (size_t c = 0; c < per_class.size(); ++c) {
    const auto& s = per_class[c];
    per[labels.at(c)] = {{"precision", s.precision}, {"recall", s.recall}, {"f1", s.f1}, {"support", s.support}};
  }
  return {{"samples", samples}, {"accuracy", accuracy}, {"macro_f1", macro_f1}, {"loss", loss},
          {"per_class", per},   {"confusion", confusion}, {"labels", labels}};
}

std::string ClassificationMetrics::table(const std::vector<std::string>& labels) const {
  size_t w = 5;
  for (const auto& l : labels) w = std::max(w, l.size());
  w = std::min<size_t>(w, 40);
  std::string out = fmt::format("samples {}  accuracy {:.4f}  macro_f1 {:.4f}  loss {:.4f}\n", samples, accuracy,
                                macro_f1, loss);
  out += fmt::format("{:<{}}  {:>9}  {:>9}  {:>9}  {:>7}\n", "label", w, "precision", "recall", "f1", "support");
  for (size_t c = 0; c < per_class.size(); ++c) {
    const auto& s = per_class[c];
    out += fmt::format("{:<{}}  {:>9.4f}  {:>9.4f}  {:>9.4f}  {:>7}\n", labels.at(c).substr(0, w), w, s.precision,
                       s.recall, s.f1, s.support);
  }
  return out;
}

}  // namespace ltk
