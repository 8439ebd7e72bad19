// ltk::Classifier: a trained run directory, loaded once, answering texts. The public API of
// prediction (ltk-predict and ltk-serve answer through the same code, ltk/infer/predictor.h, so
// the three always agree). No LibTorch in this header.
//
//   ltk::Classifier clf("runs/fortunes_bow");
//   ltk::Prediction p = clf.classify("Talk is cheap.");
//   std::cout << p.label << " " << p.score << "\n";
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ltk {

/// A label and its score (a probability; a sigmoid's for multilabel).
struct LabelScore {
  std::string label;
  double score = 0;
};

/// The answer for one text, as ltk-predict prints it (`json`) and in fields:
/// - multiclass, binary: `label` and its `score` (`labels` holds that one label too), `scores` for
///   every label (label order);
/// - multilabel: `labels` (every label over the run's threshold, maybe none) and `scores` for every
///   label;
/// - regression: `value`;
/// - masked LM: only `json` ({"masks": [...]}, the best pieces for each [MASK]).
/// `top` holds the k most probable labels when classify was asked for top_k = k > 0. A text that
/// cannot be answered (empty, invalid UTF-8) has `error` set and nothing else.
struct Prediction {
  std::string label;
  double score = 0;
  std::vector<std::string> labels;
  std::vector<LabelScore> scores;
  std::vector<LabelScore> top;
  double value = 0;
  std::string error;
  nlohmann::ordered_json json;

  bool ok() const { return error.empty(); }
};

struct ClassifierOptions {
  std::string checkpoint = "best";  ///< "best", "last", "step-N" or a weights file
  std::string device = "cpu";       ///< "cpu", "cuda", "cuda:N", "auto"; "" = the run's device
  int64_t batch_size = 64;          ///< texts per model batch in classify_batch
};

class Classifier {
 public:
  /// Loads the run in `run_dir` (what ltk-train wrote): its config, tokenizer, vocabulary, labels
  /// and the weights of options.checkpoint. Throws ltk::Error (with what to do) when it cannot.
  /// Its methods may be called from several threads at once (the model runs one batch at a time);
  /// a moved-from Classifier throws UsageError.
  explicit Classifier(const std::string& run_dir, const ClassifierOptions& options = {});
  ~Classifier();
  Classifier(Classifier&&) noexcept;
  Classifier& operator=(Classifier&&) noexcept;
  Classifier(const Classifier&) = delete;
  Classifier& operator=(const Classifier&) = delete;

  /// The run's task: "multiclass", "binary", "multilabel", "regression" or "mlm".
  const std::string& task() const;
  /// The labels, in the order of Prediction::scores (empty for regression and mlm).
  const std::vector<std::string>& labels() const;
  /// The run reads sentence pairs: use classify_pair / classify_pairs.
  bool pairs() const;

  /// One text. Throws ltk::Error when the text cannot be answered (empty, invalid UTF-8).
  Prediction classify(std::string_view text, int64_t top_k = 0) const;
  /// One sentence pair, for a run trained on pairs.
  Prediction classify_pair(std::string_view text, std::string_view pair, int64_t top_k = 0) const;
  /// Many texts at once (batched, sorted by length): one Prediction each, in order; a text that
  /// cannot be answered has Prediction::error and the others are answered all the same.
  std::vector<Prediction> classify_batch(const std::vector<std::string>& texts, int64_t top_k = 0) const;
  std::vector<Prediction> classify_pairs(const std::vector<std::pair<std::string, std::string>>& pairs,
                                         int64_t top_k = 0) const;

 private:
  struct Impl;
  const Impl& impl() const;  ///< UsageError when moved from
  std::unique_ptr<Impl> impl_;
};

}  // namespace ltk
