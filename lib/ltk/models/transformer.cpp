#include "ltk/models/transformer.h"

#include <ATen/autocast_mode.h>
#include <fmt/format.h>
#include <torch/nn/functional/dropout.h>
#include <torch/nn/functional/linear.h>
#include <torch/nn/init.h>

#include <cmath>
#include <limits>

#include "ltk/core/error.h"
#include "ltk/models/embeddings.h"

namespace ltk {

EncoderLayerImpl::EncoderLayerImpl(int64_t dim, int64_t heads, int64_t ff_dim, double p, bool norm_first, bool gelu)
    : norm_first_(norm_first), gelu_(gelu) {
  self_attn = register_module("self_attn",
                              torch::nn::MultiheadAttention(torch::nn::MultiheadAttentionOptions(dim, heads).dropout(p)));
  linear1 = register_module("linear1", torch::nn::Linear(dim, ff_dim));
  dropout = register_module("dropout", torch::nn::Dropout(p));
  linear2 = register_module("linear2", torch::nn::Linear(ff_dim, dim));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)));
  dropout1 = register_module("dropout1", torch::nn::Dropout(p));
  dropout2 = register_module("dropout2", torch::nn::Dropout(p));
}

// LibTorch 1.13's attention masks padded keys in float32 and float64 alone, and takes no per-sample
// mask otherwise: bf16 scores (and fp16 ones under CUDA autocast) are computed here, as its
// multi_head_attention_forward does (the query scaled by head_dim^-1/2 after its projection), the products autocast
// where autocast is on.
torch::Tensor EncoderLayerImpl::attend_bf16(const torch::Tensor& x, const torch::Tensor& key_padding_mask) {
  const int64_t T = x.size(0), B = x.size(1), E = x.size(2), heads = self_attn->options.num_heads(), d = E / heads;
  auto qkv = torch::nn::functional::linear(x, self_attn->in_proj_weight, self_attn->in_proj_bias).chunk(3, -1);
  auto split = [&](const torch::Tensor& t) { return t.reshape({T, B * heads, d}).transpose(0, 1); };  // [B*h, T, d]
  auto q = split(qkv[0] * std::pow(static_cast<double>(d), -0.5));
  auto scores = torch::bmm(q, split(qkv[1]).transpose(1, 2)).view({B, heads, T, T});
  scores = scores.masked_fill(key_padding_mask.view({B, 1, 1, T}), -std::numeric_limits<float>::infinity());
  auto p = torch::nn::functional::dropout(
      torch::softmax(scores.view({B * heads, T, T}), -1),
      torch::nn::functional::DropoutFuncOptions().p(self_attn->options.dropout()).training(is_training()));
  auto out = torch::bmm(p, split(qkv[2])).transpose(0, 1).reshape({T, B, E});
  return self_attn->out_proj->forward(out);
}

torch::Tensor EncoderLayerImpl::attend(const torch::Tensor& x, const torch::Tensor& key_padding_mask) {
  // Reduced-precision scores: a bf16 model's (a deploy artifact), or float32 weights under autocast
  // (trainer.precision bf16, or fp16 on CUDA).
  const bool autocast = x.is_cuda() ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  if (x.scalar_type() == torch::kBFloat16 || autocast) return dropout1->forward(attend_bf16(x, key_padding_mask));
  auto out = std::get<0>(self_attn->forward(x, x, x, key_padding_mask, /*need_weights=*/false));
  return dropout1->forward(out);
}

torch::Tensor EncoderLayerImpl::feed_forward(const torch::Tensor& x) {
  auto h = linear1->forward(x);
  h = gelu_ ? torch::gelu(h) : torch::relu(h);
  return dropout2->forward(linear2->forward(dropout->forward(h)));
}

torch::Tensor EncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& key_padding_mask) {
  if (norm_first_) {
    auto y = x + attend(layer_norm(norm1, x, norm_cache_[0]), key_padding_mask);
    return y + feed_forward(layer_norm(norm2, y, norm_cache_[1]));
  }
  auto y = layer_norm(norm1, x + attend(x, key_padding_mask), norm_cache_[0]);
  return layer_norm(norm2, y + feed_forward(y), norm_cache_[1]);
}

TransformerImpl::TransformerImpl(const TransformerOptions& options_) : options(options_) { reset(); }

void TransformerImpl::reset() {
  const int64_t E = options.embed_dim();
  bool use_cls = options.pooling() == "cls";
  embedding = register_module("embedding",
                              torch::nn::Embedding(torch::nn::EmbeddingOptions(options.vocab_size(), E).padding_idx(0)));
  positions = register_module("positions", torch::nn::Embedding(options.max_positions() + (use_cls ? 1 : 0), E));
  if (use_cls) cls = register_parameter("cls", torch::nn::init::normal_(torch::empty({E}), 0.0, 0.02));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.layers(); ++i)
    layers->push_back(EncoderLayer(E, options.heads(), options.ff_dim(), options.dropout(), options.norm() == "pre",
                                   options.activation() == "gelu"));
  if (options.norm() == "pre") norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({E})));
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout()));
  output = register_module("output", torch::nn::Linear(E, options.num_outputs()));
}

torch::Tensor TransformerImpl::forward(const Batch& batch) {
  if (auto rounded = rounded_bf16_batch(embedding->weight, batch, options.max_positions()))
    return forward(*rounded).narrow(0, 0, batch.size());
  const int64_t B = batch.ids.size(0);
  int64_t T = batch.ids.size(1);
  if (T > options.max_positions())
    throw TrainError(fmt::format("a batch of {} tokens per sample exceeds model.max_positions {}; set data.max_len to at "
                                 "most {}",
                                 T, options.max_positions(), options.max_positions()));
  auto x = embedding->forward(batch.ids);  // [B, T, E]
  auto real = batch.mask;                 // [B, T]
  if (cls.defined()) {
    x = torch::cat({cls.view({1, 1, -1}).expand({B, 1, cls.size(0)}), x}, 1);
    real = torch::cat({torch::ones({B, 1}, real.options()), real}, 1);
    ++T;
  }
  auto pos = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
  x = dropout->forward(x + positions->forward(pos).unsqueeze(0));
  // An empty sample attends to its (padding) first position rather than to nothing.
  auto attendable = real.clone();
  attendable.select(1, 0).fill_(true);
  auto key_padding_mask = attendable.logical_not();
  x = x.transpose(0, 1);  // [T, B, E]
  for (const auto& layer : *layers) x = layer->as<EncoderLayer>()->forward(x, key_padding_mask);
  if (norm) x = layer_norm(norm, x, norm_cache_);
  x = x.transpose(0, 1);  // [B, T, E]
  torch::Tensor pooled;
  if (cls.defined()) {
    pooled = x.select(1, 0);
  } else {
    // (A bf16 model's sums and counts divided in float32: bf16 holds whole numbers up to 256 alone.)
    const auto acc = torch::promote_types(x.scalar_type(), torch::kFloat);
    auto w = real.unsqueeze(2).to(x.dtype());
    pooled = ((x * w).sum(1).to(acc) / real.sum(1).unsqueeze(1).to(acc).clamp_min(1.0)).to(x.dtype());
  }
  return float32_outputs(output->forward(dropout->forward(pooled)));
}

int64_t TransformerImpl::level(const std::string& name) const {
  const int64_t L = options.layers();
  if (name.rfind("layers.", 0) == 0) return L - std::stoll(name.substr(7));
  if (name.rfind("embedding.", 0) == 0 || name.rfind("positions.", 0) == 0 || name == "cls") return L + 1;
  return 0;  // the final norm and the output layer
}

nlohmann::json resolve_transformer(JsonReader& r) {
  TransformerOptions o(0, 0);
  int64_t embed_dim = o.embed_dim(), heads = o.heads(), layers = o.layers(), ff_dim = o.ff_dim(),
          max_positions = o.max_positions();
  double dropout = o.dropout();
  std::string norm = o.norm(), activation = o.activation(), pooling = o.pooling();
  r.get("embed_dim", embed_dim);
  check_min(r.key_path("embed_dim"), embed_dim, 1);
  r.get("heads", heads);
  check_min(r.key_path("heads"), heads, 1);
  if (embed_dim % heads != 0)
    config_fail(r.key_path("heads"), fmt::format("{} heads do not divide embed_dim {}", heads, embed_dim));
  r.get("layers", layers);
  check_min(r.key_path("layers"), layers, 1);
  r.get("ff_dim", ff_dim);
  check_min(r.key_path("ff_dim"), ff_dim, 1);
  r.get("dropout", dropout);
  check_min(r.key_path("dropout"), dropout, 0);
  check_max(r.key_path("dropout"), dropout, 1, /*inclusive=*/false);
  r.get_enum("norm", norm, {"post", "pre"});
  r.get_enum("activation", activation, {"relu", "gelu"});
  r.get_enum("pooling", pooling, {"cls", "mean"});
  r.get("max_positions", max_positions);
  check_min(r.key_path("max_positions"), max_positions, 1);
  nlohmann::json out = {{"embed_dim", embed_dim}, {"heads", heads},           {"layers", layers},
                        {"ff_dim", ff_dim},       {"dropout", dropout},       {"norm", norm},
                        {"activation", activation}, {"pooling", pooling},     {"max_positions", max_positions}};
  resolve_embedding_keys(r, out);
  return out;
}

std::shared_ptr<TextModel> build_transformer(const nlohmann::json& j, const ModelContext& context) {
  TransformerOptions o(context.vocab_size, context.num_outputs);
  o.embed_dim(j.at("embed_dim").get<int64_t>())
      .heads(j.at("heads").get<int64_t>())
      .layers(j.at("layers").get<int64_t>())
      .ff_dim(j.at("ff_dim").get<int64_t>())
      .dropout(j.at("dropout").get<double>())
      .norm(j.at("norm").get<std::string>())
      .activation(j.at("activation").get<std::string>())
      .pooling(j.at("pooling").get<std::string>())
      .max_positions(j.at("max_positions").get<int64_t>());
  Transformer model(o);
  init_embeddings(model->embedding->weight, j, context.vocab);
  return model.ptr();
}

void check_transformer(const nlohmann::json& options, const Config& config) {
  const int64_t max_positions = options.at("max_positions").get<int64_t>();
  if (config.data.max_len == 0 || config.data.max_len > max_positions)
    config_fail("data.max_len", fmt::format("must be between 1 and model.max_positions ({}) for a transformer (got {})",
                                            max_positions, config.data.max_len));
}

}  // namespace ltk
