// The interface every ltk model implements: a padded Batch in, logits out. A model never
// computes its loss or steps an optimiser; the trainer does (the five steps, in one place).
#pragma once

#include <torch/nn/module.h>

#include "ltk/data/batch.h"
#include "ltk/data/dataset.h"
#include "ltk/data/vocab.h"

namespace ltk {

/// What a model needs to know about the data when it is built.
struct ModelContext {
  int64_t vocab_size = 0;   ///< rows of the embedding table
  int64_t num_outputs = 0;  ///< logits per sample, decided by the task
  int64_t pad_id = 0;
  /// The vocabulary, for pretrained vectors; null when a run is loaded from its checkpoint.
  const Vocabulary* vocab = nullptr;
  /// The task predicts masked pieces (task.type "mlm"): a model with a language-model head.
  bool masked_lm = false;
  /// Texts in the training split (a linear model's idf); 0 when a run is loaded.
  int64_t documents = 0;
  /// The weights are read from a checkpoint next (a loaded run): a model may leave them
  /// uninitialised rather than spend the start-up filling them.
  bool weights_follow = false;
};

class TextModel : public torch::nn::Module {
 public:
  /// Outputs [B, num_outputs]. Returns tensors only (P9).
  virtual torch::Tensor forward(const Batch& batch) = 0;
  /// A regularisation term of each sample [B] that the trainer adds to the task's loss (reduced
  /// as the loss is), or an undefined tensor (most models: optimizer.weight_decay regularises).
  virtual torch::Tensor penalty(const Batch& batch) { return {}; }
  /// The outputs [indices.size(), num_outputs] of samples `indices` of `data` computed straight
  /// from their ids, without a padded batch or a graph, where the model has such a path, else an
  /// undefined tensor (the default; evaluation then runs forward()). The linear model scores its
  /// tf-idf rows as sparse dot products on the CPU, on the LibTorch threads.
  virtual torch::Tensor forward_rows(const TextDataset& data, const std::vector<int64_t>& indices) { return {}; }

  /// Whether inference of one batch of `real_tokens` tokens in all costs nothing for its padding
  /// (BERT's direct path computes each text's own tokens alone), so that a caller need not split
  /// it into batches of similar lengths. Most models compute every padded position: false.
  virtual bool padding_free(int64_t real_tokens) const { return false; }

  /// Whether parameter `name` belongs to the task head (optimizer.head_lr).
  virtual bool is_head(const std::string& name) const { return name.rfind("output.", 0) == 0; }
  /// Layer-wise learning-rate decay (optimizer.layer_decay): how many levels parameter `name`
  /// sits below the head (0: the head and what sits on the last layer, num_levels(): the
  /// embeddings); the lr is multiplied by layer_decay^level. Models without layers: 0.
  virtual int64_t level(const std::string& name) const { return 0; }
  virtual int64_t num_levels() const { return 0; }
};

}  // namespace ltk
