// Deploy precision (ltk-eval --quantize): a trained float32 model converted for inference, either
// to bf16 weights or to int8 Linear layers (as PyTorch's quantize_dynamic): each weight row int8
// with its own scale (symmetric); the activations quantized by the engine, with a calibrated range
// fixed per layer (Int8Calibration; an artifact made before has none: each call's own range then).
// LibTorch 1.13's C++ API has no quantize_dynamic: the weights are prepacked and multiplied
// through the dispatcher's quantized::linear_prepack and quantized::linear_dynamic, on the onednn
// engine (the other engine Debian's LibTorch has, QNNPACK, was 7x slower than float32 on x86, and
// FBGEMM is not built).
#pragma once

#include <ATen/core/ivalue.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ltk/models/derived.h"
#include "ltk/models/text_model.h"

namespace ltk {

/// Why int8 cannot run here ("" when it can): this LibTorch lacks the onednn quantized engine.
std::string int8_unavailable();

/// Whether the activations are quantized to 7 bits rather than 8 (PyTorch's reduce_range): on a
/// CPU without VNNI, where 8-bit activations times full-range int8 weights can saturate the int16
/// sums of the kernel (cpu_has_vnni()).
bool int8_reduce_range();

/// A Linear layer in int8: weight row r is approximately weight_int8[r] * scale[r].
struct Int8Linear {
  torch::Tensor weight_int8;  ///< [out, in] int8, in -127..127
  torch::Tensor scale;        ///< [out] float32, > 0
  c10::IValue packed;         ///< the engine's prepacked weight and bias
  /// The activations' range [lo, hi], lo <= 0 <= hi, when it is fixed (calibrated: ltk-eval
  /// --quantize int8 measures it on its check data): the inputs are clamped to it, and every call
  /// quantizes them with the same scale, so that onednn reuses one kernel where it builds one per
  /// scale otherwise (3-6x the matrix product's time, measured). lo == hi: each call's own range.
  float lo = 0, hi = 0;
  bool fixed_range() const { return lo < hi && weight_int8.size(1) >= 2; }
};

/// An int8 layer as an artifact stores it (take_int8): values, scales and, when calibrated, the
/// activations' range (float32 [2]; undefined otherwise).
struct StoredInt8 {
  torch::Tensor values, scale, range;
};
using StoredInt8Layers = std::vector<std::pair<std::string, StoredInt8>>;

/// While one lives, int8_linear records the range of each layer's inputs, as run with their own
/// range (ltk-eval --quantize int8 calibrating). One at a time, process-wide: no other int8 model
/// may run while it lives (its layers would be recorded too, and a call still recording when it
/// goes would write into freed memory).
class Int8Calibration {
 public:
  Int8Calibration();
  ~Int8Calibration();
  Int8Calibration(const Int8Calibration&) = delete;
  Int8Calibration& operator=(const Int8Calibration&) = delete;
  /// The range [min(inputs, 0), max(inputs, 0)] `layer` was called on; {0, 0} if never.
  std::pair<float, float> range(const Int8Linear& layer) const;
  /// (int8_linear's) `x` went into `layer`.
  void record(const Int8Linear& layer, const torch::Tensor& x);

 private:
  mutable std::mutex mutex_;
  std::unordered_map<const Int8Linear*, std::pair<float, float>> seen_;
};

/// Quantizes a float weight [out, in] row by row: scale = max|row| / 127 (1 for an all-zero row),
/// values round(w / scale). `bias` may be undefined.
Int8Linear quantize_linear(const torch::Tensor& weight, const torch::Tensor& bias);
/// The same layer from values and scales as an artifact stores them (checked: int8 [out, in], float
/// scales [out], each finite and > 0; CheckpointError naming `name` otherwise).
Int8Linear pack_linear(torch::Tensor weight_int8, torch::Tensor scale, const torch::Tensor& bias,
                       const std::string& name);
/// x W^T + b for float32 x [..., in]: float32 [..., out]. With a fixed range, x is clamped to it and
/// quantized with its scale. Otherwise the activations are quantized per call of the engine, over
/// up to 1,024 rows of x at a time: a row's result can depend on the rows beside it (as with
/// PyTorch's dynamic quantization), within the format's error.
torch::Tensor int8_linear(const torch::Tensor& x, const Int8Linear& layer, bool reduce_range = int8_reduce_range());

/// The int8 layers of a model, by module. Filled once, then only read (model threads share it).
class Int8Layers {
 public:
  /// Quantizes the Linear modules of `model` whose dotted names `select` accepts. Their float
  /// weights are released (the packed copy is what runs).
  void quantize(torch::nn::Module& model, const std::function<bool(const std::string&)>& select);
  /// Builds the layers an artifact stores (as take_int8() returned them), on the modules of
  /// `model` whose biases are already loaded.
  void load(torch::nn::Module& model, const StoredInt8Layers& stored);
  /// The int8 layer of `linear`, or null.
  const Int8Linear* find(const torch::nn::LinearImpl& linear) const;
  /// Fixes the range of `linear`'s int8 layer (lo == hi: each call's own again).
  void set_range(const torch::nn::LinearImpl& linear, float lo, float hi);
  /// Fixes each layer's range to the one `calibration` saw it run on (those it never saw keep theirs).
  void set_ranges(const Int8Calibration& calibration);
  /// The layer's output: int8 when it is one of these, its own forward otherwise.
  torch::Tensor forward(torch::nn::LinearImpl& linear, const torch::Tensor& x) const;
  bool empty() const { return layers_.empty(); }
  /// What an artifact stores in place of each layer's float weight: "NAME.weight_int8" (int8),
  /// "NAME.weight_scale" (float32) and, when fixed, "NAME.input_range" (float32 [lo, hi]), NAME the
  /// module's dotted name.
  std::vector<std::pair<std::string, torch::Tensor>> tensors() const;
  /// The dotted names of the float weights the layers replace ("NAME.weight").
  std::vector<std::string> replaced_weights() const;

 private:
  void add(const std::string& name, torch::nn::LinearImpl& linear, Int8Linear layer);
  std::unordered_map<const torch::nn::Module*, std::pair<std::string, Int8Linear>> layers_;
};

/// Takes an int8 artifact's "NAME.weight_int8" / "NAME.weight_scale" pairs (and "NAME.input_range"
/// where stored) out of `stored` and puts "NAME.weight" (the dequantized values, float32) in their
/// place, so that the weights load and are checked by name and shape as any run's; returns the
/// layers by NAME. An unpaired or malformed entry is a CheckpointError naming `path`.
StoredInt8Layers take_int8(std::vector<std::pair<std::string, torch::Tensor>>& stored, const std::string& path);

/// A model that runs in a deploy precision implements this beside TextModel.
class Quantizable {
 public:
  virtual ~Quantizable() = default;
  /// Converts the float32 model, in eval mode, in place: "bf16" makes every floating tensor bf16
  /// (outputs stay float32); "int8" quantizes the Linear layers where the compute is.
  virtual void quantize(const std::string& precision) = 0;
  /// The int8 layers (empty unless quantized to int8).
  virtual Int8Layers& int8_layers() = 0;
  /// Builds the int8 layers an artifact stores (Int8Layers::load), once the rest is loaded.
  virtual void load_int8(const StoredInt8Layers& stored) = 0;
  /// Fixes the int8 layers' activation ranges to those `calibration` saw (Int8Layers::set_ranges).
  virtual void fix_int8_ranges(const Int8Calibration& calibration) = 0;
};

/// The deploy precision of a model without int8 layers (textcnn, rnn, transformer): bf16, every
/// floating tensor converted (its forward returns float32 outputs: float32_outputs()).
class Bf16Deploy : public Quantizable {
 public:
  void quantize(const std::string& precision) override;
  Int8Layers& int8_layers() override { return none_; }
  void load_int8(const StoredInt8Layers& stored) override;
  void fix_int8_ranges(const Int8Calibration&) override {}

 protected:
  /// For a bf16 model in CPU inference (`weight` one of its bf16 weights, `batch` on the CPU,
  /// nothing recorded, no autocast): `batch` rounded to bf16_batch_shape() by empty samples and
  /// padding. oneDNN builds a bf16 kernel for each shape and keeps
  /// 1,024: a server's batches, of every (samples, length) in turn, built new ones at each batch
  /// (half float32's requests/s). The models mask padding and empty samples, so each real sample's
  /// output is its own; the caller keeps the first batch.size() rows. nullopt when there is nothing
  /// to round (shapes already rounded, float32, training).
  static std::optional<Batch> rounded_bf16_batch(const torch::Tensor& weight, const Batch& batch,
                                                 int64_t max_length = 0);

 private:
  Int8Layers none_;
};

/// The shape a bf16 model's inference batch of `samples` x `length` is rounded to: samples to a
/// power of two up to 8, then a multiple of 8; the length to a multiple of 8, and past 128 of a
/// sixteenth of the power of two at or above it (under 12.5% more), not past `max_length` (0: no
/// limit; a length already past it is left as it is, for the model to refuse).
std::pair<int64_t, int64_t> bf16_batch_shape(int64_t samples, int64_t length, int64_t max_length = 0);

/// Nothing is recorded for backward and no autocast mixes dtypes: in-place ops and the cached and
/// converted weights of inference may be used.
bool plain_inference();

/// m(x), computed in float32 and rounded once for a bf16 input in CPU inference (a bf16 artifact):
/// LibTorch 1.13's bf16 layer_norm kernel on the CPU is 2-4.5x slower than converting to float32,
/// normalising and converting back (python3-torch, rows of 128 to 768), and rounds more (a bf16
/// transformer's server spent a third of its time there). Training and autocast keep the module's
/// own computation. `weights`: two slots where the float32 copies of m's weight and bias are kept
/// (else made at each call).
torch::Tensor layer_norm(torch::nn::LayerNorm m, const torch::Tensor& x, DerivedTensor* weights = nullptr);

/// A model's outputs as float32 (scores and losses are computed in float32): bf16 ones converted.
inline torch::Tensor float32_outputs(const torch::Tensor& out) {
  return out.scalar_type() == torch::kBFloat16 ? out.to(torch::kFloat) : out;
}

/// The model as a Quantizable, or a ConfigError naming `model_type` and what can be quantized.
Quantizable& quantizable(TextModel& model, const std::string& model_type);

/// The tensors an artifact of `model` in `precision` stores: every parameter and buffer by name,
/// with the int8 layers' values and scales in place of their float weights.
std::vector<std::pair<std::string, torch::Tensor>> deploy_tensors(TextModel& model, const std::string& precision);

}  // namespace ltk
