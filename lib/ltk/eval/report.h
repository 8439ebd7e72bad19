// Result analysis: a self-contained HTML
// report (inline SVG, no network, no scripts) with training curves, confusion heatmap, per-class
// F1, reliability diagram, the config and the data statistics.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "ltk/data/dataset.h"
#include "ltk/data/reader.h"
#include "ltk/task/task.h"

namespace ltk {

struct ReportInput {
  std::string title;
  nlohmann::json config;                  ///< the resolved config
  std::vector<nlohmann::json> records;    ///< metrics.jsonl
  nlohmann::json evaluation;              ///< EvalReport::metrics of the evaluated split (may be null)
  std::string evaluation_name;            ///< e.g. "test: data/fortunes_en/test.tsv"
  std::vector<std::pair<std::string, std::string>> data_stats;  ///< (name, value) rows
  /// The run against its tf-idf linear baseline on the same split (ltk-train --baseline): model,
  /// baseline, run, rows of {metric, model, baseline, difference, higher_is_better}; null: none.
  nlohmann::json baseline;
  /// Stress tests of the evaluated split (ltk-eval --stress, ltk/eval/stress.h); null: none.
  nlohmann::json stress;
};

/// The report as one HTML document.
std::string render_report(const ReportInput& input);

/// Writes <run_dir>/report.html (or `path` when given) from the run's config and metrics.jsonl
/// and an evaluation. Returns the path written.
std::string write_run_report(const std::string& run_dir, const nlohmann::json& config, const EvalReport* evaluation,
                             const std::string& evaluation_name,
                             const std::vector<std::pair<std::string, std::string>>& data_stats,
                             const std::string& path = "", const nlohmann::json& baseline = nullptr,
                             const nlohmann::json& stress = nullptr);

/// Data statistics rows for the report: samples, tokens per sample, truncated samples.
std::vector<std::pair<std::string, std::string>> dataset_stats(const std::string& name, const TextDataset& data);

/// Reads metrics.jsonl (one JSON object per line); a malformed line names file:line.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

}  // namespace ltk
