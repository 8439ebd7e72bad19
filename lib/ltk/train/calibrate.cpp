// The phase between fitting and testing (phases.h): task.calibrate's temperature, then
// task.threshold "tune"'s thresholds, fitted on the validation split with the best weights,
// stored in task.json and used from then on.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/strings.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/checkpoint.h"
#include "ltk/task/calibration.h"
#include "ltk/train/phases.h"

namespace ltk {

namespace {

constexpr int64_t kMinPositives = 5;  // a label with fewer positives on valid keeps 0.5

// Fits the temperature on `p` (raw logits in p.scores) and sets it on the task.
void fit_task_temperature(const RunContext& ctx, Task& task, Predictions p, TrainSummary& summary) {
  const torch::Tensor logits = p.scores;
  auto ece_now = [&] {
    p.scores = task.scores(logits).to(torch::kFloat);
    return task.evaluate(p).get("ece");
  };
  const double before = ece_now();
  std::vector<double> t = fit_temperature(task.type(), logits, p.targets);
  task.set_temperature(t);
  const double after = ece_now();
  std::string shown = nlohmann::json(t).dump();
  if (t.size() > 8)
    shown = fmt::format("{} values, from {:.3f} to {:.3f}", t.size(), *std::min_element(t.begin(), t.end()),
                        *std::max_element(t.begin(), t.end()));
  summary.calibration = fmt::format("temperature {} fitted on valid: ECE {:.4f} -> {:.4f}", shown, before, after);
  log::info("[calibrate] {}", summary.calibration);
  for (double v : t)
    if (v < 0.0501 || v > 19.95) {
      log::warn(
          "[calibrate] a temperature reached the end of its range [0.05, 20]: the validation split is "
          "separated perfectly (or not at all) by the model, so its probabilities end near 0 and 1; "
          "calibrate on a larger or harder validation split");
      break;
    }
  ctx.run.append_metrics(
      {{"kind", "calibration"}, {"temperature", t}, {"valid_ece_before", before}, {"valid_ece_after", after}});
}

// Tunes each label's threshold on the (calibrated) probabilities of `p` and sets them on the task.
void tune_task_thresholds(const RunContext& ctx, const PreparedData& data, Task& task, Predictions p,
                          TrainSummary& summary) {
  p.scores = task.scores(p.scores).to(torch::kFloat);
  const EvalReport before = task.evaluate(p);
  TunedThresholds tuned = tune_thresholds(p.scores, p.targets, kMinPositives);
  task.set_thresholds(tuned.thresholds);
  const EvalReport after = task.evaluate(p);
  const bool binary = task.type() == "binary";
  nlohmann::json by_label = nlohmann::json::object(), f1 = nlohmann::json::object();
  std::vector<std::string> kept;
  std::string shown;
  for (size_t c = 0; c < tuned.thresholds.size(); ++c) {
    const std::string& name = data.labels.name(binary ? data.train.positive_class() : static_cast<int64_t>(c));
    by_label[name] = tuned.thresholds[c];
    f1[name] = tuned.f1[c];
    if (!tuned.tuned[c]) kept.push_back(fmt::format("{} ({})", name, tuned.positives[c]));
    shown += fmt::format("{}{} {:.4f} (F1 {:.4f}{})", shown.empty() ? "" : ", ", name, tuned.thresholds[c], tuned.f1[c],
                         tuned.tuned[c] ? "" : ", kept");
  }
  std::string gain;
  for (const char* m : {"micro_f1", "macro_f1"})
    if (before.metrics.contains(m))
      gain += fmt::format(", {} on valid {:.4f} -> {:.4f}", m, before.get(m), after.get(m));
  summary.thresholds = "tuned on valid: " + shown + gain;
  const auto& t = tuned.thresholds;
  log::info("[thresholds] tuned on valid: {}{}",
            t.size() <= 8
                ? shown
                : fmt::format("{} labels, from {:.4f} to {:.4f} (each in metrics.jsonl and the report)", t.size(),
                              *std::min_element(t.begin(), t.end()), *std::max_element(t.begin(), t.end())),
            gain);
  if (!kept.empty())
    log::info("[thresholds] {} label(s) with fewer than {} positives on valid keep 0.5: {}", kept.size(), kMinPositives,
              join(kept, ", "));
  ctx.run.append_metrics({{"kind", "thresholds"},
                          {"thresholds", by_label},
                          {"valid_f1", f1},
                          {"valid_before", before.headline()},
                          {"valid_after", after.headline()}});
}

}  // namespace

void calibrate(const RunContext& ctx, PreparedData& data, TextModel& model, TrainSummary& summary) {
  const Config& config = ctx.config;
  const bool temperature = config.task.calibrate == "temperature", tune = config.task.threshold.is_string();
  if (!(temperature || tune) || !data.valid) return;
  if (!summary.model_is_best) {
    load_weights(model, ctx.run.checkpoint("best"));
    summary.model_is_best = true;
  }
  model.to(ctx.device);
  Task& task = *data.task;
  task.set_temperature({});
  Predictions p = predict(model, task, *data.valid, config.trainer.eval_batch_size, ctx.device, data.vocab.size(), 0, 1,
                          /*raw_outputs=*/true);
  nlohmann::json stored = {{"class_weights", data.class_weights}};
  if (temperature) {
    fit_task_temperature(ctx, task, p, summary);
    stored["temperature"] = task.temperature();
  }
  if (tune) {
    tune_task_thresholds(ctx, data, task, p, summary);
    stored["thresholds"] = task.thresholds();
  }
  write_file_atomic(ctx.run.file("task.json"), stored.dump() + "\n");
}

}  // namespace ltk
