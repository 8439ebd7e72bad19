// Bag of words: embeddings averaged over a sample's real tokens and, optionally, its hashed word
// n-grams (fastText's -wordNgrams), through an EmbeddingBag with offsets, so padding never enters
// the sum; an optional hidden layer; then a linear layer to the logits.
#pragma once

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/models/text_model.h"

namespace ltk {

struct BowOptions {
  BowOptions(int64_t vocab_size, int64_t num_outputs) : vocab_size_(vocab_size), num_outputs_(num_outputs) {}
  /// Rows of the word embedding table.
  TORCH_ARG(int64_t, vocab_size);
  /// Logits per sample.
  TORCH_ARG(int64_t, num_outputs);
  /// Width of the embeddings.
  TORCH_ARG(int64_t, embed_dim) = 128;
  /// Longest word n-gram added to the bag: 1 = words only, 2 = words and bigrams, ...
  TORCH_ARG(int64_t, ngrams) = 1;
  /// Hash buckets shared by the n-grams (rows after the vocabulary's).
  TORCH_ARG(int64_t, buckets) = 100000;
  /// Width of a ReLU hidden layer after pooling; 0 = none.
  TORCH_ARG(int64_t, hidden_dim) = 0;
  /// Dropout on the pooled vector (training only).
  TORCH_ARG(double, dropout) = 0.0;
  /// Sparse embedding gradients (with optimizer sgd or adagrad).
  TORCH_ARG(bool, sparse) = false;
};

/// The hashed ids of the n-grams of length `n` of `ids` [B, T] (valid where `mask` holds for the
/// whole n-gram): vocab_size + (((id_0 * P + id_1) % buckets) * P + id_2) % buckets ..., with
/// P = 116049371. Exposed so that Python can reproduce it.
std::pair<torch::Tensor, torch::Tensor> hashed_ngrams(const torch::Tensor& ids, const torch::Tensor& mask, int64_t n,
                                                      int64_t vocab_size, int64_t buckets);

class BowImpl : public TextModel {
 public:
  explicit BowImpl(const BowOptions& options);
  void reset();
  torch::Tensor forward(const Batch& batch) override;

  BowOptions options;
  torch::nn::EmbeddingBag embedding{nullptr};
  torch::nn::Linear hidden{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear output{nullptr};
};
TORCH_MODULE(Bow);

nlohmann::json resolve_bow(JsonReader& r);
std::shared_ptr<TextModel> build_bow(const nlohmann::json& options, const ModelContext& context);
/// Sparse embedding gradients need an optimiser that takes them (sgd without momentum, adagrad).
void check_bow(const nlohmann::json& options, const Config& config);

}  // namespace ltk
