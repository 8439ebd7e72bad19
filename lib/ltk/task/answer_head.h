// How a task turns a text's outputs into its answer, the JSON ltk-predict prints and ltk-serve
// returns, on plain arrays without LibTorch: the task classes (task.h) write their predictions with
// these functions, and a linear run is answered with them where LibTorch is not loaded (the
// LibTorch-free ltk-predict).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/data/labels.h"

namespace ltk {

namespace task_detail {

/// Rounds to 6 decimals (the scores ltk-predict prints).
double round6(double x);

/// Appends round6(x) as nlohmann::json's dump() writes that double ("0.25", "1.0", "5e-05", "null").
void append_round6(std::string& out, double x);

/// Appends `s` as a JSON string, as nlohmann::json's dump() writes it.
void append_json_string(std::string& out, const std::string& s);

/// Appends `,"scores":{label: score, ...}` and, when top_k > 0, `,"top":[{"label": ..., "score": ...}]`
/// (the k largest, ties in label order), from the rounded scores of every label.
void append_scores(std::string& out, const LabelMap& labels, const std::vector<double>& rounded, int64_t top_k);

}  // namespace task_detail

/// The answers of each task type, from a text's scores (probabilities; a regression's value),
/// appended to `out` as JSON: the same bytes as the task's prediction(scores, top_k).dump().
void write_multiclass_answer(const LabelMap& labels, const float* scores, int64_t top_k, std::string& out);
/// `positive`: the index of the positive label; scores[0] is its probability.
void write_binary_answer(const LabelMap& labels, int64_t positive, double threshold, const float* scores, int64_t top_k,
                         std::string& out);
void write_multilabel_answer(const LabelMap& labels, const std::vector<double>& thresholds, const float* scores,
                             int64_t top_k, std::string& out);
void write_regression_answer(const float* scores, std::string& out);

/// The scores of one text's K logits into `out`, as a task of type `type` gives them: the logits
/// divided by the temperature (one, one per output, or none when empty), then softmax
/// (multiclass), sigmoid (binary, multilabel) or as they are (regression), computed in float64.
/// ltk-predict's answers and ltk-eval's scores of a linear run both come from here.
void answer_scores(const std::string& type, const std::vector<double>& temperature, const float* logits, int64_t K,
                   float* out);

/// task.positive_label's index among `labels` (1 when it is not set); ConfigError naming the key
/// when it is not a label.
int64_t positive_label_index(const TaskConfig& config, const LabelMap& labels);

/// task.threshold for output columns labelled `names`: one number for all, or {label: threshold}
/// with 0.5 for the others ("tune": 0.5 until the validation's choice replaces them); ConfigError
/// naming a key that is no label.
std::vector<double> configured_thresholds(const TaskConfig& config, const std::vector<std::string>& names);

/// What answers a text of a multiclass, binary, multilabel or regression task from its model
/// outputs (logits): the scores, then the JSON.
struct AnswerHead {
  AnswerHead(std::string type, LabelMap labels);
  std::string type;
  LabelMap labels;                  ///< empty for regression
  int64_t positive = 1;             ///< binary: the positive label's index
  std::vector<double> thresholds;   ///< binary: one; multilabel: one per label
  std::vector<double> temperature;  ///< task.calibrate's fit: one, or one per output; empty: none

  /// Outputs per text.
  int64_t width() const;
  /// An Error naming `where` (the file they came from) unless the thresholds are one per output
  /// (binary, multilabel; none otherwise) and the temperature one, or one per output, each > 0.
  void check(const std::string& where) const;
  /// answer_scores() of one text's `width()` logits.
  void scores(const float* logits, float* out) const;
  /// The text's answer from its scores, appended to `out` (top_k > 0: also the k most probable
  /// labels as "top").
  void write(const float* scores, int64_t top_k, std::string& out) const;
};

}  // namespace ltk
