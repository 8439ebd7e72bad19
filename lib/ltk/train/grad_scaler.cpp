#include "ltk/train/grad_scaler.h"

#include <fmt/format.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>

#include "ltk/core/error.h"

namespace ltk {

GradScaler::GradScaler(const GradScalerOptions& options)
    : options_(options), scale_(static_cast<float>(options.init_scale)) {
  if (!(std::isfinite(scale_) && scale_ > 0) || !(options.growth_factor > 1) ||
      !(options.backoff_factor > 0 && options.backoff_factor < 1) || options.growth_interval < 1)
    throw Error(
        fmt::format("GradScaler: init_scale {} (finite, > 0), growth_factor {} (> 1), backoff_factor {} "
                    "(in (0, 1)) and growth_interval {} (>= 1) are out of range",
                    options.init_scale, options.growth_factor, options.backoff_factor, options.growth_interval));
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const {
  return loss * static_cast<double>(scale_);
}

bool GradScaler::unscale(const std::vector<torch::Tensor>& params) const {
  // As PyTorch: the reciprocal in float64, rounded to float32, multiplied in the gradient's type.
  const float inv = static_cast<float>(1.0 / static_cast<double>(scale_));
  std::vector<torch::Tensor> finite;
  torch::NoGradGuard no_grad;
  for (const auto& p : params) {
    torch::Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.is_sparse()) {  // (model.sparse embeddings) its values, once coalesced, as PyTorch does
      if (!g.is_coalesced()) const_cast<torch::Tensor&>(p).mutable_grad() = g = g.coalesce();
      g = g._values();
    }
    finite.push_back(torch::isfinite(g).all());
    if (inv != 1.f) g.mul_(static_cast<double>(inv));
  }
  return finite.empty() || torch::stack(finite).all().item<bool>();
}

void GradScaler::update(bool overflowed) {
  if (overflowed) {
    scale_ = static_cast<float>(static_cast<double>(scale_) * options_.backoff_factor);
    growth_tracker_ = 0;
    return;
  }
  if (++growth_tracker_ < options_.growth_interval) return;
  const auto grown = static_cast<float>(static_cast<double>(scale_) * options_.growth_factor);
  if (std::isfinite(grown)) scale_ = grown;  // float32's largest power of two, 2^127, is as far as it goes
  growth_tracker_ = 0;
}

void GradScaler::restore(double scale, int64_t growth_tracker) {
  const auto s = static_cast<float>(scale);
  if (!(std::isfinite(s) && s > 0) || growth_tracker < 0 || growth_tracker >= options_.growth_interval)
    throw CheckpointError(
        fmt::format("state.loss_scale {} / state.loss_scale_growth {}: not a loss scaler's state "
                    "(a finite scale > 0, 0 <= growth < {})",
                    scale, growth_tracker, options_.growth_interval));
  scale_ = s;
  growth_tracker_ = growth_tracker;
}

}  // namespace ltk
