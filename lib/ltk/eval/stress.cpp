#include "ltk/eval/stress.h"

#include <fmt/format.h>

#include <algorithm>

#include "ltk/core/error.h"
#include "ltk/eval/evaluator.h"

namespace ltk {

namespace {

/// The predicted label of a prediction (task.prediction()): "label", or the label set of multilabel.
std::string label_of(const nlohmann::ordered_json& prediction) {
  return prediction.contains("label") ? prediction["label"].get<std::string>() : prediction["labels"].dump();
}

/// How much less probable the labels predicted on the clean text are after the perturbation
/// (their mean, multilabel; 0 when nothing was predicted).
double prob_drop(const nlohmann::ordered_json& clean, const nlohmann::ordered_json& perturbed) {
  std::vector<std::string> labels;
  if (clean.contains("label")) labels.push_back(clean["label"].get<std::string>());
  else for (const auto& l : clean["labels"]) labels.push_back(l.get<std::string>());
  if (labels.empty()) return 0.0;
  double sum = 0;
  for (const auto& l : labels) sum += clean["scores"][l].get<double>() - perturbed["scores"][l].get<double>();
  return sum / static_cast<double>(labels.size());
}

/// At most `max` bytes of `text`, cut at a code point boundary, "..." when cut.
std::string shorten(const std::string& text, size_t max = 300) {
  if (text.size() <= max) return text;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end) + "...";
}

std::vector<nlohmann::ordered_json> predictions_of(const Task& task, const Predictions& p) {
  auto scores = p.scores.contiguous();
  const int64_t n = scores.size(0), k = scores.size(1);
  std::vector<nlohmann::ordered_json> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.push_back(task.prediction(scores.data_ptr<float>() + i * k));
  return out;
}

}  // namespace

nlohmann::json stress_test(TextModel& model, const Task& task, const Vocabulary& vocab, const ExampleEncoder& encode,
                           const std::vector<Example>& examples, const Predictions& clean, const StressOptions& options,
                           const torch::Device& device) {
  if (!task_has_labels(task.type()) || task.token_level())
    throw ConfigError("--stress measures how predicted labels hold up: it needs a multiclass, binary or multilabel "
                      "run (task.type is '" + task.type() + "')");
  const auto selected = select_perturbations(options.which);
  const auto n = static_cast<int64_t>(examples.size());
  if (clean.scores.size(0) != n)
    throw Error(fmt::format("stress: {} clean predictions for {} texts", clean.scores.size(0), n));
  const std::string metric = task.type() == "multilabel" ? "subset_accuracy" : "accuracy";
  const double clean_value = task.evaluate(clean).get(metric);
  const auto before = predictions_of(task, clean);
  const PerturbContext context{&vocab};
  nlohmann::json list = nlohmann::json::array();
  for (const Perturbation* p : selected) {
    // Only the texts the perturbation changed are predicted again; the others keep their clean
    // prediction (a re-batched unchanged text could otherwise "flip" on a near-tie).
    std::vector<Example> perturbed = examples;
    std::vector<Example> changed_examples;
    std::vector<int64_t> changed;
    for (int64_t i = 0; i < n; ++i) {
      auto rng = perturbation_rng(options.seed, p->name, i);
      auto& ex = perturbed[static_cast<size_t>(i)];
      ex.text = p->apply(ex.text, rng, context);
      if (ex.text != examples[static_cast<size_t>(i)].text) {
        changed.push_back(i);
        changed_examples.push_back(ex);
      }
    }
    const auto n_changed = static_cast<int64_t>(changed.size());
    nlohmann::json row = {{"name", p->name}, {"group", p->group}, {"summary", p->summary}, {"changed", n_changed},
                          {"metric", metric}, {"clean_value", clean_value}};
    Predictions merged = clean;
    std::vector<nlohmann::ordered_json> after = before;
    if (n_changed > 0) {
      const TextDataset data = encode(changed_examples);
      const Predictions part = predict(model, task, data, options.batch_size, device, vocab.size());
      merged.scores = clean.scores.clone();
      merged.scores.index_copy_(0, torch::tensor(changed, torch::kLong), part.scores);
      const auto part_after = predictions_of(task, part);
      for (int64_t k = 0; k < n_changed; ++k)
        after[static_cast<size_t>(changed[static_cast<size_t>(k)])] = part_after[static_cast<size_t>(k)];
    }
    int64_t flips = 0;
    double drops = 0;
    std::vector<std::pair<double, int64_t>> flipped;  // (drop, sample)
    for (int64_t i : changed) {
      const auto& a = before[static_cast<size_t>(i)];
      const auto& b = after[static_cast<size_t>(i)];
      const double d = prob_drop(a, b);
      drops += d;
      if (label_of(a) != label_of(b)) {
        ++flips;
        flipped.emplace_back(d, i);
      }
    }
    std::stable_sort(flipped.begin(), flipped.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    nlohmann::json worst = nlohmann::json::array();
    for (size_t k = 0; k < flipped.size() && static_cast<int64_t>(k) < options.worst; ++k) {
      const auto i = static_cast<size_t>(flipped[k].second);
      worst.push_back({{"line", examples[i].line},
                       {"text", shorten(examples[i].text)},
                       {"perturbed", shorten(perturbed[i].text)},
                       {"gold", examples[i].label},
                       {"clean", label_of(before[i])},
                       {"predicted", label_of(after[i])},
                       {"prob_drop", flipped[k].first}});
    }
    row["value"] = n_changed ? task.evaluate(merged).get(metric) : clean_value;
    row["flip_rate"] = n ? static_cast<double>(flips) / static_cast<double>(n) : 0.0;
    row["flip_rate_changed"] = n_changed ? static_cast<double>(flips) / static_cast<double>(n_changed) : 0.0;
    row["mean_prob_drop"] = n ? drops / static_cast<double>(n) : 0.0;
    row["worst"] = worst;
    list.push_back(row);
  }
  return {{"seed", options.seed}, {"samples", n}, {"metric", metric}, {"clean_value", clean_value},
          {"perturbations", list}};
}

std::string stress_table(const nlohmann::json& stress) {
  const std::string metric = stress.value("metric", "accuracy");
  std::string out = fmt::format("stress test (seed {}, {} texts; clean {} {:.4f})\n", stress.value("seed", 0),
                                stress.value("samples", 0), metric, stress.value("clean_value", 0.0));
  out += fmt::format("  {:<20} {:>8} {:>10} {:>9} {:>8} {:>10}\n", "perturbation", "changed", metric, "change",
                     "flips", "prob drop");
  for (const auto& r : stress.at("perturbations")) {
    if (r.value("changed", 0) == 0) {
      out += fmt::format("  {:<20} {:>8} {:>10}\n", r.value("name", ""), 0, "(applies to no text)");
      continue;
    }
    const double v = r.value("value", 0.0);
    out += fmt::format("  {:<20} {:>8} {:>10.4f} {:>+9.4f} {:>7.1f}% {:>10.4f}\n", r.value("name", ""),
                       r.value("changed", 0), v, v - r.value("clean_value", 0.0), 100.0 * r.value("flip_rate", 0.0),
                       r.value("mean_prob_drop", 0.0));
  }
  return out;
}

}  // namespace ltk
