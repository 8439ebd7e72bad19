// The phase between fitting and testing (phases.h): task.calibrate's temperature, fitted on the
// validation split with the best weights, stored in task.json and used from then on.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/checkpoint.h"
#include "ltk/task/calibration.h"
#include "ltk/train/phases.h"

namespace ltk {

void calibrate(const RunContext& ctx, PreparedData& data, TextModel& model, TrainSummary& summary) {
  const Config& config = ctx.config;
  if (config.task.calibrate != "temperature" || !data.valid) return;
  if (!summary.model_is_best) {
    load_weights(model, ctx.run.checkpoint("best"));
    summary.model_is_best = true;
  }
  model.to(ctx.device);
  Task& task = *data.task;
  task.set_temperature({});
  Predictions p = predict(model, task, *data.valid, config.trainer.eval_batch_size, ctx.device, data.vocab.size(), 0, 1,
                          /*raw_outputs=*/true);
  const torch::Tensor logits = p.scores;
  auto ece_now = [&] {
    p.scores = task.scores(logits).to(torch::kFloat);
    return task.evaluate(p).get("ece");
  };
  const double before = ece_now();
  std::vector<double> t = fit_temperature(config.task.type, logits, p.targets);
  task.set_temperature(t);
  const double after = ece_now();
  nlohmann::json stored = nlohmann::json{{"class_weights", data.class_weights}, {"temperature", t}};
  write_file_atomic(ctx.run.file("task.json"), stored.dump() + "\n");
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

}  // namespace ltk
