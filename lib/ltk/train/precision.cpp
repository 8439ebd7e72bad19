#include "ltk/train/precision.h"

#include <ATen/autocast_mode.h>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/core/log.h"

namespace ltk {

namespace {

// Why a run cannot train in `precision` ("bf16", "fp16") whatever the hardware, or null.
const char* fp32_only(const Config& config, const c10::Device& device, const std::string& precision) {
  const std::string& model = config.model.type;
  if (model == "rnn" && device.is_cuda() && precision == "bf16")
    return "LibTorch 1.13 autocasts cuDNN's LSTM and GRU to fp16, not bf16 (\"fp16\" trains it)";
  if (model == "linear")
    return "the linear model has no matrix product to run in reduced precision (its features are an embedding "
           "bag, or the dual_cd solver's float64)";
  if (config.task.type == "regression")
    return "a regression output in bf16 or fp16 keeps about 3 significant digits of the target";
  return nullptr;
}

// Why "auto" keeps a run in fp32 on a CPU with native bf16, or null: the models whose training
// bf16 autocast did not speed up there (scripts/bench_precision.sh, docs/bench_precision.md).
const char* auto_keeps_fp32_on_cpu(const Config& config) {
  const std::string& model = config.model.type;
  if (model == "rnn")
    return "bf16 autocast trains the rnn model no faster on a CPU (measured: 1.01x at 1 thread, 0.86x at 2; "
           "docs/bench_precision.md)";
  if (model == "bert" && config.model.options.value("hidden_size", int64_t{0}) < kAutoBf16MinBertWidth)
    return "bf16 autocast trains a BERT narrower than 256 no faster on a CPU, its matrices too small for the "
           "conversions to pay (measured at hidden_size 128: 1.08x at 1 thread, 0.98x at 2; at 256: 1.4x; "
           "docs/bench_precision.md)";
  return nullptr;
}

}  // namespace

std::string resolve_precision(const Config& config, const c10::Device& device) {
  const std::string& p = config.trainer.precision;
  if (p == "fp32") return "fp32";
  if (p == "fp16" && !device.is_cuda())
    throw ConfigError(
        "config key 'trainer.precision': \"fp16\" needs a CUDA device (LibTorch 1.13 autocasts a CPU to bf16 "
        "alone); on a CPU use \"bf16\" (AVX512_BF16 or AMX) or \"fp32\"");
  if (const char* why = fp32_only(config, device, p == "auto" ? "bf16" : p)) {
    if (p != "auto") throw ConfigError("config key 'trainer.precision': \"" + p + "\": " + why + "; train in \"fp32\"");
    log::warn("[precision] trainer.precision \"auto\": {}; training in fp32", why);
    return "fp32";
  }
  if (p == "fp16") return "fp16";  // on CUDA, with a gradient scaler
  const std::string no_bf16 = device.is_cuda() ? "" : why_no_native_bf16();
  const bool native = no_bf16.empty();
  if (native && p == "auto" && !device.is_cuda()) {
    if (const char* why = auto_keeps_fp32_on_cpu(config)) {
      log::info(
          "[precision] trainer.precision \"auto\": {}; training in fp32 (set \"bf16\" to train in bf16 regardless)",
          why);
      return "fp32";
    }
  }
  if (native) return "bf16";
  if (p == "bf16")
    throw ConfigError("config key 'trainer.precision': \"bf16\" needs native bf16 (AVX512_BF16 or AMX), and " +
                      no_bf16 +
                      ". Emulated, bf16 would be slower than fp32; use \"fp32\", or \"auto\" for bf16 where the "
                      "hardware has it");
  log::warn("[precision] trainer.precision \"auto\": {}; training in fp32", no_bf16);
  return "fp32";
}

AutocastGuard::AutocastGuard(bool enabled, const c10::Device& device, c10::ScalarType dtype)
    : enabled_(enabled), cuda_(device.is_cuda()) {
  if (!enabled_) return;
  if (dtype != at::kBFloat16 && !(cuda_ && dtype == at::kHalf))
    throw Error("AutocastGuard: autocast to bf16, or to fp16 on CUDA; not to " + std::string(c10::toString(dtype)));
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    was_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    was_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  // The casts of the weights are cached for the pass; the outermost guard frees them.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(was_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(was_dtype_);
  }
}

}  // namespace ltk
