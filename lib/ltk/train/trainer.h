// The training loop: the article's five steps, written once (train_step), plus validation,
// checkpoints and progress lines.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <optional>

#include "ltk/config/config.h"
#include "ltk/data/dataset.h"
#include "ltk/io/run_dir.h"
#include "ltk/models/text_model.h"
#include "ltk/train/optim.h"
#include "ltk/train/task.h"

namespace ltk {

struct TrainSummary {
  int64_t steps = 0;
  int64_t epochs = 0;
  int64_t best_epoch = 0;
  double best_metric = 0;     ///< value of trainer.select_metric at the best epoch (valid split)
  double seconds = 0;         ///< wall time of the training loop
  double samples_per_s = 0;   ///< training throughput
  double last_train_loss = 0; ///< mean loss over the last epoch
  std::optional<EvalReport> test;  ///< the best checkpoint on data.test
};

class Trainer {
 public:
  /// `model` must already sit on `device`; the optimiser is built here, from its parameters (P3).
  Trainer(const Config& config, std::shared_ptr<TextModel> model, const Task& task, torch::Device device,
          const RunDirectory& run, int64_t vocab_size);

  /// Trains for trainer.epochs, validating on `valid` (if any) after each epoch and keeping
  /// checkpoints/best.pt and checkpoints/last.pt.
  TrainSummary fit(const TextDataset& train, const TextDataset* valid);

  /// One optimisation step on a batch already on the device: forward, loss (checked scalar and
  /// finite), zero_grad, backward, step. Returns the loss.
  double train_step(const Batch& batch, int64_t step);

  torch::optim::Optimizer& optimizer() { return *optimizer_; }

 private:
  void save_checkpoint(const std::string& which, const nlohmann::json& meta);

  const Config& config_;
  std::shared_ptr<TextModel> model_;
  const Task& task_;
  torch::Device device_;
  const RunDirectory& run_;
  int64_t vocab_size_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

/// The whole training command: threads, seed, device, run directory, data, vocabulary, model,
/// training, and the test split evaluated with the best checkpoint. Used by ltk-train and tests.
TrainSummary run_training(const Config& config, bool overwrite);

}  // namespace ltk
