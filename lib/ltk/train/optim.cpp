#include "ltk/train/optim.h"

#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "ltk/core/error.h"

namespace ltk {

namespace {

template <typename Options>
std::vector<torch::optim::OptimizerParamGroup> groups(const std::vector<torch::Tensor>& params, const Options& base,
                                                      bool no_decay_bias_norm) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : params) {
    if (!p.requires_grad()) continue;  // frozen parameters stay out of the optimiser
    (no_decay_bias_norm && p.dim() <= 1 ? no_decay : decay).push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> out;
  if (!decay.empty()) out.emplace_back(decay, std::make_unique<Options>(base));
  if (!no_decay.empty()) {
    auto o = std::make_unique<Options>(base);
    o->weight_decay(0.0);
    out.emplace_back(no_decay, std::move(o));
  }
  if (out.empty()) throw ConfigError("the model has no trainable parameters to optimise (all frozen?)");
  return out;
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& c, std::vector<torch::Tensor> params) {
  if (params.empty()) throw ConfigError("the model has no trainable parameters to optimise");
  bool nd = c.no_decay_bias_norm;
  if (c.type == "sgd") {
    auto o = torch::optim::SGDOptions(c.lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(c.weight_decay);
    return std::make_unique<torch::optim::SGD>(groups(params, o, nd), o);
  }
  if (c.type == "adam") {
    auto o = torch::optim::AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay);
    return std::make_unique<torch::optim::Adam>(groups(params, o, nd), o);
  }
  if (c.type == "adamw") {
    auto o = torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay);
    return std::make_unique<torch::optim::AdamW>(groups(params, o, nd), o);
  }
  if (c.type == "adagrad") {
    auto o = torch::optim::AdagradOptions(c.lr).lr_decay(c.lr_decay).eps(c.eps).weight_decay(c.weight_decay);
    return std::make_unique<torch::optim::Adagrad>(groups(params, o, nd), o);
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
