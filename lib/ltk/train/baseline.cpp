// Beside a training run: the tf-idf linear baseline on the same data, and the comparison (phases.h).
#include <fmt/format.h>

#include <filesystem>

#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/core/stop.h"
#include "ltk/data/shards.h"
#include "ltk/eval/report.h"
#include "ltk/models/load_config.h"
#include "ltk/train/phases.h"
#include "ltk/train/run_training.h"

namespace ltk {

namespace {

/// The baseline of a run as a comparison table: the figures of `model` and `baseline` on one
/// split, and their difference.
nlohmann::json baseline_comparison(const std::string& model_type, const EvalReport& model, const std::string& dir,
                                   const EvalReport& baseline) {
  nlohmann::json rows = nlohmann::json::array();
  const nlohmann::json headline = model.headline();  // not a temporary in the range: it must outlive the loop
  for (const auto& [k, v] : headline.items()) {
    // The losses differ (the baseline's is the squared hinge): only the task's figures compare.
    if (k == "samples" || k == "loss" || !baseline.metrics.contains(k)) continue;
    const double a = v.get<double>(), b = baseline.metrics.at(k).get<double>();
    rows.push_back({{"metric", k},
                    {"model", a},
                    {"baseline", b},
                    {"difference", a - b},
                    {"higher_is_better", Task::higher_is_better(k)}});
  }
  return {{"model", model_type}, {"baseline", "tf-idf linear"}, {"run", dir}, {"rows", rows}};
}

void log_comparison(const std::string& model_type, const std::string& split, const nlohmann::json& comparison) {
  log::info("[baseline] {} (best checkpoints): {:<12} {:>10} {:>10} {:>10}", split, "metric", model_type, "baseline",
            "difference");
  for (const auto& row : comparison["rows"])
    log::info("[baseline] {:<12} {:>10.4f} {:>10.4f} {:>+10.4f}", row["metric"].get<std::string>(),
              row["model"].get<double>(), row["baseline"].get<double>(), row["difference"].get<double>());
}

}  // namespace

void compare_baseline(const RunContext& ctx, TrainSummary& summary, RunReport& report) {
  const Config& config = ctx.config;
  if (!summary.shown) return;
  // The article's first question, answered on the same split: how far above a traditional method?
  const Config b = baseline_config(config);
  log::info("[baseline] training the tf-idf linear baseline on the same data into {}", b.output_dir);
  // The baseline's run closes its own log; this run's is reopened after it, whatever happens.
  auto reopen_log = [&] {
    try {
      log::set_file(ctx.run.log_path());
    } catch (const std::exception&) {  // the console still has every line
    }
  };
  try {
    TrainOptions options;
    options.overwrite = true;
    Phase inner = Phase::data;
    TrainSummary bs = run_phases(b, options, nullptr, inner);
    reopen_log();
    if (bs.interrupted) throw StopRequested(bs.interrupted);
    if (!bs.shown) throw Error("the baseline run has no evaluation of " + summary.shown_name);
    nlohmann::json comparison = baseline_comparison(config.model.type, *summary.shown, b.output_dir, *bs.shown);
    log_comparison(config.model.type, summary.shown_name, comparison);
    report.path = write_run_report(ctx.run.path(), to_json(config), &*summary.shown, report.evaluated, report.stats, "",
                                   comparison);
    summary.baseline = comparison;
    summary.baseline["seconds"] = bs.seconds;
    summary.baseline["split"] = summary.shown_name;
  } catch (const StopRequested& stop) {  // the run is complete: only the baseline is cut short
    reopen_log();
    log::progress_done();
    log::warn("[baseline] stopped by signal {} while the baseline trained; the run itself is complete in {}",
              stop.signal(), ctx.run.path());
  } catch (const std::exception& e) {
    reopen_log();
    log::warn("[baseline] the baseline failed ({}); the run itself is complete in {}", e.what(), ctx.run.path());
  }
}

Config baseline_config(const Config& config) {
  if (!task_has_labels(config.task.type) && config.task.type != "regression")
    throw ConfigError("--baseline: a " + config.task.type + " task has no labels to compare with a baseline");
  if (!config.data.text_pair_column.empty() || !config.data.text_pair_field.empty())
    throw ConfigError("--baseline: the linear baseline reads one text, and this run's data are sentence pairs");
  if (config.model.type == "linear") throw ConfigError("--baseline: this run is the linear baseline already");
  if (config.data.valid.empty() && config.data.test.empty())
    throw ConfigError("--baseline compares on data.test (or data.valid): this config has neither");
  nlohmann::json j = to_json(config);
  j["name"] = config.name + "-baseline";
  j["output_dir"] = (std::filesystem::path(config.output_dir) / "baseline").string();
  j["model"] = {{"type", "linear"}};  // its defaults: word 1-2 grams, C 1, solved exactly (dual_cd)
  j.erase("optimizer");
  j["scheduler"] = {{"type", "linear"}};
  j["trainer"] = {{"epochs", 10},
                  {"batch_size", 32},
                  {"eval_batch_size", config.trainer.eval_batch_size},
                  {"log_every", config.trainer.log_every},
                  {"progress", config.trainer.progress}};
  auto& data = j["data"];
  for (const char* key : {"train", "valid", "test"}) {  // a shard: the baseline reads the text it was encoded from
    const std::string path = data.value(key, "");
    if (!is_shard(path)) continue;
    const std::string source = read_shard_manifest(path).value("source_path", "");
    if (!std::filesystem::is_regular_file(source))
      throw ConfigError(
          fmt::format("--baseline reads raw text: data.{} is shard {}, encoded from {}, which is gone; "
                      "name the raw file in data.{}",
                      key, path, source.empty() ? "a file its manifest does not name" : source, key));
    data[key] = source;
  }
  data["max_len"] = 0;  // the linear model reads every n-gram of a text: no windows either
  data["long_text"] = "truncate";
  data["window_overlap"] = 0;
  data["window_pool"] = "mean";
  data["vocab"] = nlohmann::json::object();
  data["special_tokens"] = false;
  const std::string tok = config.data.tokenizer.type;
  if (tok == "wordpiece" || tok == "sentencepiece")  // pieces of a model's own: words instead
    data["tokenizer"] = {{"type", "basic"}, {"lowercase", config.data.tokenizer.lowercase}};
  auto& task = j["task"];
  if (config.task.type != "regression") task["loss"] = "squared_hinge";  // LinearSVC
  task["label_smoothing"] = 0.0;
  return parse_config(j);
}

}  // namespace ltk
