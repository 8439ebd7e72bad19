// Optimisers and learning-rate schedules built from the config.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

#include "ltk/config/config.h"

namespace ltk {

/// Builds the optimiser over `params`. Call it after the model exists and sits on its device (P3).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& config,
                                                        std::vector<torch::Tensor> params);

/// Sets the learning rate of every parameter group.
void set_lr(torch::optim::Optimizer& optimizer, double lr);

/// The learning rate of `step` (0-based) out of `total_steps`.
class LrSchedule {
 public:
  LrSchedule(const SchedulerConfig& config, double base_lr, int64_t total_steps);
  double at(int64_t step) const;

 private:
  SchedulerConfig config_;
  double base_lr_;
  int64_t total_steps_;
};

}  // namespace ltk
