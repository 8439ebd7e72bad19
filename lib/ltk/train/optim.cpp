#include "ltk/train/optim.h"

#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <torch/nn/utils/clip_grad.h>

#include <c10/util/string_utils.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "ltk/core/error.h"

namespace ltk {

namespace {

template <typename Options>
std::vector<torch::optim::OptimizerParamGroup> groups(const std::vector<torch::Tensor>& params, const Options& base,
                                                      bool no_decay_bias_norm, const std::vector<double>& scales) {
  // One group per (lr scale, decay or not), in the order the parameters first need it.
  std::vector<std::pair<double, bool>> keys;
  std::vector<std::vector<torch::Tensor>> members;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (!p.requires_grad()) continue;  // frozen parameters stay out of the optimiser
    std::pair<double, bool> key{scales.empty() ? 1.0 : scales[i], !(no_decay_bias_norm && p.dim() <= 1)};
    auto it = std::find(keys.begin(), keys.end(), key);
    if (it == keys.end()) {
      keys.push_back(key);
      members.emplace_back();
      it = keys.end() - 1;
    }
    members[static_cast<size_t>(it - keys.begin())].push_back(p);
  }
  // Groups of one scale together, the decayed one first (the order ltk always had: resumable).
  std::vector<double> scale_order;
  for (const auto& k : keys)
    if (std::find(scale_order.begin(), scale_order.end(), k.first) == scale_order.end()) scale_order.push_back(k.first);
  std::vector<size_t> order(keys.size());
  for (size_t g = 0; g < order.size(); ++g) order[g] = g;
  auto rank = [&](size_t g) {
    auto at = std::find(scale_order.begin(), scale_order.end(), keys[g].first) - scale_order.begin();
    return std::pair<std::ptrdiff_t, bool>{at, !keys[g].second};
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rank(a) < rank(b); });
  std::vector<torch::optim::OptimizerParamGroup> out;
  for (size_t g : order) {
    auto o = std::make_unique<Options>(base);
    o->set_lr(base.get_lr() * keys[g].first);
    if (!keys[g].second) o->weight_decay(0.0);
    out.emplace_back(members[g], std::move(o));
  }
  if (out.empty()) throw ConfigError("the model has no trainable parameters to optimise (all frozen?)");
  return out;
}

/// LibTorch's Adam and AdamW, step for step the same tensor operations (so the same numbers),
/// except that `denom` lives in a buffer kept per parameter instead of a fresh tensor each step.
/// Profiled on fortunes_en's bow model (3.5 M parameters, most in the embedding), Adam.step was
/// 80% of a training step, and the division that makes the fresh `denom` alone 46%: a new
/// 14 MB tensor every step is page faults and zeroing. With the buffer the optimiser step is
/// 3x faster. The buffers are scratch: checkpoints hold LibTorch's own state, unchanged.
template <typename Base, typename Options, typename State, bool kDecoupled>
class BufferedAdam : public Base {
 public:
  using Base::Base;

  torch::Tensor step(torch::optim::Optimizer::LossClosure closure = nullptr) override {
    for (const auto& group : this->param_groups_)
      if (static_cast<const Options&>(group.options()).amsgrad()) return Base::step(std::move(closure));
    torch::NoGradGuard no_grad;
    torch::Tensor loss;
    if (closure) {
      at::AutoGradMode enable_grad(true);
      loss = closure();
    }
    for (auto& group : this->param_groups_) {
      auto& o = static_cast<Options&>(group.options());
      const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        auto grad = p.grad();
        TORCH_CHECK(!grad.is_sparse(), "Adam does not support sparse gradients");
        const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
        if (this->state_.find(key) == this->state_.end()) {
          check_no_orphan_state();
          auto fresh = std::make_unique<State>();
          fresh->step(0);
          fresh->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
          fresh->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
          this->state_[key] = std::move(fresh);
        }
        auto& state = static_cast<State&>(*this->state_[key]);
        auto& exp_avg = state.exp_avg();
        auto& exp_avg_sq = state.exp_avg_sq();
        state.step(state.step() + 1);
        const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(state.step()));
        const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(state.step()));
        if (o.weight_decay() != 0) {
          if (kDecoupled) {
            p.mul_(1 - o.lr() * o.weight_decay());
          } else {
            grad = grad.add(p, o.weight_decay());
          }
        }
        exp_avg.mul_(beta1).add_(grad, 1 - beta1);
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
        torch::Tensor& denom = denom_[key];
        if (!denom.defined() || denom.sizes() != p.sizes() || denom.device() != p.device())
          denom = torch::empty_like(exp_avg_sq);
        at::sqrt_out(denom, exp_avg_sq);
        denom.div_(std::sqrt(bias_correction2)).add_(o.eps());
        p.addcdiv_(exp_avg, denom, -(o.lr() / bias_correction1));
      }
    }
    return loss;
  }

 private:
  // The state is keyed the way LibTorch's own Adam keys it (the parameter's TensorImpl address as
  // a string), so that checkpoints hold LibTorch's format. That format is LibTorch's private
  // detail: if an upgrade changed it, a resumed optimiser would find no state under the keys
  // computed here and silently start from zero moments. A parameter without state while the
  // state holds entries for no current parameter is exactly that case: fail loudly.
  void check_no_orphan_state() const {
    if (this->state_.empty()) return;
    std::unordered_map<std::string, bool> current;
    for (const auto& group : this->param_groups_)
      for (const auto& q : group.params()) current[c10::guts::to_string(q.unsafeGetTensorImpl())] = true;
    for (const auto& [k, v] : this->state_)
      if (!current.count(k))
        throw CheckpointError("the optimizer state holds an entry ('" + k + "') for no parameter of this model: "
                              "LibTorch keys Adam's state differently from what ltk expects (a LibTorch upgrade?); "
                              "resuming would restart the moments from zero. Start a new run or fine-tune with "
                              "model.init_from");
  }

  std::unordered_map<std::string, torch::Tensor> denom_;
};

using AdamOptimizer = BufferedAdam<torch::optim::Adam, torch::optim::AdamOptions, torch::optim::AdamParamState, false>;
using AdamWOptimizer =
    BufferedAdam<torch::optim::AdamW, torch::optim::AdamWOptions, torch::optim::AdamWParamState, true>;

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& c, std::vector<torch::Tensor> params,
                                                        const std::vector<double>& lr_scales) {
  if (params.empty()) throw ConfigError("the model has no trainable parameters to optimise");
  if (!lr_scales.empty() && lr_scales.size() != params.size())
    throw Error("make_optimizer: one lr scale per parameter expected");
  bool nd = c.no_decay_bias_norm;
  if (c.type == "sgd") {
    auto o = torch::optim::SGDOptions(c.lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(c.weight_decay);
    return std::make_unique<torch::optim::SGD>(groups(params, o, nd, lr_scales), o);
  }
  if (c.type == "adam") {
    auto o = torch::optim::AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay);
    return std::make_unique<AdamOptimizer>(groups(params, o, nd, lr_scales), o);
  }
  if (c.type == "adamw") {
    auto o = torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay);
    return std::make_unique<AdamWOptimizer>(groups(params, o, nd, lr_scales), o);
  }
  if (c.type == "adagrad") {
    auto o = torch::optim::AdagradOptions(c.lr).lr_decay(c.lr_decay).eps(c.eps).weight_decay(c.weight_decay);
    return std::make_unique<torch::optim::Adagrad>(groups(params, o, nd, lr_scales), o);
  }
  if (c.type == "dual_cd") {
    // The exact solver keeps no optimiser state; a checkpoint still holds an optimiser's (plain SGD).
    auto o = torch::optim::SGDOptions(c.lr);
    return std::make_unique<torch::optim::SGD>(groups(params, o, nd, lr_scales), o);
  }
  throw ConfigError("config key 'optimizer.type': unknown optimizer '" + c.type + "'");
}

std::vector<double> lr_scales(const OptimizerConfig& c, const TextModel& model) {
  std::vector<double> out;
  for (const auto& p : model.named_parameters()) {
    if (model.is_head(p.key())) out.push_back(c.head_lr > 0 ? c.head_lr / c.lr : 1.0);
    else out.push_back(std::pow(c.layer_decay, static_cast<double>(model.level(p.key()))));
  }
  return out;
}

std::vector<double> group_lr_scales(const torch::optim::Optimizer& optimizer, double base_lr) {
  std::vector<double> out;
  for (const auto& group : optimizer.param_groups()) out.push_back(group.options().get_lr() / base_lr);
  return out;
}

void set_lr(torch::optim::Optimizer& optimizer, double lr, const std::vector<double>& scales) {
  auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(lr * (g < scales.size() ? scales[g] : 1.0));
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
