// A linear run (model.type "linear") answered without LibTorch: its config, vocabulary, labels and
// weights read as plain files (the weights mapped, not copied), each text's tf-idf row scored
// against them (ltk/data/tfidf.h) and written as the JSON the task's answers are
// (ltk/task/answer_head.h). ltk-predict answers linear runs this way, in a process that never loads
// LibTorch's libraries (most of its start-up); the answers are the bytes the LibTorch Predictor
// (predictor.h) writes for the same run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ltk/infer/inputs.h"

namespace ltk::infer {

class LinearAnswers {
 public:
  /// Opens run `dir` at `checkpoint` ("best", "last", "step-N" or a weights file) when it can be
  /// answered this way: a linear model with float32 weights, on a multiclass, binary, multilabel
  /// or regression task, and no deploy artifact. Returns null for any other run (the caller answers
  /// it with LibTorch, which also reports what is wrong with a run that cannot be opened); throws
  /// an Error naming the file when a file of a linear run is damaged.
  static std::unique_ptr<LinearAnswers> open(const std::string& dir, const std::string& checkpoint);
  ~LinearAnswers();
  LinearAnswers(const LinearAnswers&) = delete;
  LinearAnswers& operator=(const LinearAnswers&) = delete;

  /// The answer of each input, as JSON text, for inputs without an error (the others: ""), with
  /// the k most probable labels as "top" when top_k > 0. On `threads` threads, in slices.
  std::vector<std::string> answer_texts(const std::vector<const TextInput*>& inputs, int64_t top_k, int threads) const;

 private:
  struct State;
  explicit LinearAnswers(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace ltk::infer
