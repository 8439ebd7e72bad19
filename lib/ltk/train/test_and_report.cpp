// The fourth phase of a training run: the best checkpoint tested, the report written (phases.h).
#include <fmt/format.h>

#include "ltk/core/log.h"
#include "ltk/eval/evaluator.h"
#include "ltk/eval/report.h"
#include "ltk/io/checkpoint.h"
#include "ltk/io/hf.h"
#include "ltk/io/run.h"
#include "ltk/train/phases.h"

namespace ltk {

namespace {

EvalReport evaluate_best(const RunContext& ctx, const PreparedData& data, TextModel& model, const TextDataset& set,
                         const TrainSummary& summary) {
  if (!summary.model_is_best) load_weights(model, ctx.run.checkpoint("best"));
  model.to(ctx.device);
  return data.task->evaluate(
      predict(model, *data.task, set, ctx.config.trainer.eval_batch_size, ctx.device, data.vocab.size()));
}

}  // namespace

RunReport test_and_report(const RunContext& ctx, const PreparedData& data, TextModel& model, TrainSummary& summary) {
  const Config& config = ctx.config;
  if (data.test) {
    auto report = evaluate_best(ctx, data, model, *data.test, summary);
    log::info("[test] best checkpoint (epoch {}): {} on {} samples", summary.best_epoch, report.summary(),
              data.test->num_texts());
    nlohmann::json record = {{"kind", "test"}, {"epoch", summary.best_epoch}, {"step", summary.steps}};
    record.update(report.headline());
    ctx.run.append_metrics(record);
    summary.test = report;
  }
  // The report: the test split when there is one, else the validation split, with the best weights.
  RunReport out;
  out.stats = {{"vocabulary", fmt::format("{} tokens", data.vocab.size())},
               {"labels", fmt::format("{}", data.labels.size())}};
  for (const auto& [name, set] : {std::pair<const char*, const TextDataset*>{"train", &data.train},
                                  {"valid", data.valid ? &*data.valid : nullptr},
                                  {"test", data.test ? &*data.test : nullptr}})
    if (set)
      for (auto& row : dataset_stats(name, *set)) out.stats.push_back(row);
  if (!summary.calibration.empty()) out.stats.emplace_back("calibration", summary.calibration);
  if (!summary.thresholds.empty()) out.stats.emplace_back("thresholds", summary.thresholds);
  summary.shown = summary.test;
  summary.shown_name = "test: " + config.data.test;
  if (!summary.shown && data.valid) {
    summary.shown = evaluate_best(ctx, data, model, *data.valid, summary);
    summary.shown_name = "valid: " + config.data.valid;
  }
  if (config.task.type == "mlm") {
    // The pretrained encoder as a Hugging Face directory: model.pretrained_dir of a classifier.
    export_hf(load_run(ctx.run.path(), "best", "cpu"), ctx.run.file("bert"));
    log::info("[export] {} (BertForMaskedLM): fine-tune it with model.pretrained_dir", ctx.run.file("bert"));
  }
  out.evaluated = summary.shown_name + " (best checkpoint)";
  out.path = write_run_report(ctx.run.path(), to_json(config), summary.shown ? &*summary.shown : nullptr, out.evaluated,
                              out.stats);
  return out;
}

}  // namespace ltk
