// trainer.precision: bf16 autocast around the forward pass, float32 weights, gradients and
// optimiser state, where the hardware computes bf16 natively. Private to the train area.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

#include "ltk/config/config.h"

namespace ltk {

/// The precision a run trains in on `device`: "fp32" or "bf16". trainer.precision "bf16" where the
/// hardware lacks native bf16 (a CPU without AVX512_BF16 or AMX) is a ConfigError naming the key;
/// "auto" is bf16 where it is native (a CPU with it, CUDA) and fp32 elsewhere, with a warning.
/// "fp16" is refused (it needs a CUDA device and a gradient scaler). bf16 with trainer.dtype
/// float64 is refused by the config check. Runs that cannot use bf16 whatever the hardware (the rnn
/// model on CUDA, autocast to fp16 there; the linear model; regression, whose output bf16 would
/// round) train in fp32: "bf16" is an error naming the reason, "auto" a warning.
std::string resolve_precision(const Config& config, const c10::Device& device);

/// Autocast to bf16 on `device` for its lifetime (as torch.autocast(device, torch.bfloat16)): matrix
/// products run in bf16, the weights stay float32; the previous state comes back afterwards.
/// Inactive when `enabled` is false.
class AutocastGuard {
 public:
  AutocastGuard(bool enabled, const c10::Device& device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_ = false, cuda_ = false, was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace ltk
