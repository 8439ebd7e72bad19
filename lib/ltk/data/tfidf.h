// The tf-idf rows of the linear model (model.type "linear") and their dot products with its
// weights, on plain arrays: the sparse path that scores texts (ltk-predict, ltk-eval, ltk-serve)
// and builds the solver's matrix, without LibTorch. ltk/models/linear.h owns the weights.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ltk {

/// What a tf-idf row is computed from: the model's buffers as plain arrays.
struct TfIdfTable {
  int64_t vocab_size = 0;       ///< features, <pad> and <unk> included
  bool sublinear_tf = true;     ///< tf becomes 1 + ln tf
  const double* idf = nullptr;  ///< [vocab_size]
  /// [vocab_size] 1 for a character n-gram, 0 for a word n-gram: the two blocks are normalised
  /// each on their own (scikit-learn's FeatureUnion); null with one block.
  const int64_t* block = nullptr;
};

/// A text's distinct features (ids in [kFirstWordId, vocab_size): the unknown and padding ids and
/// ids past the vocabulary are no features) in ascending order, and how often each occurs: counted
/// in a table of the vocabulary's size that is cleared after each text, then ordered by a radix
/// sort on 8-bit digits (std::sort's comparisons mispredict: it was a quarter of ltk-predict's time
/// on short texts). One per thread.
class FeatureCounts {
 public:
  /// This thread's table, for a vocabulary of `V` (kept between calls: clearing it is the cost).
  static FeatureCounts& of_thread(int64_t V);
  /// Counts the `n` ids of `tokens`; the distinct ones sorted unless `sorted` is false.
  void collect(const int32_t* tokens, int64_t n, bool sorted = true);
  /// The distinct features, ascending (else in the order they first occurred).
  const std::vector<int32_t>& ids() const { return ids_; }
  int64_t count(int32_t id) const { return counts_[static_cast<size_t>(id)]; }

 private:
  void sort();
  std::vector<int32_t> counts_;  // no text holds 2^31 ids (8 GB of them)
  std::vector<int32_t> ids_, spare_;
  int passes_ = 0;
};

/// The tf-idf row of a text of `n` ids: its distinct features into `counts.ids()` (ascending when
/// `sorted`, else in the order they first occur), their weights into `values`, each block of unit
/// L2 norm.
void tfidf_row(const TfIdfTable& table, const int32_t* tokens, int64_t n, FeatureCounts& counts,
               std::vector<double>& values, bool sorted = true);

/// The K logits of a text: its tf-idf row times the weights `W` [vocab_size, K] (row-major), plus
/// `bias`, into `out`.
/// float64 weights: each product added as LibTorch's x86 embedding_bag kernel adds it (one fused
/// multiply-add per element, features in ascending order), so that these logits are the LibTorch
/// forward()'s to the last bit where both round alike.
/// float32 weights: the sums are accumulated in float64, in the order the features first occur
/// (no sort: it was the largest cost of ltk-predict), then rounded once to float32: at least as
/// close to the exact sum as LibTorch's float32 kernel, and the same bits whatever the order
/// except with a chance of about (features x 2^-29) a logit.
void score_text(const TfIdfTable& table, const int32_t* tokens, int64_t n, const double* W, const double* bias,
                int64_t K, double* out, FeatureCounts& counts, std::vector<double>& values);
void score_text(const TfIdfTable& table, const int32_t* tokens, int64_t n, const float* W, const float* bias, int64_t K,
                float* out, FeatureCounts& counts, std::vector<double>& values);

}  // namespace ltk
