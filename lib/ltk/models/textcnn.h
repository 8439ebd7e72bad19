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
#include "ltk/models/derived.h"
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

  /// The pooled features [B, C * kernels] of `x` [B, T, E] (embedded, padding zeroed, T at least the
  /// widest kernel) by LibTorch's conv1d: training, autocast, CUDA and bf16.
  torch::Tensor pooled_by_conv(const torch::Tensor& x, const torch::Tensor& lengths);
  /// The same by one matrix product of the batch's positions with every tap of every convolution,
  /// then shifted sums: float CPU inference of more than one sample. LibTorch 1.13 sends a float conv1d of more than
  /// one sample to oneDNN, which reorders the weights at each call and builds a kernel for each (samples, length)
  /// shape, and one sample alone to its im2col path, so that a server's small batches cost more per text than texts one
  /// at a time; here every batch is one GEMM of [B * T, E] x [E, C * sum(kernel sizes)], without an im2col copy.
  torch::Tensor pooled_by_gemm(const torch::Tensor& x, const torch::Tensor& lengths);

  TextCnnOptions options;
  torch::nn::Embedding embedding{nullptr};
  torch::nn::ModuleList convs{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear output{nullptr};

 private:
  DerivedTensor taps_;  ///< pooled_by_gemm's weights, [C * sum(kernel sizes), E]
};
TORCH_MODULE(TextCnn);

nlohmann::json resolve_textcnn(JsonReader& r);
std::shared_ptr<TextModel> build_textcnn(const nlohmann::json& options, const ModelContext& context);

}  // namespace ltk
