// ltk::train: a config in, a trained run directory out — what ltk-train does, as a function. The
// public API of training. No LibTorch in this header.
//
//   ltk::Config config = ltk::load_config("configs/fortunes_bow.json", {"trainer.epochs=3"});
//   ltk::TrainResult r = ltk::train(config);
//   ltk::Classifier clf(r.run_dir);
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "ltk/config/config.h"
#include "ltk/models/load_config.h"
#include "ltk/train/train_options.h"

namespace ltk {

/// What a training run did. Its files (checkpoints, metrics.jsonl, report.html) are in run_dir.
struct TrainResult {
  std::string run_dir;
  int64_t steps = 0;
  int64_t epochs = 0;  ///< epochs begun
  int64_t best_epoch = 0;
  int64_t best_step = 0;
  double best_metric = 0;  ///< trainer.select_metric of the best checkpoint on data.valid
  double seconds = 0;      ///< the training loop's wall time
  double samples_per_s = 0;
  bool early_stopped = false;
  bool paused = false;  ///< stopped at TrainOptions::until_epoch, resumable
  int interrupted = 0;  ///< the signal that stopped it early (resumable), or 0
  /// The best checkpoint's headline metrics on data.test (accuracy, macro_f1, loss, ...); null
  /// without a test split.
  nlohmann::json test;
  /// With TrainOptions::baseline: the comparison with the tf-idf linear baseline; null otherwise.
  nlohmann::json baseline;
};

/// Trains `config` (ltk-train --config): the data read and encoded, the model built, fitted with
/// validation and checkpoints, tested with its best checkpoint and reported. Throws ltk::Error
/// subclasses (ConfigError, DataError, ...) naming the key, file or value at fault.
TrainResult train(const Config& config, const TrainOptions& options = {});

}  // namespace ltk
