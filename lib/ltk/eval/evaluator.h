// Evaluation and prediction: eval mode (restored afterwards, P5), no graph, outputs moved to
// the CPU batch by batch (P6).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <vector>

#include "ltk/data/dataset.h"
#include "ltk/eval/metrics.h"
#include "ltk/models/text_model.h"
#include "ltk/train/task.h"

namespace ltk {

/// Puts a module in eval mode for its lifetime and restores the previous mode.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(torch::nn::Module& module) : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~EvalModeGuard() { module_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

struct Predictions {
  torch::Tensor probabilities;   ///< [N, C] float, on the CPU, in dataset order
  std::vector<int64_t> predicted;
  std::vector<int64_t> gold;     ///< empty for unlabelled data
  double loss_sum = 0;           ///< summed per-sample loss (labelled data only)
};

/// Checks that every token id of the batch is below `vocab_size` (P8), before any device.
void check_token_ids(const Batch& batch, int64_t vocab_size, const TextDataset& data);

/// Runs the model over `data` in order.
Predictions predict(TextModel& model, const Task& task, const TextDataset& data, int64_t batch_size,
                    const torch::Device& device, int64_t vocab_size);

/// Metrics of labelled predictions.
ClassificationMetrics score(const Predictions& p, int64_t num_classes);

}  // namespace ltk
