// Recurrent encoder: embeddings, an LSTM or GRU over packed sequences (padding is never fed to
// the cell), pooled by the last hidden state, or the max or mean over the real tokens.
#pragma once

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/models/quantize.h"
#include "ltk/models/text_model.h"

namespace ltk {

struct RnnOptions {
  RnnOptions(int64_t vocab_size, int64_t num_outputs) : vocab_size_(vocab_size), num_outputs_(num_outputs) {}
  TORCH_ARG(int64_t, vocab_size);
  TORCH_ARG(int64_t, num_outputs);
  /// Width of the embeddings.
  TORCH_ARG(int64_t, embed_dim) = 128;
  /// "lstm" or "gru".
  TORCH_ARG(std::string, cell) = "lstm";
  /// Hidden width per direction.
  TORCH_ARG(int64_t, hidden_dim) = 128;
  /// Stacked layers.
  TORCH_ARG(int64_t, layers) = 1;
  /// Read the text in both directions.
  TORCH_ARG(bool, bidirectional) = true;
  /// "last" (final hidden state of each direction), "max" or "mean" over the real tokens.
  TORCH_ARG(std::string, pooling) = "last";
  /// Dropout between stacked layers and on the pooled vector (training only).
  TORCH_ARG(double, dropout) = 0.0;
};

class RnnImpl : public TextModel, public Bf16Deploy {
 public:
  explicit RnnImpl(const RnnOptions& options);
  void reset();
  torch::Tensor forward(const Batch& batch) override;

  RnnOptions options;
  torch::nn::Embedding embedding{nullptr};
  torch::nn::LSTM lstm{nullptr};
  torch::nn::GRU gru{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear output{nullptr};
};
TORCH_MODULE(Rnn);

nlohmann::json resolve_rnn(JsonReader& r);
std::shared_ptr<TextModel> build_rnn(const nlohmann::json& options, const ModelContext& context);
/// trainer.bucket_pool 50 unless the config sets it: length bucketing trains the rnn 1.6x faster on
/// fortunes_en without a significant change in accuracy over 3 seeds (docs/sweeps.md); textcnn and
/// the transformer lost accuracy with it, so they keep 0.
void complete_rnn(const nlohmann::json& options, const nlohmann::json& document, Config& config);

}  // namespace ltk
