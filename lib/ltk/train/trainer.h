// The training loop: the article's five steps (forward, loss, zero_grad, backward, step),
// written once, with gradient accumulation and clipping, learning-rate schedules, validation,
// early stopping, resumable checkpoints, non-finite guards and stop requests.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <optional>

#include "ltk/config/config.h"
#include "ltk/data/dataset.h"
#include "ltk/io/run_dir.h"
#include "ltk/models/text_model.h"
#include "ltk/task/task.h"
#include "ltk/train/grad_scaler.h"
#include "ltk/train/optim.h"

namespace ltk {

namespace dist {
class Group;
}

struct TrainSummary {
  int64_t steps = 0;
  int64_t epochs = 0;          ///< epochs begun
  int64_t best_epoch = 0;
  int64_t best_step = 0;
  double best_metric = 0;      ///< trainer.select_metric at the best checkpoint (valid split)
  double seconds = 0;          ///< wall time of this process's training loop
  double samples_per_s = 0;    ///< training throughput of this process
  double data_seconds = 0;     ///< of `seconds`: making batches (collate, id checks, device copy)
  double eval_seconds = 0;     ///< of `seconds`: validation and checkpoints
  double sync_seconds = 0;     ///< of `seconds`: distributed, the steps' all-reduces (and waiting for slower ranks)
  double sync_bytes = 0;       ///< distributed: gradient bytes all-reduced per step
  double last_train_loss = 0;  ///< mean loss over the last epoch's steps
  int64_t nonfinite_skipped = 0;
  int64_t overflow_skipped = 0;  ///< with a loss scaler (fp16): steps skipped because the gradients overflowed
  double loss_scale = 0;         ///< with a loss scaler: its scale at the end (0 without one)
  bool early_stopped = false;
  int interrupted = 0;         ///< the signal that stopped training early, or 0
  bool paused = false;         ///< stopped at the end of Trainer::set_until_epoch's epoch, checkpointed
  bool model_is_best = false;  ///< the model in memory holds the best checkpoint's weights (a solver's one)
  std::optional<EvalReport> test;  ///< the best checkpoint on data.test
  /// The best checkpoint on the split report.html shows (test, else valid), and that split's name.
  std::optional<EvalReport> shown;
  std::string shown_name;
  /// With a baseline: its comparison on that split (model, baseline, run, rows of metric, model,
  /// baseline, difference), its split and training seconds; null otherwise.
  nlohmann::json baseline;
  /// task.calibrate: the temperature fitted and the validation ECE before and after ("" without).
  std::string calibration;
  /// task.threshold "tune": each label's threshold and the validation F1 it gave ("" without).
  std::string thresholds;
};

/// Everything needed to continue training exactly where it stopped; saved in every checkpoint.
struct TrainState {
  int64_t epoch = 1;      ///< the epoch in progress
  int64_t batch_pos = 0;  ///< its next batch (always at an optimiser-step boundary)
  int64_t step = 0;       ///< optimiser steps done
  int64_t samples_seen = 0;
  double window_loss = 0;  ///< since the last progress line
  int64_t window_steps = 0;
  double epoch_loss = 0;
  int64_t epoch_steps = 0;
  double plateau_scale = 1.0;
  int64_t bad_evals = 0;  ///< validations since the last improvement
  bool has_best = false;
  double best_value = 0;
  int64_t best_step = 0, best_epoch = 0;
  std::vector<std::pair<double, int64_t>> kept;  ///< (value, step) of the kept best checkpoints
  int64_t nonfinite_skipped = 0;
  bool early_stopped = false;
  bool epoch_closed = false;   ///< the epoch's end (validation, checkpoint) is done
  double last_epoch_loss = 0;  ///< mean loss of the last finished epoch
  uint64_t metrics_bytes = 0;  ///< size of metrics.jsonl when the checkpoint was written
  bool validation_pending = false;  ///< stopped during this step's validation: resume runs it first
  int64_t world = 1;  ///< the processes that trained (a checkpoint resumes with as many)
  /// With a loss scaler (fp16): its scale and good steps in a row, and the steps skipped because
  /// the gradients overflowed; loss_scale 0 without one.
  double loss_scale = 0;
  int64_t loss_scale_growth = 0;
  int64_t overflow_skipped = 0;

  nlohmann::json to_json() const;
  static TrainState from_json(const nlohmann::json& j);
};

class Trainer {
 public:
  /// `model` must already sit on `device`; the optimiser is built here, from its parameters (P3).
  Trainer(const Config& config, std::shared_ptr<TextModel> model, const Task& task, torch::Device device,
          const RunDirectory& run, int64_t vocab_size);

  /// Loads the checkpoint in `dir` (weights, optimiser, RNG and loop state) to continue from it.
  void restore(const std::string& dir);

  /// Trains as one rank of a data-parallel job: each global batch of trainer.batch_size x world
  /// samples is split between the ranks, gradients are averaged as one batch's would be, the
  /// validation is sharded and its metrics combined, and only rank 0 writes checkpoints.
  void set_group(std::shared_ptr<dist::Group> group);

  /// Stops after the checkpoint at the end of epoch `epoch` (0: never), as a stop would but with
  /// TrainSummary::paused: a resumed run goes on exactly as one never paused (ltk-sweep's
  /// successive halving trains its trials a rung at a time this way).
  void set_until_epoch(int64_t epoch) { until_epoch_ = epoch; }

  /// Scales the loss before backward and unscales the gradients before clipping and the step,
  /// skipping a step whose gradients overflowed (trainer.precision "fp16" sets one up; in fp32 a
  /// scaler with powers of two changes nothing where nothing overflows, which the tests check).
  /// Before restore(), which brings back the checkpoint's scale.
  void set_grad_scaler(const GradScalerOptions& options);

  /// Trains until trainer.epochs are done, early stopping triggers or a stop is requested.
  TrainSummary fit(const TextDataset& train, const TextDataset* valid);

  /// For a model solved outside the loop (optimizer.type "dual_cd"): its weights are the run's one
  /// step over `samples` samples, validated on `valid` and checkpointed as a finished epoch.
  /// `objective`: the solution's objective per sample, recorded as the training loss.
  TrainSummary record_solution(const TextDataset* valid, int64_t samples, double objective);

  /// One optimisation step on one batch already on the device, in the article's order: forward,
  /// loss (checked scalar and finite), zero_grad, backward, step. Returns the loss.
  double train_step(const Batch& batch, int64_t step);

  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  const TrainState& state() const { return state_; }

 private:
  /// The micro-batches of one optimiser step, collated on the CPU, with their loss weights.
  struct StepInput {
    std::vector<Batch> batches;
    std::vector<double> weights;  ///< each micro-batch's (Task::batch_weight)
    double weight = 0;            ///< their sum
    int64_t samples = 0;          ///< the global batch's samples (every rank's)
  };
  /// The epochs' batches: balanced, bucketed by length or max_tokens as configured; a ConfigError
  /// when drop_last leaves none.
  BatchSampler make_sampler(const TextDataset& train) const;
  /// Distributed: rank 0's weights to every rank, and each rank its own random stream.
  void join_group();
  /// Batches [from, to) of the epoch's `order`, this rank's slice of each.
  StepInput collect(const TextDataset& train, const EpochBatches& order, int64_t from, int64_t to) const;
  /// Steps 1-4 over the micro-batches (the gradients accumulate); false on a non-finite loss.
  bool forward_backward(const StepInput& in, double& loss_out);
  /// One optimiser step from the epoch's next batches, then the validation or checkpoint due;
  /// false when training must stop (early stopping, a stop request).
  bool step(const TextDataset& train, const TextDataset* valid, const EpochBatches& order, const LrSchedule& schedule,
            int64_t total, int64_t per_epoch, TrainSummary& summary);
  /// The summary's figures from the loop state (`start`: when the loop began).
  void summarize(TrainSummary& summary, double start, int64_t samples_at_start) const;
  /// The end of an epoch: its validation and checkpoint; true when the run pauses here.
  bool close_epoch(const TextDataset* valid, TrainSummary& summary);
  /// Forward + loss of one micro-batch, scaled by `scale`; false when the loss is not finite
  /// and trainer.on_nonfinite is "skip".
  bool micro_step(const Batch& batch, double scale, bool first, int64_t step, double& loss_out);
  void validate_and_checkpoint(const TextDataset* valid, bool evaluate);
  void write_checkpoint(bool improved);
  /// With a loss scaler: unscales the gradients and updates the scale; false when they overflowed
  /// (the step must be skipped). True without one.
  bool unscale_gradients();
  /// A step skipped for overflow: warns now and then, and stops (TrainError) after
  /// kMaxOverflowRun of them in a row, or when skips spread out have halved the scale below
  /// kMinLossScale (at 0, unscaling would turn every gradient NaN).
  void note_overflow();
  static constexpr int64_t kMaxOverflowRun = 50;  ///< 2^16 halved 50 times: 2^-34
  static constexpr float kMinLossScale = 0x1p-64f;
  /// A stop request (signal `sig`) honoured: a checkpoint unless this step has one; returns false.
  bool stop_at(int sig, const TextDataset* valid, TrainSummary& summary);
  /// Distributed: combines the ranks' step (loss, weights, non-finite and stop flags) and averages
  /// the gradients; returns false when the step is skipped (a non-finite loss on some rank).
  struct StepSync {
    bool finite = true;
    double loss = 0;
    int stop = 0;
  };
  StepSync sync_step(bool finite, double group_weight, double group_loss);
  double sync_bytes_ = 0;
  Predictions predict_valid(const TextDataset& valid);
  void log_progress(int64_t total_steps, int64_t per_epoch, bool force);

  const Config& config_;
  std::shared_ptr<dist::Group> group_;
  std::shared_ptr<TextModel> model_;
  const Task& task_;
  torch::Device device_;
  const RunDirectory& run_;
  int64_t vocab_size_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  TrainState state_;
  std::string metric_;
  bool higher_better_ = true;
  double current_lr_ = 0;
  bool autocast_ = false;  ///< trainer.precision resolved to bf16 or fp16: the forward pass under autocast
  c10::ScalarType autocast_dtype_ = c10::ScalarType::BFloat16;
  std::optional<GradScaler> scaler_;     ///< fp16's, or a test's
  int64_t overflow_run_ = 0;             ///< steps skipped for overflow in a row
  std::vector<double> lr_group_scales_;  // each optimiser group's lr over optimizer.lr
  int64_t last_checkpoint_step_ = -1;
  int64_t until_epoch_ = 0;
  int64_t window_samples_ = 0;
  double window_start_ = 0;  // seconds since the trainer started
  double loop_start_ = 0;  // when this process's training loop began (metrics "elapsed_s")
  double bar_shown_at_ = -1;
};

}  // namespace ltk
