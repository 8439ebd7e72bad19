// BERT for sequence classification, as Hugging Face's BertForSequenceClassification computes it:
// embeddings (word + position + token type, LayerNorm, dropout), post-LayerNorm encoder layers,
// the pooler (dense + tanh on [CLS]), dropout and a linear head. Parameter names are Hugging
// Face's ("bert.encoder.layer.0.attention.self.query.weight", "classifier.weight"), so weights go
// in and out of a Hugging Face directory by name (ltk/io/hf.h).
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/models/bert_direct.h"
#include "ltk/models/quantize.h"
#include "ltk/models/text_model.h"

namespace ltk {

/// The architecture, with Hugging Face's config.json names.
struct BertConfig {
  int64_t vocab_size = 0;  ///< 0: the vocabulary's size
  int64_t hidden_size = 256;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 4;
  int64_t intermediate_size = 1024;
  std::string hidden_act = "gelu";  ///< gelu | gelu_new | relu
  double layer_norm_eps = 1e-12;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  int64_t pad_token_id = 0;
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  double classifier_dropout = -1;  ///< < 0: hidden_dropout_prob (Hugging Face's null)
  std::string pooling = "cls";     ///< cls (the pooler on [CLS]) | mean (over the real tokens)
};

/// Reads the architecture from a resolved model section.
BertConfig bert_config_from(const nlohmann::json& options);

/// The encoder (Hugging Face's BertModel): embeddings, layers, pooler.
class BertEncoderImpl : public torch::nn::Module {
 public:
  /// `with_pooler`: false for a masked-LM model (Hugging Face's BertForMaskedLM has none).
  explicit BertEncoderImpl(const BertConfig& config, bool with_pooler = true);
  /// Hidden states [B, T, H] of a batch (token types 0 when the batch has none).
  torch::Tensor forward(const Batch& batch);
  /// forward(batch)[:, 0], [B, H]: the last layer runs for the first tokens alone.
  torch::Tensor first_token(const Batch& batch);
  /// The pooled vector [B, H]: the pooler on [CLS], or the mean over the real tokens.
  torch::Tensor pool(const torch::Tensor& hidden, const Batch& batch);
  /// Levels below the head of a model's parameter `name` (TextModel::level): the embeddings
  /// num_hidden_layers + 1, layer i num_hidden_layers - i, everything above the encoder 0.
  int64_t level(const std::string& name) const;

  BertConfig config;
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm embeddings_norm{nullptr};
  torch::nn::Dropout embeddings_dropout{nullptr};
  torch::nn::ModuleList layer{nullptr};
  torch::nn::Linear pooler{nullptr};
  /// The encoder layers' Linear layers in int8 (a deploy artifact's); empty: float.
  Int8Layers int8;
  /// float32 and float64 inference of batches of at most this many real tokens runs on plain arrays
  /// (bert_direct.h), larger ones with LibTorch's operators; 0 (or LTK_BERT_DIRECT=0 in the
  /// environment): always LibTorch's. With more than one intra-op thread, at most
  /// kDirectMaxTokensThreaded: the direct path's loops run on the calling thread (only the BLAS's
  /// GEMMs and the GELU use the others), and beyond about 640 tokens (16 fortunes) LibTorch's
  /// operators, each spread over the threads, were measured faster on 2 cores; on one thread the
  /// direct path was faster at every size (batches of 1 to 256 texts: 1.06-1.6x).
  int64_t direct_max_tokens = kDirectMaxTokens;
  static constexpr int64_t kDirectMaxTokens = int64_t{1} << 40;
  static constexpr int64_t kDirectMaxTokensThreaded = 512;
  /// After `int8` is filled: each layer's query, key and value as one int8 layer (one call, the
  /// activations quantized once; each row keeps its scale, so the values are the three layers').
  void fuse_int8();

 private:
  /// bf16 CPU inference pads a batch's length up to a multiple of this: oneDNN builds (and caches,
  /// 1,024 at most) a kernel per matrix shape, and a server's batches of every length in turn
  /// rebuilt them (measured: half float32's requests/s at 8 connections).
  static constexpr int64_t kBucket = 16;
  torch::Tensor run(const Batch& batch, bool first_only);
  /// The embeddings' sum [N, H] of the real tokens at `real` (flattened positions), before their LayerNorm.
  torch::Tensor embed(const Batch& batch, const torch::Tensor& real);
  torch::Tensor encode(const Batch& batch, bool first_only);
};
TORCH_MODULE(BertEncoder);

class BertClassifierImpl : public TextModel, public Quantizable {
 public:
  BertClassifierImpl(const BertConfig& config, int64_t num_outputs);
  /// Logits [B, num_outputs], float32 when the model runs in bf16.
  torch::Tensor forward(const Batch& batch) override;
  /// bf16: every tensor; int8: the encoder layers' six Linear layers each (the pooler and the head,
  /// run on one vector per sample, stay float).
  void quantize(const std::string& precision) override;
  Int8Layers& int8_layers() override { return bert->int8; }
  void load_int8(const StoredInt8Layers& stored) override;
  void fix_int8_ranges(const Int8Calibration& calibration) override;
  bool is_head(const std::string& name) const override { return name.rfind("classifier.", 0) == 0; }
  int64_t level(const std::string& name) const override;
  int64_t num_levels() const override { return bert->config.num_hidden_layers + 1; }
  /// The weights as bert_direct.h reads them.
  BertDirectWeights direct_weights();
  /// Whether the direct path takes a batch of `real_tokens` (float32 or float64 weights on the CPU, no
  /// int8 layers, within direct_max_tokens for the intra-op threads now set).
  bool padding_free(int64_t real_tokens) const override;
  /// The most tokens the direct path takes now: direct_max_tokens, capped with several intra-op threads.
  int64_t direct_max_tokens() const;

  BertEncoder bert{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};

 private:
  /// Whether the direct path may take this model's inference: float32 or float64 weights on the CPU,
  /// no int8 layers, direct_max_tokens above 0, a BLAS with GEMM (the batch is try_bert_direct's to judge).
  bool direct_may_run() const;
};
TORCH_MODULE(BertClassifier);

/// Hugging Face's BertForMaskedLM: the encoder without pooler, then cls.predictions: transform
/// (dense, activation, LayerNorm) and a decoder tied to the word embeddings, plus a bias.
class BertMaskedLMImpl : public TextModel {
 public:
  explicit BertMaskedLMImpl(const BertConfig& config);
  /// Logits [M, V] of the M positions where batch.labels is not -100 (the masked ones).
  torch::Tensor forward(const Batch& batch) override;
  bool is_head(const std::string& name) const override { return name.rfind("cls.", 0) == 0; }
  int64_t level(const std::string& name) const override;
  int64_t num_levels() const override { return bert->config.num_hidden_layers + 1; }

  BertEncoder bert{nullptr};
  torch::nn::Linear transform{nullptr};
  torch::nn::LayerNorm transform_norm{nullptr};
  torch::Tensor bias;
};
TORCH_MODULE(BertMaskedLM);

nlohmann::json resolve_bert(JsonReader& r);
std::shared_ptr<TextModel> build_bert(const nlohmann::json& options, const ModelContext& context);
void check_bert(const nlohmann::json& options, const Config& config);
/// A bert model brings its tokenizer: wordpiece on the directory's vocab.txt, ids in file order,
/// [CLS]/[SEP], the casing of tokenizer_config.json, max_len = max_position_embeddings, and (but
/// for mlm) trainer.bucket_pool 50, each unless the config sets it.
void complete_bert(const nlohmann::json& options, const nlohmann::json& document, Config& config);

/// The config.json of a Hugging Face BERT directory, read and checked (model_type bert,
/// absolute positions); errors name the file.
nlohmann::json read_hf_config(const std::string& dir);

}  // namespace ltk
