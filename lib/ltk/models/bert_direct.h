// BERT classification of a few texts on plain arrays: the forward pass of BertClassifier in float32
// or float64 inference on the CPU, as loops over each sample's real tokens and calls of the BLAS's
// GEMM, with one LibTorch operator per layer (the GELU). A server's batch of one to a few short
// texts spent most of its time in LibTorch's per-operator cost (about a hundred operators, each
// dispatched, shape-checked and allocated: 2.2 ms for 2.4 texts of a 2x128 BERT, of which a tenth
// was arithmetic); here padding costs nothing either, each text attending over its own tokens.
// The computation is Hugging Face's, step by step (tested against the LibTorch path in float64).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "ltk/data/batch.h"

namespace ltk {

/// The weights of a BertClassifier, as its modules hold them (no copy but the joined query, key and
/// value, which the model keeps).
struct BertDirectWeights {
  struct Dense {
    torch::Tensor weight, bias;  ///< [out, in], [out]
  };
  struct Norm {
    torch::Tensor weight, bias;
    double eps = 1e-12;
  };
  struct Layer {
    Dense qkv;  ///< query, key and value as one projection: [3H, H], [3H]
    Dense attention_output, intermediate, output;
    Norm attention_norm, output_norm;
  };
  torch::Tensor word, position, token_type;  ///< the embedding tables
  Norm embeddings_norm;
  std::vector<Layer> layers;
  Dense pooler, classifier;
  int64_t heads = 1;
  std::string act = "gelu";     ///< gelu | gelu_new | relu
  std::string pooling = "cls";  ///< cls | mean
};

/// Whether the direct path may run: false when LTK_BERT_DIRECT=0 is in the environment (for
/// comparisons and to rule it out; read once).
bool bert_direct_enabled();

/// The classifier's logits [B, outputs] (in the weights' dtype) of `batch`, or an undefined tensor
/// when this path does not take it, and the caller computes it with LibTorch: it takes plain
/// inference (no gradient, no autocast) on the CPU with float32 or float64 weights, a batch whose
/// every sample has real tokens, its first one real, at most `max_tokens` of them in all, every id
/// within the embedding tables, and a loaded BLAS with GEMM.
torch::Tensor try_bert_direct(const BertDirectWeights& w, const Batch& batch, int64_t max_tokens);

}  // namespace ltk
