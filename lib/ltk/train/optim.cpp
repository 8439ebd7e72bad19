#include "ltk/train/optim.h"

#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <torch/nn/utils/clip_grad.h>

#include <cmath>

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
    : config_(config), base_lr_(base_lr), total_steps_(std::max<int64_t>(total_steps, 1)) {
  warmup_ = config.warmup_steps > 0 ? config.warmup_steps
                                    : static_cast<int64_t>(std::llround(config.warmup_ratio * static_cast<double>(total_steps_)));
}

double LrSchedule::at(int64_t step, double plateau_scale) const {
  if (step < warmup_) return base_lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  const double after = static_cast<double>(step - warmup_);
  const double span = static_cast<double>(std::max<int64_t>(total_steps_ - warmup_, 1));
  const std::string& t = config_.type;
  if (t == "linear") return base_lr_ * std::clamp((span - after) / span, 0.0, 1.0);
  if (t == "cosine") {
    double progress = std::clamp(after / span, 0.0, 1.0);
    return config_.min_lr + (base_lr_ - config_.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  if (t == "step") return base_lr_ * std::pow(config_.gamma, std::floor(after / static_cast<double>(config_.step_size)));
  if (t == "plateau") return base_lr_ * plateau_scale;
  return base_lr_;
}

double clip_gradients(const std::vector<torch::Tensor>& params, double max_norm, double max_value) {
  std::vector<torch::Tensor> with_grad;
  for (const auto& p : params)
    if (p.grad().defined()) with_grad.push_back(p);
  if (max_value > 0) torch::nn::utils::clip_grad_value_(with_grad, max_value);
  if (max_norm > 0) return torch::nn::utils::clip_grad_norm_(with_grad, max_norm);
  return 0.0;
}

}  // namespace ltk
