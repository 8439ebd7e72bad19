#include "ltk/models/quantize.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/_make_per_channel_quantized_tensor.h>
#include <fmt/format.h>

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"

namespace ltk {

namespace {

const char* const kValues = ".weight_int8";
const char* const kScales = ".weight_scale";
const char* const kRange = ".input_range";

bool ends_with(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

/// The onednn engine, selected once for the packing (a packed weight keeps its engine's kernels).
void use_onednn() {
  if (const std::string why = int8_unavailable(); !why.empty()) throw ConfigError(why);
  static std::once_flag once;
  std::call_once(once, [] { at::globalContext().setQEngine(at::QEngine::ONEDNN); });
  if (at::globalContext().qEngine() != at::QEngine::ONEDNN) at::globalContext().setQEngine(at::QEngine::ONEDNN);
}

std::atomic<bool> g_small_cache{false};
std::atomic<Int8Calibration*> g_calibration{nullptr};

/// LibTorch 1.13's onednn dynamic linear builds a primitive for each call's activation scale, which
/// oneDNN's primitive cache (1,024 by default) then keeps and never reuses: 330 MB more peak RSS on
/// a 2-layer, 128-wide BERT's evaluation, at the same speed with 16 (measured). The cache holds 16
/// while layers run with their own ranges, its own capacity once every layer's range is fixed (a
/// model's layers and row counts need a primitive each then, used again and again). Left alone
/// when the user sized it; looked up at run time, as a LibTorch that links oneDNN statically does
/// not export it.
void small_primitive_cache(bool small) {
  if (g_small_cache.load() == small) return;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (g_small_cache.load() == small) return;
  g_small_cache = small;
  if (std::getenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY") || std::getenv("DNNL_PRIMITIVE_CACHE_CAPACITY")) return;
  static auto* set = reinterpret_cast<int (*)(int)>(dlsym(RTLD_DEFAULT, "dnnl_set_primitive_cache_capacity"));
  static auto* get = reinterpret_cast<int (*)(int*)>(dlsym(RTLD_DEFAULT, "dnnl_get_primitive_cache_capacity"));
  static const int original = [] {
    int capacity = 1024;
    if (get) get(&capacity);
    return capacity;
  }();
  if (set) set(small ? 16 : original);
}

c10::IValue prepack(const torch::Tensor& weight_int8, const torch::Tensor& scale, const torch::Tensor& bias) {
  use_onednn();
  auto q = at::_make_per_channel_quantized_tensor(weight_int8, scale.to(torch::kDouble),
                                                  torch::zeros({scale.size(0)}, torch::kLong), /*axis=*/0);
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
  torch::jit::Stack stack{q,
                          bias.defined() ? c10::IValue(bias.detach().to(torch::kFloat).contiguous()) : c10::IValue()};
  op.callBoxed(&stack);
  return stack.at(0);
}

torch::nn::LinearImpl* linear_of(torch::nn::Module& model, const std::string& name) {
  for (const auto& m : model.named_modules("", /*include_self=*/false))
    if (m.key() == name) return m.value()->as<torch::nn::Linear>();
  return nullptr;
}

}  // namespace

std::string int8_unavailable() {
  const auto& engines = at::globalContext().supportedQEngines();
  if (std::find(engines.begin(), engines.end(), at::QEngine::ONEDNN) != engines.end()) return "";
  return "this LibTorch has no onednn quantized engine, which int8 needs (QNNPACK, the other one, is slower than "
         "float32 on x86); use --quantize bf16 or keep the float32 run";
}

bool int8_reduce_range() {
  return !cpu_has_vnni();
}

Int8Linear quantize_linear(const torch::Tensor& weight, const torch::Tensor& bias) {
  auto w = weight.detach().to(torch::kFloat);
  auto scale = w.abs().amax(1) / 127.0;
  scale = torch::where(scale > 0, scale, torch::ones_like(scale));
  auto values = (w / scale.unsqueeze(1)).round().clamp(-127, 127).to(torch::kChar).contiguous();
  return pack_linear(values, scale.contiguous(), bias, "");
}

Int8Linear pack_linear(torch::Tensor values, torch::Tensor scale, const torch::Tensor& bias, const std::string& name) {
  auto bad = [&](const std::string& what) {
    return CheckpointError(name + kValues + " / " + name + kScales + ": " + what +
                           "; the artifact is damaged, make it again with ltk-eval --quantize int8");
  };
  if (values.scalar_type() != torch::kChar || values.dim() != 2)
    throw bad(fmt::format("the values should be int8 [out, in], not {} of {} dimension(s)",
                          std::string(values.dtype().name()), values.dim()));
  if (scale.scalar_type() != torch::kFloat || scale.dim() != 1 || scale.size(0) != values.size(0))
    throw bad(fmt::format("the scales should be float32 [{}], one per row", values.size(0)));
  if (values.numel() > 0 && values.eq(-128).any().item<bool>()) throw bad("a value is -128 (they lie in -127..127)");
  if (scale.numel() > 0 && !(scale.isfinite() & (scale > 0)).all().item<bool>())
    throw bad("a scale is not finite and > 0");
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != values.size(0)))
    throw bad(fmt::format("the layer's bias has {} values for {} rows", bias.numel(), values.size(0)));
  Int8Linear l{values.contiguous(), scale.contiguous(), {}};
  l.packed = prepack(l.weight_int8, l.scale, bias);
  return l;
}

Int8Calibration::Int8Calibration() {
  Int8Calibration* none = nullptr;
  if (!g_calibration.compare_exchange_strong(none, this)) throw Error("int8: one calibration at a time");
}

Int8Calibration::~Int8Calibration() {
  g_calibration = nullptr;
}

std::pair<float, float> Int8Calibration::range(const Int8Linear& layer) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = seen_.find(&layer);
  return it == seen_.end() ? std::pair<float, float>{0, 0} : it->second;
}

void Int8Calibration::record(const Int8Linear& layer, const torch::Tensor& x) {
  if (x.numel() == 0) return;
  auto [low, high] = torch::aminmax(x);
  const float lo = std::min(low.item<float>(), 0.0f), hi = std::max(high.item<float>(), 0.0f);
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, added] = seen_.try_emplace(&layer, lo, hi);
  if (!added) it->second = {std::min(it->second.first, lo), std::max(it->second.second, hi)};
}

torch::Tensor int8_linear(const torch::Tensor& x, const Int8Linear& layer, bool reduce_range) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "");
  // onednn builds a kernel for each new number of rows (about 20 ms each, measured: more than a
  // length-sorted evaluation's whole int8 compute). Rows go in chunks of kChunk, the last padded
  // with zero rows to a power of two from 64: five shapes per layer in all. Zero rows leave the
  // activations' range as it is (it always holds 0), so the real rows come out as unpadded. With a
  // fixed range, one more row holds its ends, so that the engine finds the same range every call.
  constexpr int64_t kChunk = 1024, kSmallest = 64;
  const int64_t K = x.size(-1), M = x.numel() / std::max<int64_t>(K, 1);
  const bool fixed = layer.fixed_range();
  auto in = x.to(torch::kFloat).reshape({M, K});
  if (auto* calibration = g_calibration.load()) calibration->record(layer, in);
  if (!fixed) small_primitive_cache(true);
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < M || parts.empty(); start += kChunk - fixed) {
    const int64_t rows = std::min(kChunk - fixed, M - start);
    int64_t padded = kSmallest;
    while (padded < rows + fixed) padded *= 2;
    auto part = in.narrow(0, start, rows);
    if (fixed) {
      auto buffer = torch::empty({padded, K}, part.options());
      auto head = buffer.narrow(0, 0, rows);
      torch::clamp_out(head, part, layer.lo, layer.hi);
      buffer.narrow(0, rows, padded - rows).zero_();
      float* ends = buffer.data_ptr<float>() + rows * K;
      ends[0] = layer.lo;
      ends[1] = layer.hi;
      part = buffer;
    } else if (padded != rows) {
      part = torch::cat({part, torch::zeros({padded - rows, K}, part.options())});
    }
    torch::jit::Stack stack{part.contiguous(), layer.packed, reduce_range};
    op.callBoxed(&stack);
    parts.push_back(stack.at(0).toTensor().narrow(0, 0, rows));
  }
  auto sizes = x.sizes().vec();
  sizes.back() = parts[0].size(1);
  return (parts.size() == 1 ? parts[0] : torch::cat(parts)).reshape(sizes);
}

void Int8Layers::add(const std::string& name, torch::nn::LinearImpl& linear, Int8Linear layer) {
  // The packed copy is what runs: the float weight goes (an empty tensor of its type stays registered).
  linear.weight.set_data(torch::empty({0}, linear.weight.options()));
  layers_[&linear] = {name, std::move(layer)};
}

void Int8Layers::quantize(torch::nn::Module& model, const std::function<bool(const std::string&)>& select) {
  for (const auto& m : model.named_modules("", /*include_self=*/false)) {
    auto* linear = m.value()->as<torch::nn::Linear>();
    if (!linear || !select(m.key()) || layers_.count(linear)) continue;
    add(m.key(), *linear, quantize_linear(linear->weight, linear->bias));
  }
}

void Int8Layers::load(torch::nn::Module& model, const StoredInt8Layers& stored) {
  bool all_fixed = true;
  for (const auto& [name, layer] : stored) {
    auto* linear = linear_of(model, name);
    if (!linear)
      throw CheckpointError(name + kValues + ": the model has no Linear layer " + name +
                            "; the artifact was made for another model");
    if (layer.values.sizes() != linear->weight.sizes())
      throw CheckpointError(fmt::format("{}{}: [{}] values for a layer of [{}]", name, kValues,
                                        fmt::join(layer.values.sizes(), ", "),
                                        fmt::join(linear->weight.sizes(), ", ")));
    auto packed = pack_linear(layer.values, layer.scale, linear->bias, name);
    if (layer.range.defined()) {
      const float lo = layer.range[0].item<float>(), hi = layer.range[1].item<float>();
      if (!(std::isfinite(lo) && std::isfinite(hi) && lo <= 0 && hi >= 0))
        throw CheckpointError(
            fmt::format("{}{}: [{}, {}] is no range [lo, hi] with lo <= 0 <= hi; the artifact "
                        "is damaged, make it again with ltk-eval --quantize int8",
                        name, kRange, lo, hi));
      packed.lo = lo;
      packed.hi = hi;
    }
    all_fixed = all_fixed && packed.fixed_range();
    add(name, *linear, std::move(packed));
  }
  if (all_fixed && !stored.empty()) small_primitive_cache(false);
}

const Int8Linear* Int8Layers::find(const torch::nn::LinearImpl& linear) const {
  auto it = layers_.find(&linear);
  return it == layers_.end() ? nullptr : &it->second.second;
}

void Int8Layers::set_range(const torch::nn::LinearImpl& linear, float lo, float hi) {
  auto it = layers_.find(&linear);
  if (it == layers_.end()) throw Error("int8: set_range on a layer that is not int8");
  it->second.second.lo = lo;
  it->second.second.hi = hi;
}

void Int8Layers::set_ranges(const Int8Calibration& calibration) {
  bool all_fixed = true;
  for (auto& [module, entry] : layers_) {
    auto [lo, hi] = calibration.range(entry.second);
    if (lo < hi) entry.second.lo = lo, entry.second.hi = hi;
    all_fixed = all_fixed && entry.second.fixed_range();
  }
  if (all_fixed && !layers_.empty()) small_primitive_cache(false);
}

torch::Tensor Int8Layers::forward(torch::nn::LinearImpl& linear, const torch::Tensor& x) const {
  auto it = layers_.find(&linear);
  return it == layers_.end() ? linear.forward(x) : int8_linear(x, it->second.second);
}

std::vector<std::pair<std::string, torch::Tensor>> Int8Layers::tensors() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [module, entry] : layers_) {
    out.emplace_back(entry.first + kValues, entry.second.weight_int8);
    out.emplace_back(entry.first + kScales, entry.second.scale);
    if (entry.second.fixed_range())
      out.emplace_back(entry.first + kRange, torch::tensor({entry.second.lo, entry.second.hi}, torch::kFloat));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

std::vector<std::string> Int8Layers::replaced_weights() const {
  std::vector<std::string> out;
  for (const auto& [module, entry] : layers_) out.push_back(entry.first + ".weight");
  std::sort(out.begin(), out.end());
  return out;
}

StoredInt8Layers take_int8(std::vector<std::pair<std::string, torch::Tensor>>& stored, const std::string& path) {
  std::map<std::string, StoredInt8> layers;
  std::vector<std::pair<std::string, torch::Tensor>> rest;
  auto base = [](const std::string& name, const char* end) { return name.substr(0, name.size() - std::strlen(end)); };
  for (auto& [name, t] : stored) {
    if (ends_with(name, kValues))
      layers[base(name, kValues)].values = t;
    else if (ends_with(name, kScales))
      layers[base(name, kScales)].scale = t;
    else if (ends_with(name, kRange))
      layers[base(name, kRange)].range = t;
    else
      rest.emplace_back(std::move(name), std::move(t));
  }
  StoredInt8Layers out;
  for (auto& [name, layer] : layers) {
    if (!layer.values.defined() || !layer.scale.defined())
      throw CheckpointError(path + ": " + name +
                            (layer.values.defined()  ? kValues
                             : layer.scale.defined() ? kScales
                                                     : kRange) +
                            " has no " + name + (layer.values.defined() ? kScales : kValues) +
                            "; the artifact is damaged");
    // Checked here too: the dequantized weight below must not read a wrong-typed tensor.
    if (layer.values.scalar_type() != torch::kChar || layer.scale.scalar_type() != torch::kFloat ||
        layer.values.dim() != 2 || layer.scale.dim() != 1 || layer.scale.size(0) != layer.values.size(0))
      throw CheckpointError(path + ": " + name + kValues + " / " + name + kScales +
                            " should be int8 [out, in] and float32 [out]; the artifact is damaged");
    if (layer.range.defined() &&
        (layer.range.scalar_type() != torch::kFloat || layer.range.sizes() != at::IntArrayRef{2}))
      throw CheckpointError(path + ": " + name + kRange +
                            " should be float32 [2], the activations' [lo, hi]; the artifact is damaged");
    rest.emplace_back(name + ".weight", layer.values.to(torch::kFloat) * layer.scale.unsqueeze(1));
    out.emplace_back(name, std::move(layer));
  }
  stored = std::move(rest);
  return out;
}

void Bf16Deploy::quantize(const std::string& precision) {
  if (precision == "int8")
    throw ConfigError(
        "--quantize int8 quantizes the Linear layers of a bert model's encoder; this model type takes --quantize bf16");
  if (precision != "bf16") throw ConfigError("deploy precision '" + precision + "': give bf16");
  dynamic_cast<torch::nn::Module&>(*this).to(torch::kBFloat16);
}

bool plain_inference() {
  return !torch::GradMode::is_enabled() && !at::autocast::is_cpu_enabled() && !at::autocast::is_enabled();
}

torch::Tensor layer_norm(torch::nn::LayerNorm m, const torch::Tensor& x, DerivedTensor* weights) {
  if (x.scalar_type() != torch::kBFloat16 || !x.is_cpu() || !plain_inference()) return m->forward(x);
  auto as_float = [&](const torch::Tensor& t, int i) {
    auto make = [&t] { return t.to(torch::kFloat); };
    return weights ? weights[i].get({t}, make) : make();
  };
  return torch::layer_norm(x.to(torch::kFloat), m->options.normalized_shape(), as_float(m->weight, 0),
                           as_float(m->bias, 1), m->options.eps())
      .to(torch::kBFloat16);
}

std::pair<int64_t, int64_t> bf16_batch_shape(int64_t samples, int64_t length, int64_t max_length) {
  int64_t b = 1;
  while (b < samples && b < 8) b *= 2;
  if (b < samples) b = (samples + 7) / 8 * 8;
  if (max_length > 0 && length > max_length) return {b, length};  // the model refuses it: no padding
  int64_t step = 8;  // a sixteenth of the power of two at or above the length, at least 8
  while (step * 16 < length) step *= 2;
  int64_t t = (length + step - 1) / step * step;
  if (max_length > 0 && t > max_length) t = max_length;
  return {samples == 0 ? 0 : b, t};
}

std::optional<Batch> Bf16Deploy::rounded_bf16_batch(const torch::Tensor& weight, const Batch& batch,
                                                    int64_t max_length) {
  if (weight.scalar_type() != torch::kBFloat16 || !batch.ids.is_cpu() || !plain_inference() || batch.ids.dim() != 2)
    return std::nullopt;
  const int64_t B = batch.ids.size(0), T = batch.ids.size(1);
  const auto shape = bf16_batch_shape(B, T, max_length);
  const int64_t b = shape.first, t = shape.second;  // (not a structured binding: the lambdas below capture them)
  if (B == 0 || (b == B && t == T)) return std::nullopt;
  auto rows = [&](const torch::Tensor& x) {  // rows appended, whatever the tensor's other dimensions
    if (!x.defined()) return x;
    std::vector<int64_t> pad(static_cast<size_t>(2 * x.dim()), 0);
    pad.back() = b - B;
    return torch::constant_pad_nd(x, pad, 0);
  };
  auto grid = [&](const torch::Tensor& x) {
    return x.defined() ? torch::constant_pad_nd(x, {0, t - T, 0, b - B}, 0) : x;
  };
  Batch out;
  out.ids = grid(batch.ids);  // id 0 at padding: masked, whatever it is
  out.mask = grid(batch.mask);
  out.token_types = grid(batch.token_types);
  out.continues = grid(batch.continues);
  out.lengths = rows(batch.lengths);
  out.labels = rows(batch.labels);
  out.indices = rows(batch.indices);
  return out;
}

void Bf16Deploy::load_int8(const StoredInt8Layers& stored) {
  if (!stored.empty())
    throw CheckpointError(stored[0].first +
                          ".weight_int8: only bert artifacts hold int8 layers; the file is damaged or made for "
                          "another model");
}

Quantizable& quantizable(TextModel& model, const std::string& model_type) {
  if (auto* q = dynamic_cast<Quantizable*>(&model)) return *q;
  throw ConfigError("model type '" + model_type +
                    "' has no deploy precision; ltk-eval --quantize takes bert (int8 or bf16), transformer, textcnn "
                    "and rnn (bf16) classification runs (the linear model already predicts at C++ speed in float32, "
                    "bow's embedding bag has no bf16 kernel)");
}

std::vector<std::pair<std::string, torch::Tensor>> deploy_tensors(TextModel& model, const std::string& precision) {
  auto replaced =
      precision == "int8" ? quantizable(model, "").int8_layers().replaced_weights() : std::vector<std::string>{};
  std::vector<std::pair<std::string, torch::Tensor>> out;
  auto keep = [&](const std::string& name) { return !std::binary_search(replaced.begin(), replaced.end(), name); };
  for (const auto& p : model.named_parameters(true))
    if (keep(p.key())) out.emplace_back(p.key(), p.value().detach());
  for (const auto& b : model.named_buffers(true))
    if (keep(b.key())) out.emplace_back(b.key(), b.value().detach());
  if (precision == "int8")
    for (auto& t : quantizable(model, "").int8_layers().tensors()) out.push_back(std::move(t));
  return out;
}

}  // namespace ltk
