// Dynamic loss scaling for fp16 training (trainer.precision "fp16"): LibTorch 1.13's C++ API has
// autocast but no torch.cuda.amp.GradScaler. The same algorithm and defaults, checked against
// PyTorch's class by tests/parity/check_grad_scaler.py. Private to the train area.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace ltk {

struct GradScalerOptions {
  double init_scale = 65536.0;  ///< 2^16, PyTorch's default
  double growth_factor = 2.0;   ///< the scale's factor after growth_interval steps in a row without overflow
  double backoff_factor = 0.5;  ///< its factor after a step whose gradients overflowed (skipped)
  int64_t growth_interval = 2000;
};

/// The loss is multiplied by a scale before backward, so that fp16 gradients do not underflow;
/// before the step the gradients are divided by it again. A step whose gradients hold an inf or a
/// NaN (fp16 overflowed) is skipped and the scale halved; after growth_interval good steps in a row
/// it doubles. With powers of two (the defaults) scaling and unscaling are exact: where nothing
/// overflows, a step equals the unscaled one bit for bit. The scale is a float32 as PyTorch's.
class GradScaler {
 public:
  explicit GradScaler(const GradScalerOptions& options = {});

  /// `loss` times the scale (the tensor to call backward on).
  torch::Tensor scale(const torch::Tensor& loss) const;

  /// Divides every defined gradient of `params` by the scale, in place (a sparse one coalesced
  /// first); true when all of them are finite (the step may go ahead). One host synchronisation.
  bool unscale(const std::vector<torch::Tensor>& params) const;

  /// After a step (`overflowed`: unscale returned false and the step was skipped): backs off, or
  /// counts the good step and grows the scale after growth_interval of them (never to inf).
  void update(bool overflowed);

  float current() const { return scale_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  /// A checkpoint's state; a scale that is not finite and positive is refused (CheckpointError).
  void restore(double scale, int64_t growth_tracker);

 private:
  GradScalerOptions options_;
  float scale_;
  int64_t growth_tracker_ = 0;  ///< good steps in a row since the scale last changed
};

}  // namespace ltk
