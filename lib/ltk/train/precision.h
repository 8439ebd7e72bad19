// trainer.precision: bf16 (or, on CUDA, fp16) autocast around the forward pass, float32 weights,
// gradients and optimiser state, where the hardware computes it natively. Private to the train area.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

#include "ltk/config/config.h"

namespace ltk {

/// The narrowest BERT (hidden_size) that "auto" trains in bf16 on a CPU: at 128 bf16 autocast was
/// 0.98-1.08x fp32, at 256 1.4x (docs/bench_precision.md).
inline constexpr int64_t kAutoBf16MinBertWidth = 256;

/// The precision a run trains in on `device`: "fp32", "bf16" or "fp16". trainer.precision "bf16"
/// where the hardware lacks native bf16 (a CPU without AVX512_BF16 or AMX) is a ConfigError naming
/// the key; "auto" is bf16 where it is native (a CPU with it, CUDA) and fp32 elsewhere, with a
/// warning; on a CPU it also keeps fp32, saying so, where bf16 was measured to train no faster: the
/// rnn model, and a BERT whose hidden_size is under kAutoBf16MinBertWidth. "fp16" (autocast to
/// fp16 with a GradScaler) needs CUDA: elsewhere a ConfigError. bf16 or fp16 with trainer.dtype
/// float64 is refused by the config check. Runs that cannot use them whatever the hardware (bf16:
/// the rnn model on CUDA, autocast to fp16 there; the linear model; regression, whose output would
/// round) train in fp32: asked for, an error naming the reason; "auto", a warning.
std::string resolve_precision(const Config& config, const c10::Device& device);

/// Autocast to `dtype` on `device` for its lifetime (as torch.autocast(device, dtype)): matrix
/// products run in bf16 (or fp16: CUDA alone), the weights stay float32; the previous state comes
/// back afterwards. Inactive when `enabled` is false.
class AutocastGuard {
 public:
  AutocastGuard(bool enabled, const c10::Device& device, c10::ScalarType dtype = c10::ScalarType::BFloat16);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_ = false, cuda_ = false, was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace ltk
