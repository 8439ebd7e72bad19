#include "ltk/models/bert.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/_transformer_encoder_layer_fwd.h>
#include <fmt/format.h>
#include <torch/nn/init.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/models/derived.h"

namespace ltk {

namespace {

constexpr int64_t MaskedLmIgnore = -100;  // the targets of unselected positions (MaskedLmTask::kIgnore)

/// act(x); in place when `in_place` (x is a fresh tensor nothing else reads, and nothing is recorded).
torch::Tensor activate(torch::Tensor x, const std::string& act, bool in_place = false) {
  const char* approximate = act == "gelu_new" ? "tanh" : "none";
  if (act == "relu") return in_place ? x.relu_() : torch::relu(x);
  return in_place ? torch::gelu_(x, approximate) : torch::gelu(x, approximate);
}

/// The attention of q, k, v [B, heads, T, d] under additive_mask [B, 1, 1, T]: context [B, T, H].
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& additive_mask, torch::nn::Dropout& dropout, bool training) {
  const int64_t B = q.size(0), T = q.size(2), H = q.size(1) * q.size(3);
#if TORCH_VERSION_MAJOR >= 2
  // LibTorch 2.x: the fused kernel (flash / memory-efficient attention on a GPU).
  const double p = training ? dropout->options.p() : 0.0;
  return at::scaled_dot_product_attention(q, k, v, additive_mask, p).transpose(1, 2).reshape({B, T, H});
#else
  (void)training;
  const double root = std::sqrt(static_cast<double>(q.size(3)));  // divided by, as Hugging Face does
  auto scores = torch::matmul(q, k.transpose(-1, -2));
  // In place where nothing is recorded and no autocast mixes dtypes: the scores [B, heads, T, T]
  // are the largest tensor of a long batch (32 MB for 256 texts of 128 tokens, 2 heads).
  if (plain_inference())
    scores.div_(root).add_(additive_mask);
  else
    scores = scores / root + additive_mask;
  auto probs = dropout->forward(torch::softmax(scores, -1));
  scores = torch::Tensor();  // freed before the context is made
  return torch::matmul(probs, v).transpose(1, 2).reshape({B, T, H});
#endif
}

/// The shape of a batch whose real tokens alone go through the encoder layers.
struct PackedBatch {
  int64_t B = 0, T = 0;
  int64_t N = 0;           ///< real tokens
  torch::Tensor real;      ///< [N] int64: each real token's position in the flattened [B * T]
  torch::Tensor additive;  ///< [B, 1, 1, T]: 0 on real keys, the dtype's lowest on padding
};

/// One encoder layer, post-LayerNorm, with Hugging Face's module names (attention.self.query,
/// attention.output.dense, attention.output.LayerNorm, intermediate.dense, output.dense,
/// output.LayerNorm).
class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const BertConfig& c) : heads_(c.num_attention_heads), act_(c.hidden_act) {
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    auto norm = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)); };
    auto attention = register_module("attention", std::make_shared<torch::nn::Module>());
    auto self = attention->register_module("self", std::make_shared<torch::nn::Module>());
    query = self->register_module("query", torch::nn::Linear(H, H));
    key = self->register_module("key", torch::nn::Linear(H, H));
    value = self->register_module("value", torch::nn::Linear(H, H));
    auto attention_output = attention->register_module("output", std::make_shared<torch::nn::Module>());
    attention_dense = attention_output->register_module("dense", torch::nn::Linear(H, H));
    attention_norm = attention_output->register_module("LayerNorm", norm());
    auto intermediate = register_module("intermediate", std::make_shared<torch::nn::Module>());
    intermediate_dense = intermediate->register_module("dense", torch::nn::Linear(H, I));
    auto output = register_module("output", std::make_shared<torch::nn::Module>());
    output_dense = output->register_module("dense", torch::nn::Linear(I, H));
    output_norm = output->register_module("LayerNorm", norm());
    dropout = register_module("dropout", torch::nn::Dropout(c.hidden_dropout_prob));
    attention_dropout = register_module("attention_dropout", torch::nn::Dropout(c.attention_probs_dropout_prob));
  }

  /// float32 inference on a batch without padding: LibTorch's fused encoder layer (the kernel
  /// nn.TransformerEncoderLayer's fast path runs), the same computation with q, k, v in one
  /// projection. x [B, T, H].
  torch::Tensor forward_fused(const torch::Tensor& x, const torch::Tensor& padding) {
    auto [qkv_weight, qkv_bias] = qkv_params();
    return at::_transformer_encoder_layer_fwd(
        x, x.size(2), heads_, qkv_weight, qkv_bias, attention_dense->weight, attention_dense->bias, act_ == "gelu",
        /*norm_first=*/false, attention_norm->options.eps(), attention_norm->weight, attention_norm->bias,
        output_norm->weight, output_norm->bias, intermediate_dense->weight, intermediate_dense->bias,
        output_dense->weight, output_dense->bias, padding, /*mask_type=*/1);
  }

  /// The layer on the batch's real tokens alone (training, autocast and inference; int8 layers
  /// included): x [R, H] holds the batch's N real tokens, then R - N rows that are computed and
  /// ignored (rows rounded up for oneDNN in bf16 inference, see pad_rows). Attention alone sees the
  /// padded [B, T] layout, its inputs scattered there and its output gathered back, so that padding
  /// costs nothing in the dense layers. `first_rows` [B] (the rows of the samples' first tokens),
  /// when given: every row is attended to, but only the first tokens attend and go on, [B, H] (the
  /// last layer under a [CLS] pooler).
  torch::Tensor forward_packed(const torch::Tensor& x, const PackedBatch& p, const torch::Tensor& first_rows = {}) {
    const int64_t H = x.size(1), R = x.size(0), d = H / heads_;
    // In place where nothing is recorded for backward and no autocast mixes dtypes (bf16 + float32
    // gives float32 there, as the module's own computation does).
    const bool in_place = plain_inference();
    auto residual_add = [&](torch::Tensor out, const torch::Tensor& residual) {
      out = dropout->forward(out);
      return in_place ? out.add_(residual) : out + residual;
    };
    // Each large intermediate is let go as soon as the next one is made (a batch's peak memory).
    auto spread = [&] {
      auto qkv = project_qkv(x);  // [R, 3H]
      return torch::zeros({p.B * p.T, 3 * H}, qkv.options()).index_copy_(0, p.real, qkv.narrow(0, 0, p.N));
    }();
    auto heads = [&](const torch::Tensor& t, int64_t T) { return t.reshape({p.B, T, heads_, d}).transpose(1, 2); };
    auto parts = spread.split(H, -1);
    torch::Tensor context, residual;
    if (first_rows.defined()) {
      auto first_queries = spread.view({p.B, p.T, 3 * H}).select(1, 0).narrow(1, 0, H);
      context = attend(heads(first_queries, 1), heads(parts[1], p.T), heads(parts[2], p.T), p.additive,
                       attention_dropout, is_training())
                    .reshape({p.B, H});
      residual = x.index_select(0, first_rows);
    } else {
      context = attend(heads(parts[0], p.T), heads(parts[1], p.T), heads(parts[2], p.T), p.additive, attention_dropout,
                       is_training())
                    .reshape({p.B * p.T, H})
                    .index_select(0, p.real);
      if (R > p.N) context = torch::constant_pad_nd(context, {0, 0, 0, R - p.N});
      residual = x;
    }
    parts.clear();
    spread.reset();
    auto a = layer_norm(attention_norm, residual_add(dense(attention_dense, context), residual), norm_cache_[0]);
    context.reset();
    auto h = activate(dense(intermediate_dense, a), act_, in_place);
    auto out = dense(output_dense, h);
    h.reset();
    return layer_norm(output_norm, residual_add(out, a), norm_cache_[1]);
  }

  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, attention_dense{nullptr}, intermediate_dense{nullptr},
      output_dense{nullptr};
  torch::nn::LayerNorm attention_norm{nullptr}, output_norm{nullptr};
  torch::nn::Dropout dropout{nullptr}, attention_dropout{nullptr};
  const Int8Layers* int8 = nullptr;            ///< the encoder's
  std::shared_ptr<const Int8Linear> qkv_int8;  ///< query, key and value in one (BertEncoderImpl::fuse_int8)

  /// The query, key and value weights and biases as one projection, concatenated once (and again
  /// only when one of them changed).
  std::pair<torch::Tensor, torch::Tensor> qkv_params() {
    auto make = [](std::vector<torch::Tensor> parts) {
      torch::NoGradGuard no_grad;
      return torch::cat(parts);
    };
    return {qkv_weight_.get({query->weight, key->weight, value->weight},
                            [&] {
                              return make({query->weight, key->weight, value->weight});
                            }),
            qkv_bias_.get({query->bias, key->bias, value->bias}, [&] {
              return make({query->bias, key->bias, value->bias});
            })};
  }

 private:
  torch::Tensor project_qkv(const torch::Tensor& x) {
    if (qkv_int8) return int8_linear(x, *qkv_int8);
    if (int8 && int8->find(*query))
      return torch::cat({int8->forward(*query, x), int8->forward(*key, x), int8->forward(*value, x)}, 1);
    if (torch::GradMode::is_enabled())  // training: concatenated at each step, so that gradients flow
      return torch::addmm(torch::cat({query->bias, key->bias, value->bias}), x,
                          torch::cat({query->weight, key->weight, value->weight}).t());
    auto [w, b] = qkv_params();
    return torch::addmm(b, x, w.t());
  }

  /// A Linear layer on rows x [R, in]: int8 in a deploy artifact, else one addmm (bias included).
  torch::Tensor dense(torch::nn::Linear& m, const torch::Tensor& x) const {
    if (int8 && int8->find(*m)) return int8->forward(*m, x);
    return torch::addmm(m->bias, x, m->weight.t());
  }

  int64_t heads_;
  std::string act_;
  DerivedTensor qkv_weight_, qkv_bias_;
  DerivedTensor norm_cache_[2][2];  ///< float32 weight and bias of attention_norm and output_norm
};
TORCH_MODULE(BertLayer);

double lowest(torch::ScalarType t) {
  switch (t) {
    case torch::kDouble: return std::numeric_limits<double>::lowest();
    case torch::kFloat: return std::numeric_limits<float>::lowest();
    case torch::kHalf: return -65504.0;
    default: return -3.38e38;  // bfloat16
  }
}

/// rows [N, H] with zero rows appended up to a multiple of 16, or above 256 rows of a sixteenth of
/// the power of two at or above N: oneDNN builds a bf16 kernel for each matrix shape and keeps
/// 1,024 of them, and a server's batches hold every count of real tokens in turn. 8 shapes per
/// doubling, at most 12.5% more rows.
torch::Tensor pad_rows(const torch::Tensor& rows) {
  const int64_t N = rows.size(0);
  int64_t step = 16;
  while (step * 16 < N) step *= 2;
  const int64_t R = (N + step - 1) / step * step;
  return R == N ? rows : torch::constant_pad_nd(rows, {0, 0, 0, R - N});
}

}  // namespace

BertEncoderImpl::BertEncoderImpl(const BertConfig& c, bool with_pooler) : config(c) {
  if (!bert_direct_enabled()) direct_max_tokens = 0;
  const int64_t H = c.hidden_size;
  auto embeddings = register_module("embeddings", std::make_shared<torch::nn::Module>());
  word_embeddings = embeddings->register_module(
      "word_embeddings", torch::nn::Embedding(torch::nn::EmbeddingOptions(c.vocab_size, H).padding_idx(c.pad_token_id)));
  position_embeddings =
      embeddings->register_module("position_embeddings", torch::nn::Embedding(c.max_position_embeddings, H));
  token_type_embeddings = embeddings->register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab_size, H));
  embeddings_norm =
      embeddings->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)));
  embeddings_dropout = embeddings->register_module("dropout", torch::nn::Dropout(c.hidden_dropout_prob));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layer = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    BertLayer l(c);
    l->int8 = &int8;
    layer->push_back(l);
  }
  if (!with_pooler) return;
  auto pooler_module = register_module("pooler", std::make_shared<torch::nn::Module>());
  pooler = pooler_module->register_module("dense", torch::nn::Linear(H, H));
}

torch::Tensor BertEncoderImpl::forward(const Batch& batch) {
  return run(batch, false);
}

torch::Tensor BertEncoderImpl::first_token(const Batch& batch) {
  return run(batch, true);
}

torch::Tensor BertEncoderImpl::run(const Batch& batch, bool first_only) {
  const int64_t T = batch.ids.size(1);
  const int64_t bucket = ((T + kBucket - 1) / kBucket) * kBucket;
  if (word_embeddings->weight.scalar_type() != torch::kBFloat16 || !batch.ids.is_cpu() ||
      torch::GradMode::is_enabled() || bucket == T || bucket > config.max_position_embeddings)
    return encode(batch, first_only);
  auto pad = [&](const torch::Tensor& t, int64_t value) {
    return t.defined() ? torch::constant_pad_nd(t, {0, bucket - T}, value) : t;
  };
  Batch padded = batch;
  padded.ids = pad(batch.ids, config.pad_token_id);
  padded.mask = pad(batch.mask, 0);
  padded.token_types = pad(batch.token_types, 0);
  padded.continues = pad(batch.continues, 0);
  auto out = encode(padded, first_only);
  return first_only ? out : out.narrow(1, 0, T);
}

torch::Tensor BertEncoderImpl::embed(const Batch& batch, const torch::Tensor& real) {
  const int64_t T = batch.ids.size(1);
  if (T > config.max_position_embeddings)
    throw TrainError(fmt::format("a batch of {} tokens per sample exceeds the model's max_position_embeddings {}; set "
                                 "data.max_len to at most {}",
                                 T, config.max_position_embeddings, config.max_position_embeddings));
  // The article's device-side assert, caught with a message: an id outside the embedding table.
  if (batch.ids.numel() > 0) {
    auto [lo, hi] = torch::aminmax(batch.ids);
    if (lo.item<int64_t>() < 0 || hi.item<int64_t>() >= config.vocab_size)
      throw TrainError(fmt::format("token id {} is outside the model's vocabulary of {} (data.tokenizer.dict must be "
                                   "the model's own vocab.txt)",
                                   lo.item<int64_t>() < 0 ? lo.item<int64_t>() : hi.item<int64_t>(), config.vocab_size));
  }
  // The real tokens alone: their ids, token types and positions, summed in Hugging Face's order.
  auto x = word_embeddings->forward(batch.ids.reshape({-1}).index_select(0, real));
  x = batch.token_types.defined()
          ? x + token_type_embeddings->forward(batch.token_types.reshape({-1}).index_select(0, real))
          : x + token_type_embeddings->weight[0];
  return x + position_embeddings->forward(real.remainder(T));
}

torch::Tensor BertEncoderImpl::encode(const Batch& batch, bool first_only) {
  const int64_t B = batch.ids.size(0), T = batch.ids.size(1), H = config.hidden_size;
  auto padding = batch.mask.logical_not();
  PackedBatch p{B, T, 0, batch.mask.reshape({-1}).nonzero().squeeze(1), {}};
  p.N = p.real.size(0);
  auto x = embed(batch, p.real);  // [N, H]
  p.additive = torch::zeros({B, 1, 1, T}, x.options()).masked_fill(padding.view({B, 1, 1, T}), lowest(x.scalar_type()));
  auto result = [&](const torch::Tensor& hidden) { return first_only ? hidden.select(1, 0) : hidden; };
  const bool inference = !is_training() && plain_inference();
  // The first tokens' rows, when only they are wanted from the last layer and every sample has one.
  torch::Tensor first_rows;
  if (first_only && B > 0 && batch.mask.select(1, 0).all().item<bool>()) {
    auto lengths = batch.mask.sum(1);
    first_rows = lengths.cumsum(0) - lengths;
  }
  const int64_t L = static_cast<int64_t>(layer->size());
  int64_t i = 0;
  torch::Tensor rows;
  if (inference && p.N == B * T && x.scalar_type() == torch::kFloat && config.hidden_act != "gelu_new" &&
      int8.empty()) {
    x = layer_norm(embeddings_norm, x).view({B, T, H});  // every position is real, in order
    for (; i < L - (first_rows.defined() ? 1 : 0); ++i) x = layer[i]->as<BertLayer>()->forward_fused(x, padding);
    if (i == L) return result(x);
    rows = x.reshape({B * T, H});
  } else {
    rows = x;
    if (inference && x.scalar_type() == torch::kBFloat16 && x.is_cpu()) rows = pad_rows(rows);
    rows = embeddings_dropout->forward(layer_norm(embeddings_norm, rows));
  }
  for (; i < L; ++i)
    rows = layer[i]->as<BertLayer>()->forward_packed(rows, p, i == L - 1 ? first_rows : torch::Tensor());
  if (first_rows.defined() && L > 0) return rows;
  return result(
      torch::zeros({B * T, H}, rows.options()).index_copy_(0, p.real, rows.narrow(0, 0, p.N)).view({B, T, H}));
}

torch::Tensor BertEncoderImpl::pool(const torch::Tensor& hidden, const Batch& batch) {
  if (config.pooling == "cls") return torch::tanh(pooler->forward(hidden.select(1, 0)));
  auto w = batch.mask.unsqueeze(2).to(hidden.dtype());
  return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0);
}

BertClassifierImpl::BertClassifierImpl(const BertConfig& c, int64_t num_outputs) {
  bert = register_module("bert", BertEncoder(c));
  dropout = register_module("dropout",
                            torch::nn::Dropout(c.classifier_dropout >= 0 ? c.classifier_dropout : c.hidden_dropout_prob));
  classifier = register_module("classifier", torch::nn::Linear(c.hidden_size, num_outputs));
}

torch::Tensor BertClassifierImpl::forward(const Batch& batch) {
  // (Checked before direct_weights(), which joins query, key and value: a bf16 model would keep them for nothing.)
  if (!is_training() && !bert->is_training() && direct_may_run()) {
    auto logits = try_bert_direct(direct_weights(), batch, direct_max_tokens());
    if (logits.defined()) return logits;
  }
  // A [CLS] pooler needs the last layer at [CLS] alone (BertEncoderImpl::first_token).
  auto pooled = bert->config.pooling == "cls" ? torch::tanh(bert->pooler->forward(bert->first_token(batch)))
                                              : bert->pool(bert->forward(batch), batch);
  auto out = classifier->forward(dropout->forward(pooled));
  return out.scalar_type() == torch::kBFloat16 ? out.to(torch::kFloat) : out;  // scores and losses in float32
}

int64_t BertClassifierImpl::direct_max_tokens() const {
  const int64_t max_tokens = bert->direct_max_tokens;
  return at::get_num_threads() > 1 ? std::min(max_tokens, BertEncoderImpl::kDirectMaxTokensThreaded) : max_tokens;
}

bool BertClassifierImpl::direct_may_run() const {
  const auto& w = bert->word_embeddings->weight;
  return bert->int8.empty() && w.is_cpu() && (w.scalar_type() == torch::kFloat || w.scalar_type() == torch::kDouble) &&
         bert->direct_max_tokens > 0 && blas_has_gemm();
}

bool BertClassifierImpl::padding_free(int64_t real_tokens) const {
  return direct_may_run() && real_tokens <= direct_max_tokens();
}

BertDirectWeights BertClassifierImpl::direct_weights() {
  auto dense = [](const torch::nn::Linear& m) { return BertDirectWeights::Dense{m->weight, m->bias}; };
  auto norm = [](const torch::nn::LayerNorm& m) {
    return BertDirectWeights::Norm{m->weight, m->bias, m->options.eps()};
  };
  const auto& e = *bert;
  BertDirectWeights w;
  w.word = e.word_embeddings->weight;
  w.position = e.position_embeddings->weight;
  w.token_type = e.token_type_embeddings->weight;
  w.embeddings_norm = norm(e.embeddings_norm);
  for (const auto& m : *e.layer) {
    auto* l = m->as<BertLayer>();
    auto [qkv_weight, qkv_bias] = l->qkv_params();
    w.layers.push_back({{qkv_weight, qkv_bias},
                        dense(l->attention_dense),
                        dense(l->intermediate_dense),
                        dense(l->output_dense),
                        norm(l->attention_norm),
                        norm(l->output_norm)});
  }
  if (e.pooler) w.pooler = dense(e.pooler);
  w.classifier = dense(classifier);
  w.heads = e.config.num_attention_heads;
  w.act = e.config.hidden_act;
  w.pooling = e.config.pooling;
  return w;
}

void BertEncoderImpl::fuse_int8() {
  for (const auto& m : *layer) {
    auto* l = m->as<BertLayer>();
    const Int8Linear *q = int8.find(*l->query), *k = int8.find(*l->key), *v = int8.find(*l->value);
    if (!q || !k || !v) continue;
    auto fused = pack_linear(torch::cat({q->weight_int8, k->weight_int8, v->weight_int8}),
                             torch::cat({q->scale, k->scale, v->scale}),
                             torch::cat({l->query->bias, l->key->bias, l->value->bias}), "query, key and value");
    if (q->fixed_range() && k->fixed_range() && v->fixed_range()) {  // (one input: the same range, as calibrated)
      fused.lo = std::min({q->lo, k->lo, v->lo});
      fused.hi = std::max({q->hi, k->hi, v->hi});
    }
    l->qkv_int8 = std::make_shared<const Int8Linear>(std::move(fused));
  }
}

void BertClassifierImpl::load_int8(const StoredInt8Layers& stored) {
  for (const auto& [name, values] : stored)
    if (name.rfind("bert.encoder.layer.", 0) != 0)
      throw CheckpointError(name +
                            ".weight_int8: only the encoder layers' Linear layers are int8 in a bert artifact; "
                            "the file is damaged, make it again with ltk-eval --quantize int8");
  bert->int8.load(*this, stored);
  bert->fuse_int8();
}

void BertClassifierImpl::fix_int8_ranges(const Int8Calibration& calibration) {
  auto& int8 = bert->int8;
  // Query, key and value ran as one layer: theirs is its range (the calibration saw them not apart).
  for (const auto& m : *bert->layer) {
    auto* l = m->as<BertLayer>();
    if (!l->qkv_int8) continue;
    auto [lo, hi] = calibration.range(*l->qkv_int8);
    if (!(lo < hi)) continue;
    for (auto* linear : {l->query.get(), l->key.get(), l->value.get()}) int8.set_range(*linear, lo, hi);
  }
  int8.set_ranges(calibration);  // the other layers; keeps those it never saw as they are
  bert->fuse_int8();
}

void BertClassifierImpl::quantize(const std::string& precision) {
  if (precision == "bf16") {
    to(torch::kBFloat16);
  } else if (precision == "int8") {
    bert->int8.quantize(*this, [](const std::string& name) { return name.rfind("bert.encoder.layer.", 0) == 0; });
    bert->fuse_int8();
  } else {
    throw ConfigError("deploy precision '" + precision + "': give bf16 or int8");
  }
}

BertMaskedLMImpl::BertMaskedLMImpl(const BertConfig& c) {
  bert = register_module("bert", BertEncoder(c, /*with_pooler=*/false));
  auto cls = register_module("cls", std::make_shared<torch::nn::Module>());
  auto predictions = cls->register_module("predictions", std::make_shared<torch::nn::Module>());
  auto t = predictions->register_module("transform", std::make_shared<torch::nn::Module>());
  transform = t->register_module("dense", torch::nn::Linear(c.hidden_size, c.hidden_size));
  transform_norm = t->register_module(
      "LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  bias = predictions->register_parameter("bias", torch::zeros({c.vocab_size}));
}

torch::Tensor BertMaskedLMImpl::forward(const Batch& batch) {
  if (!batch.labels.defined())
    throw TrainError("a masked-LM model predicts the positions the task selected (batch.labels); none are given");
  auto hidden = bert->forward(batch);
  auto selected = hidden.index({batch.labels != MaskedLmIgnore});  // [M, H]
  auto h = layer_norm(transform_norm, activate(transform->forward(selected), bert->config.hidden_act));
  return torch::nn::functional::linear(h, bert->word_embeddings->weight, bias);  // decoder tied to the embeddings
}

int64_t BertEncoderImpl::level(const std::string& name) const {
  const int64_t L = config.num_hidden_layers;
  if (name.rfind("bert.embeddings.", 0) == 0) return L + 1;
  static const std::string layer = "bert.encoder.layer.";
  if (name.rfind(layer, 0) == 0) return L - std::stoll(name.substr(layer.size()));
  return 0;  // the pooler and the head
}

int64_t BertMaskedLMImpl::level(const std::string& name) const { return bert->level(name); }

int64_t BertClassifierImpl::level(const std::string& name) const { return bert->level(name); }

}  // namespace ltk
