#include "ltk/train/optim.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "ltk/core/error.h"

namespace ltk {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& c,
                                                        std::vector<torch::Tensor> params) {
  if (params.empty()) throw ConfigError("the model has no trainable parameters to optimise");
  if (c.type == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(c.lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(c.weight_decay));
  }
  if (c.type == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
  }
  if (c.type == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
  }
  throw ConfigError("config key 'optimizer.type': unknown optimizer '" + c.type + "'");
}

void set_lr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

LrSchedule::LrSchedule(const SchedulerConfig& config, double base_lr, int64_t total_steps)
    : config_(config), base_lr_(base_lr), total_steps_(std::max<int64_t>(total_steps, 1)) {}

double LrSchedule::at(int64_t step) const {
  if (config_.type == "constant") return base_lr_;
  // linear: warmup from 0 to base_lr, then decay linearly to 0 at the last step.
  int64_t warmup = config_.warmup_steps;
  if (step < warmup) return base_lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup);
  double left = static_cast<double>(total_steps_ - step) / static_cast<double>(std::max<int64_t>(total_steps_ - warmup, 1));
  return base_lr_ * std::clamp(left, 0.0, 1.0);
}

}  // namespace ltk
