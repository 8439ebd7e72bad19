#include "ltk/models/quantize.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/_make_per_channel_quantized_tensor.h>
#include <fmt/format.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"

namespace ltk {

namespace {

const char* const kValues = ".weight_int8";
const char* const kScales = ".weight_scale";

bool ends_with(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

/// The onednn engine, selected once for the packing (a packed weight keeps its engine's kernels).
void use_onednn() {
  if (const std::string why = int8_unavailable(); !why.empty()) throw ConfigError(why);
  static std::once_flag once;
  std::call_once(once, [] {
    at::globalContext().setQEngine(at::QEngine::ONEDNN);
    // LibTorch 1.13's onednn dynamic linear builds a primitive for each call's activation scale,
    // which oneDNN's primitive cache (1,024 by default) then keeps and never reuses: 330 MB more
    // peak RSS on a 2-layer, 128-wide BERT's evaluation, at the same speed with 16 (measured). The
    // cache is sized down unless the user sized it; looked up at run time, as a LibTorch that
    // links oneDNN statically does not export it.
    if (!std::getenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY") && !std::getenv("DNNL_PRIMITIVE_CACHE_CAPACITY"))
      if (auto* set = reinterpret_cast<int (*)(int)>(dlsym(RTLD_DEFAULT, "dnnl_set_primitive_cache_capacity"))) set(16);
  });
  if (at::globalContext().qEngine() != at::QEngine::ONEDNN) at::globalContext().setQEngine(at::QEngine::ONEDNN);
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

torch::Tensor int8_linear(const torch::Tensor& x, const Int8Linear& layer, bool reduce_range) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "");
  // onednn builds a kernel for each new number of rows (about 20 ms each, measured: more than a
  // length-sorted evaluation's whole int8 compute). Rows go in chunks of kChunk, the last padded
  // with zero rows to a power of two from 64: five shapes per layer in all. Zero rows leave the
  // activations' range as it is (it always holds 0), so the real rows come out as unpadded.
  constexpr int64_t kChunk = 1024, kSmallest = 64;
  const int64_t K = x.size(-1), M = x.numel() / std::max<int64_t>(K, 1);
  auto in = x.to(torch::kFloat).reshape({M, K});
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < M || parts.empty(); start += kChunk) {
    const int64_t rows = std::min(kChunk, M - start);
    int64_t padded = kSmallest;
    while (padded < rows) padded *= 2;
    auto part = in.narrow(0, start, rows);
    if (padded != rows) part = torch::cat({part, torch::zeros({padded - rows, K}, part.options())});
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

void Int8Layers::load(torch::nn::Module& model,
                      const std::vector<std::pair<std::string, std::pair<torch::Tensor, torch::Tensor>>>& stored) {
  for (const auto& [name, vs] : stored) {
    auto* linear = linear_of(model, name);
    if (!linear)
      throw CheckpointError(name + kValues + ": the model has no Linear layer " + name +
                            "; the artifact was made for another model");
    if (vs.first.sizes() != linear->weight.sizes())
      throw CheckpointError(fmt::format("{}{}: [{}] values for a layer of [{}]", name, kValues,
                                        fmt::join(vs.first.sizes(), ", "), fmt::join(linear->weight.sizes(), ", ")));
    add(name, *linear, pack_linear(vs.first, vs.second, linear->bias, name));
  }
}

const Int8Linear* Int8Layers::find(const torch::nn::LinearImpl& linear) const {
  auto it = layers_.find(&linear);
  return it == layers_.end() ? nullptr : &it->second.second;
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

std::vector<std::pair<std::string, std::pair<torch::Tensor, torch::Tensor>>> take_int8(
    std::vector<std::pair<std::string, torch::Tensor>>& stored, const std::string& path) {
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> pairs;
  std::vector<std::pair<std::string, torch::Tensor>> rest;
  for (auto& [name, t] : stored) {
    if (ends_with(name, kValues))
      pairs[name.substr(0, name.size() - std::string(kValues).size())].first = t;
    else if (ends_with(name, kScales))
      pairs[name.substr(0, name.size() - std::string(kScales).size())].second = t;
    else
      rest.emplace_back(std::move(name), std::move(t));
  }
  std::vector<std::pair<std::string, std::pair<torch::Tensor, torch::Tensor>>> out;
  for (auto& [name, vs] : pairs) {
    if (!vs.first.defined() || !vs.second.defined())
      throw CheckpointError(path + ": " + name + (vs.first.defined() ? kValues : kScales) + " has no " + name +
                            (vs.first.defined() ? kScales : kValues) + "; the artifact is damaged");
    // Checked here too: the dequantized weight below must not read a wrong-typed tensor.
    if (vs.first.scalar_type() != torch::kChar || vs.second.scalar_type() != torch::kFloat || vs.first.dim() != 2 ||
        vs.second.dim() != 1 || vs.second.size(0) != vs.first.size(0))
      throw CheckpointError(path + ": " + name + kValues + " / " + name + kScales +
                            " should be int8 [out, in] and float32 [out]; the artifact is damaged");
    rest.emplace_back(name + ".weight", vs.first.to(torch::kFloat) * vs.second.unsqueeze(1));
    out.emplace_back(name, std::move(vs));
  }
  stored = std::move(rest);
  return out;
}

Quantizable& quantizable(TextModel& model, const std::string& model_type) {
  if (auto* q = dynamic_cast<Quantizable*>(&model)) return *q;
  throw ConfigError("model type '" + model_type +
                    "' has no deploy precision yet; ltk-eval --quantize takes bert "
                    "classification runs (the linear model already predicts at C++ speed in float32)");
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
