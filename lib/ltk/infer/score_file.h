// A run's best checkpoint scored on a labelled file: what ltk-eval reports and what ltk-sweep
// compares configurations with.
#pragma once

#include <string>
#include <vector>

#include "ltk/data/dataset.h"
#include "ltk/data/reader.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/run.h"
#include "ltk/task/task.h"

namespace ltk {

struct ScoredFile {
  std::vector<Example> examples;
  TextDataset data;
  Predictions predictions;
  EvalReport report;
  double seconds = 0;  ///< the model's pass over the file (batches, forward, scores)
};

/// The examples of `path` (in `format`; "" or "auto": the run's own data.format), read as the run
/// reads its data (labelled where its task needs labels), a label allowed to be missing when
/// `labelled` is false. A shard is refused (it holds no texts); skipped rows are told on stderr.
std::vector<Example> read_labelled(const LoadedRun& run, const std::string& path, const std::string& format = "",
                                   bool labelled = true);

/// Reads `path` (in `format`; "" or "auto": the run's own data.format), encodes it with the run's
/// tokenizer and vocabulary, and scores it. Skipped rows (data.on_bad_row "skip") are told on stderr.
ScoredFile score_file(const LoadedRun& run, const std::string& path, int64_t batch_size, const std::string& format = "");

}  // namespace ltk
