// The traditional baseline (model.type "linear"): tf-idf weighted word and character n-grams
// (scikit-learn's TfidfVectorizer: sublinear tf 1 + ln tf, smoothed idf ln((1+n)/(1+df)) + 1
// from the training split, rows L2-normalised) into one linear layer, an EmbeddingBag in sum mode
// with the tf-idf weights as per-sample weights and sparse gradients. With task.loss
// "squared_hinge" it is LinearSVC, with the task's cross-entropy logistic regression; model.C is
// their L2 regularisation.
#pragma once

#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <optional>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/data/ngrams.h"
#include "ltk/data/sparse_rows.h"
#include "ltk/models/linear_config.h"
#include "ltk/models/text_model.h"

namespace ltk {

struct LinearOptions {
  LinearOptions(int64_t vocab_size, int64_t num_outputs) : vocab_size_(vocab_size), num_outputs_(num_outputs) {}
  /// Features (the feature vocabulary, <pad> and <unk> included).
  TORCH_ARG(int64_t, vocab_size);
  /// Logits per sample.
  TORCH_ARG(int64_t, num_outputs);
  /// Word and character n-gram features are normalised each on their own (scikit-learn's
  /// FeatureUnion of two vectorizers) when both are on.
  TORCH_ARG(bool, two_blocks) = false;
  TORCH_ARG(bool, sublinear_tf) = true;
  /// Inverse L2 strength: the objective is ||W||^2 / 2 + C * sum of the losses (scikit-learn's).
  TORCH_ARG(double, C) = 1.0;
  TORCH_ARG(bool, sparse) = true;
  /// false: the weight table is left uninitialised, for weights read from a checkpoint next.
  TORCH_ARG(bool, zero_init) = true;
};

/// The tf-idf rows of a batch: for each sample its distinct features (ascending), their weights.
struct TfIdfRows {
  torch::Tensor rows;     ///< [M] int64 sample of each entry (non-decreasing)
  torch::Tensor ids;      ///< [M] int64 feature id
  torch::Tensor weights;  ///< [M] float64 tf-idf weight, each sample's (block's) rows of unit L2 norm
  torch::Tensor offsets;  ///< [B] int64 where each sample's entries start
};

class LinearImpl : public TextModel {
 public:
  explicit LinearImpl(const LinearOptions& options);
  void reset();
  torch::Tensor forward(const Batch& batch) override;
  /// On the CPU without gradients: each sample's logits as a sparse dot product of its tf-idf row
  /// with the weights (the same products as forward(), summed in the same order).
  torch::Tensor forward_rows(const TextDataset& data, const std::vector<int64_t>& indices) override;
  /// Per sample, sum over its features f of ||W_f||^2 / (2 C df_f): over a training split these sum
  /// to ||W||^2 / (2 C), so the mean over the split is ||W||^2 / (2 C n), and minimising the mean
  /// loss plus this is minimising scikit-learn's objective; only the rows a batch uses get a
  /// gradient, which stays sparse.
  torch::Tensor penalty(const Batch& batch) override;
  /// The tf-idf features of a batch (the unknown and padding ids are not features).
  TfIdfRows features(const Batch& batch) const;
  /// The same rows for every sample of `data`, in one pass over its ids, as a sparse matrix of
  /// vocab_size + 1 columns: the last is the intercept's, of value `intercept` in every row
  /// (optimizer.type "dual_cd" solves on it). Built on `threads` threads; the same matrix whatever
  /// their number.
  SparseRows rows_of(const TextDataset& data, double intercept, int threads = 1) const;
  /// Sets idf and the penalty scales from document frequencies `df` [vocab_size] over `documents`
  /// training texts, and which features are character n-grams (`is_char`, with two blocks).
  void set_statistics(const std::vector<int64_t>& df, int64_t documents, const std::vector<bool>& is_char);
  /// Sets the penalty scales alone, from the document frequencies `df` of the split it trains on
  /// (a model started from another run's weights keeps that run's idf: its features' scale).
  void set_penalty(const std::vector<int64_t>& df);

  LinearOptions options;
  torch::nn::EmbeddingBag weight{nullptr};  ///< [features, outputs]
  torch::Tensor bias;
  torch::Tensor idf;            ///< [features] float64 buffer
  torch::Tensor penalty_scale;  ///< [features] float64 buffer: 1 / (2 C df)
  torch::Tensor block;          ///< [features] int64 buffer (two blocks only): 1 for a character n-gram
};
TORCH_MODULE(Linear);

/// The document frequency of every id of `vocab_size` in `data` (texts that hold it).
std::vector<int64_t> document_frequencies(const TextDataset& data, int64_t vocab_size);

std::shared_ptr<TextModel> build_linear(const nlohmann::json& options, const ModelContext& context);
void check_linear(const nlohmann::json& options, const Config& config);
/// With sparse gradients: optimizer.type "adagrad" and optimizer.lr 1 unless the config sets them.
void complete_linear(const nlohmann::json& options, const nlohmann::json& document, Config& config);

}  // namespace ltk
