// Evaluation and prediction: eval mode (restored afterwards, P5), no graph, outputs moved to
// the CPU batch by batch (P6).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <vector>

#include "ltk/data/dataset.h"
#include "ltk/models/text_model.h"
#include "ltk/task/task.h"

namespace ltk {

/// Puts a module in eval mode for its lifetime and restores the previous mode.
class EvalModeGuard {
 public:
  /// A module already in eval mode is not written to (model threads of ltk-serve share one).
  explicit EvalModeGuard(torch::nn::Module& module) : module_(module), was_training_(module.is_training()) {
    if (was_training_) module_.eval();
  }
  ~EvalModeGuard() {
    if (was_training_) module_.train(true);
  }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

/// Checks that every token id of the batch is below `vocab_size` (P8), before any device.
void check_token_ids(const Batch& batch, int64_t vocab_size, const TextDataset& data);

/// Throws TrainError naming both devices unless every parameter of `model` is on `device` (P1).
void check_same_device(const torch::nn::Module& model, const torch::Device& device);

/// Runs the model over `data` in order: scores, gold targets and summed loss on the CPU. Polls the
/// stop flag between batches (StopRequested, ltk/core/stop.h). With `shards` > 1 only the samples
/// i with i % shards == shard are run; the other rows of scores and targets are zeros, so that the
/// shards' results sum to the whole (distributed validation). `raw_outputs`: the model's outputs
/// (logits) in place of the task's scores (temperature scaling fits on them). A windowed dataset
/// (data.long_text "window") is predicted per text: its windows' outputs pooled by pool_windows(),
/// then scored, lost and sharded per text.
Predictions predict(TextModel& model, const Task& task, const TextDataset& data, int64_t batch_size,
                    const torch::Device& device, int64_t vocab_size, int shard = 0, int shards = 1,
                    bool raw_outputs = false);

/// The outputs of a windowed dataset's samples [W, K] pooled per text [T, K] by its window_pool()
/// (the mean or the maximum of each column over the text's windows); `outputs` as they are when
/// no text has more than one window.
torch::Tensor pool_windows(const torch::Tensor& outputs, const TextDataset& data);

/// Floating-point targets in the outputs' type (a float64 model's loss against float32 labels).
torch::Tensor targets_like(const torch::Tensor& labels, const torch::Tensor& outputs);

/// The contract that lets outputs be scored per sample and batches be split across processes:
/// the model's forward returns a tensor with one row per sample (per masked piece for mlm), never
/// a scalar such as a loss or a mean. Runs it on the first samples of `data`; ConfigError naming
/// `model_type` and the shape otherwise.
void check_forward_outputs(TextModel& model, const Task& task, const TextDataset& data, const torch::Device& device,
                           const std::string& model_type);

}  // namespace ltk
