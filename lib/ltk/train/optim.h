// Optimisers and learning-rate schedules built from the config.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/models/text_model.h"

namespace ltk {

/// Builds the optimiser over `params`. Call it after the model exists and sits on its device (P3).
/// `lr_scales[i]` multiplies the lr of params[i] (empty: all 1); parameters of one scale share a
/// group, in the order of first appearance.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& config,
                                                        std::vector<torch::Tensor> params,
                                                        const std::vector<double>& lr_scales = {});

/// The lr multiplier of each parameter of `model` (in parameters() order): optimizer.head_lr / lr
/// on the head, optimizer.layer_decay^level elsewhere (TextModel::level).
std::vector<double> lr_scales(const OptimizerConfig& config, const TextModel& model);

/// Each group's lr multiplier (its lr over `base_lr`), read once after make_optimizer.
std::vector<double> group_lr_scales(const torch::optim::Optimizer& optimizer, double base_lr);

/// Sets the learning rate of every parameter group: lr times the group's scale (empty: 1).
void set_lr(torch::optim::Optimizer& optimizer, double lr, const std::vector<double>& scales = {});

/// The learning rate of optimiser step `step` (0-based) out of `total_steps`: warmup, then the
/// schedule's shape. "plateau" is the base lr times the factor the trainer applied so far
/// (plateau_scale), which the trainer keeps in its resumable state.
class LrSchedule {
 public:
  LrSchedule(const SchedulerConfig& config, double base_lr, int64_t total_steps);
  double at(int64_t step, double plateau_scale = 1.0) const;
  int64_t warmup_steps() const { return warmup_; }

 private:
  SchedulerConfig config_;
  double base_lr_;
  int64_t total_steps_;
  int64_t warmup_;
};

/// Clips gradients by global norm and/or by value (0 = off); returns the norm before clipping
/// (0 when norm clipping is off).
double clip_gradients(const std::vector<torch::Tensor>& params, double max_norm, double max_value);

}  // namespace ltk
