// The whole training command, from a validated Config to a finished run directory, in named phases
// (phases.h): prepare the data, build the model, fit, test and report, the baseline beside.
#pragma once

#include <string>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/train/train_options.h"
#include "ltk/train/trainer.h"

namespace ltk {

/// Threads, seed, device, run directory, data, vocabulary, model, training, and the test split
/// evaluated with the best checkpoint; a data-parallel job when launched as one (torchrun's
/// environment). A stop request (SIGINT, SIGTERM) ends it with TrainSummary::interrupted.
/// Used by ltk-train, ltk::train and the tests.
TrainSummary run_training(const Config& config, const TrainOptions& options = {});

/// The tf-idf linear baseline of a run (ltk-train --baseline): the same data, split, task and
/// tokenizer (words for a wordpiece or sentencepiece one), model.type "linear" with its defaults,
/// task.loss squared_hinge (LinearSVC) for class tasks, trained into output_dir/baseline.
/// ConfigError for a run it cannot compare with (mlm, sentence pairs, a linear run).
Config baseline_config(const Config& config);

/// For `ltk-train --resume DIR`: the run's saved config with `overrides` applied. A change to the
/// data, task or model sections is refused with the keys that differ; other changes are logged.
Config resume_config(const std::string& run_dir, const std::vector<std::string>& overrides);

}  // namespace ltk
