// Answers for texts from a loaded run, as JSON: the one place that decides what ltk-predict prints
// and what ltk-serve returns, so the two always agree.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ltk/data/dataset.h"
#include "ltk/infer/inputs.h"
#include "ltk/io/run.h"

namespace ltk::infer {

/// A loaded run and how to answer with it, the model in eval mode for good. encode() and answer()
/// may run on any threads at once (answer() only reads the model: ltk-serve's model threads share it).
class Predictor {
 public:
  explicit Predictor(LoadedRun run);

  const LoadedRun& run() const { return run_; }
  /// A masked-LM run: answers are {"masks": [...]} for each [MASK] of the text.
  bool masked_lm() const { return run_.task->token_level(); }
  /// The run reads sentence pairs; the JSON field its second text has (data.text_pair_field, else
  /// "text_pair").
  bool pairs() const { return pairs_; }
  const std::string& pair_field() const { return pair_field_; }

  /// Tokenises the inputs without an error, in order, with the run's tokenizer and truncation.
  TextDataset encode(const std::vector<const TextInput*>& inputs) const;
  /// Runs the model over `data` (batches of at most `batch_size`, sorted by length: models are
  /// padding-invariant) and returns one answer per sample, with the k most probable labels as
  /// "top" where top_k[i] > 0 (mlm: the k best pieces per mask, 5 when 0).
  std::vector<nlohmann::ordered_json> answer(const TextDataset& data, const std::vector<int64_t>& top_k,
                                             int64_t batch_size) const;
  /// encode() and answer() in one, each answer as its JSON text (answer(...)[i].dump()), for
  /// inputs without an error. A model that scores rows without batches (linear) answers on the
  /// LibTorch threads, in slices of the inputs: tokens, scores and JSON at once.
  /// `threads` (0: LibTorch's count) is how many slices run at once for such a model.
  std::vector<std::string> answer_texts(const std::vector<const TextInput*>& inputs, int64_t top_k, int64_t batch_size,
                                        int threads = 0) const;
  /// The model scores rows without padded batches (TextModel::forward_rows: a linear run on the CPU).
  bool scores_rows() const { return scores_rows_; }

 private:
  nlohmann::ordered_json fill_masks(const TextDataset& data, int64_t i, int64_t top_k) const;

  /// The scores of rows that forward_rows() scored, and their answers (scores_rows_ only): the
  /// same as the LibTorch-free ltk-predict's (ltk/infer/linear_answers.h).
  void score_rows(const torch::Tensor& logits, int64_t row, float* scores) const;

  LoadedRun run_;
  std::optional<AnswerHead> head_;  ///< scores_rows_: how outputs become answers
  bool scores_rows_ = false;
  bool pairs_ = false;
  std::string pair_field_;
};

/// Appends sample `i` of `from` (ids, length, pair start) to `into`, unlabelled: requests encoded
/// apart are batched together this way.
void append_sample(TextDataset& into, const TextDataset& from, int64_t i);

/// Appends text `t` of `from` to `into`: its sample, or all its windows as one text of `into`
/// (windowed as `from` is).
void append_text(TextDataset& into, const TextDataset& from, int64_t t);

}  // namespace ltk::infer
