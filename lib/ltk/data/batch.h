// A padded batch, as the collate builds it and every model consumes it.
#pragma once

#include <torch/types.h>

namespace ltk {

struct Batch {
  torch::Tensor ids;      ///< [B, T] int64 token ids, padded with the vocabulary's pad id
  torch::Tensor lengths;  ///< [B] int64 real tokens per sample (after truncation)
  torch::Tensor mask;     ///< [B, T] bool, true on real tokens
  torch::Tensor labels;   ///< [B] int64 class ids (undefined for unlabelled input)
  torch::Tensor indices;  ///< [B] int64 sample indices in the dataset
  /// [B, T] int64 token types (0 first text, 1 second text of a pair); undefined without pairs
  torch::Tensor token_types;
  /// [B, T] bool, true on a piece that continues the previous word (whole-word masking); undefined
  /// unless the dataset records words
  torch::Tensor continues;

  int64_t size() const { return ids.size(0); }

  /// The batch on `device`; the one place where data moves to the model's device (P1).
  Batch to(const torch::Device& device) const;
};

}  // namespace ltk
