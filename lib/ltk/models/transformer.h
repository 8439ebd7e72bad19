// A Transformer encoder trained from scratch: token + learned position embeddings, N encoder
// layers (pre- or post-LayerNorm, the same computation and parameter names as PyTorch's
// nn.TransformerEncoderLayer), an attention mask from the padding, and CLS or mean pooling.
#pragma once

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/models/quantize.h"
#include "ltk/models/text_model.h"

namespace ltk {

struct TransformerOptions {
  TransformerOptions(int64_t vocab_size, int64_t num_outputs) : vocab_size_(vocab_size), num_outputs_(num_outputs) {}
  TORCH_ARG(int64_t, vocab_size);
  TORCH_ARG(int64_t, num_outputs);
  /// Model width (embeddings and every layer).
  TORCH_ARG(int64_t, embed_dim) = 128;
  /// Attention heads; must divide embed_dim.
  TORCH_ARG(int64_t, heads) = 4;
  /// Encoder layers.
  TORCH_ARG(int64_t, layers) = 2;
  /// Width of each layer's feed-forward block.
  TORCH_ARG(int64_t, ff_dim) = 256;
  /// Dropout in attention, feed-forward, on the embeddings and the pooled vector.
  TORCH_ARG(double, dropout) = 0.1;
  /// "post" (the original Transformer) or "pre" LayerNorm (plus a final LayerNorm).
  TORCH_ARG(std::string, norm) = "post";
  /// "relu" or "gelu".
  TORCH_ARG(std::string, activation) = "relu";
  /// "cls" (a learned vector prepended to every sample) or "mean" over the real tokens.
  TORCH_ARG(std::string, pooling) = "cls";
  /// Longest input (tokens, CLS excluded); data.max_len must not exceed it.
  TORCH_ARG(int64_t, max_positions) = 512;
};

/// One encoder layer, as nn.TransformerEncoderLayer(batch_first=False) computes it.
class EncoderLayerImpl : public torch::nn::Module {
 public:
  EncoderLayerImpl(int64_t dim, int64_t heads, int64_t ff_dim, double dropout, bool norm_first, bool gelu);
  /// x [T, B, E]; key_padding_mask [B, T], true where a key must be ignored.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_padding_mask);

  torch::nn::MultiheadAttention self_attn{nullptr};
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  DerivedTensor norm_cache_[2][2];  ///< bf16 inference: float32 weight and bias of norm1 and norm2
  torch::nn::Dropout dropout{nullptr}, dropout1{nullptr}, dropout2{nullptr};

 private:
  torch::Tensor attend(const torch::Tensor& x, const torch::Tensor& key_padding_mask);
  torch::Tensor attend_bf16(const torch::Tensor& x, const torch::Tensor& key_padding_mask);
  torch::Tensor feed_forward(const torch::Tensor& x);
  bool norm_first_, gelu_;
};
TORCH_MODULE(EncoderLayer);

class TransformerImpl : public TextModel, public Bf16Deploy {
 public:
  explicit TransformerImpl(const TransformerOptions& options);
  void reset();
  torch::Tensor forward(const Batch& batch) override;
  int64_t level(const std::string& name) const override;
  int64_t num_levels() const override { return options.layers() + 1; }

  TransformerOptions options;
  torch::nn::Embedding embedding{nullptr}, positions{nullptr};
  torch::Tensor cls;
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  DerivedTensor norm_cache_[2];  ///< bf16 inference: the final norm's float32 weight and bias
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear output{nullptr};
};
TORCH_MODULE(Transformer);

nlohmann::json resolve_transformer(JsonReader& r);
std::shared_ptr<TextModel> build_transformer(const nlohmann::json& options, const ModelContext& context);
/// data.max_len must be set and within max_positions.
void check_transformer(const nlohmann::json& options, const Config& config);

}  // namespace ltk
