// TextCNN (Kim 2014): embeddings, one 1-D convolution per kernel size, ReLU, max over the valid
// positions of each sample (padding never wins the max), dropout, linear. A sample shorter than
// a kernel is padded with zero vectors to the kernel's width, so it always has one position.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "ltk/config/json_reader.h"
#include "ltk/models/quantize.h"
#include "ltk/models/text_model.h"

namespace ltk {

struct TextCnnOptions {
  TextCnnOptions(int64_t vocab_size, int64_t num_outputs) : vocab_size_(vocab_size), num_outputs_(num_outputs) {}
  TORCH_ARG(int64_t, vocab_size);
  TORCH_ARG(int64_t, num_outputs);
  /// Width of the embeddings.
  TORCH_ARG(int64_t, embed_dim) = 128;
  /// One convolution per kernel size.
  TORCH_ARG(std::vector<int64_t>, kernel_sizes) = std::vector<int64_t>{3, 4, 5};
  /// Output channels of each convolution.
  TORCH_ARG(int64_t, channels) = 100;
  /// Dropout on the pooled features (training only).
  TORCH_ARG(double, dropout) = 0.5;
};

class TextCnnImpl : public TextModel, public Bf16Deploy {
 public:
  explicit TextCnnImpl(const TextCnnOptions& options);
  void reset();
  torch::Tensor forward(const Batch& batch) override;

  TextCnnOptions options;
  torch::nn::Embedding embedding{nullptr};
  torch::nn::ModuleList convs{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear output{nullptr};
};
TORCH_MODULE(TextCnn);

nlohmann::json resolve_textcnn(JsonReader& r);
std::shared_ptr<TextModel> build_textcnn(const nlohmann::json& options, const ModelContext& context);

}  // namespace ltk
