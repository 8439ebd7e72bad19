#include "ltk/models/textcnn.h"

#include <torch/nn/functional/padding.h>

#include "ltk/models/embeddings.h"

namespace ltk {

TextCnnImpl::TextCnnImpl(const TextCnnOptions& options_) : options(options_) { reset(); }

void TextCnnImpl::reset() {
  embedding = register_module(
      "embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(options.vocab_size(), options.embed_dim()).padding_idx(0)));
  convs = register_module("convs", torch::nn::ModuleList());
  for (int64_t k : options.kernel_sizes())
    convs->push_back(torch::nn::Conv1d(torch::nn::Conv1dOptions(options.embed_dim(), options.channels(), k)));
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout()));
  output = register_module(
      "output", torch::nn::Linear(options.channels() * static_cast<int64_t>(options.kernel_sizes().size()), options.num_outputs()));
}

torch::Tensor TextCnnImpl::forward(const Batch& batch) {
  if (auto rounded = rounded_bf16_batch(embedding->weight, batch)) return forward(*rounded).narrow(0, 0, batch.size());
  int64_t kmax = *std::max_element(options.kernel_sizes().begin(), options.kernel_sizes().end());
  // Zero vectors at padded positions: whatever the pad row holds, padding contributes nothing.
  auto x = embedding->forward(batch.ids);  // [B, T, E]
  x = x * batch.mask.unsqueeze(2).to(x.dtype());
  int64_t T = x.size(1);
  if (T < kmax) x = torch::nn::functional::pad(x, torch::nn::functional::PadFuncOptions({0, 0, 0, kmax - T}));
  // One sample alone takes LibTorch's own im2col path, faster than the GEMM's extra small ops there.
  const bool gemm = x.is_cpu() && x.size(0) > 1 && x.scalar_type() != torch::kBFloat16 && plain_inference();
  auto pooled = gemm ? pooled_by_gemm(x, batch.lengths) : pooled_by_conv(x, batch.lengths);
  return float32_outputs(output->forward(dropout->forward(pooled)));
}

namespace {

// Max over the valid positions of `y` [B, P, C] (position t is valid when its window starts inside
// the sample, and inside the batch's T - k + 1 windows; at least one per sample): [B, C].
torch::Tensor max_over_valid(const torch::Tensor& y, const torch::Tensor& lengths, int64_t k, int64_t windows) {
  auto valid = torch::clamp(lengths - k + 1, 1, std::max<int64_t>(1, windows)).to(y.device());
  auto positions = torch::arange(y.size(1), torch::TensorOptions().dtype(torch::kLong).device(y.device()));
  auto keep = positions.unsqueeze(0) < valid.unsqueeze(1);  // [B, P]
  return std::get<0>(y.masked_fill(~keep.unsqueeze(2), -std::numeric_limits<float>::infinity()).max(1));
}

}  // namespace

torch::Tensor TextCnnImpl::pooled_by_conv(const torch::Tensor& x, const torch::Tensor& lengths) {
  const auto channels_first = x.transpose(1, 2);  // [B, E, T]
  std::vector<torch::Tensor> pooled;
  size_t i = 0;
  for (const auto& module : *convs) {
    auto y = torch::relu(module->as<torch::nn::Conv1d>()->forward(channels_first)).transpose(1, 2);  // [B, P, C]
    const int64_t k = options.kernel_sizes()[i++];
    pooled.push_back(max_over_valid(y, lengths, k, x.size(1) - k + 1));
  }
  return torch::cat(pooled, 1);
}

torch::Tensor TextCnnImpl::pooled_by_gemm(const torch::Tensor& x, const torch::Tensor& lengths) {
  if (x.size(0) == 0) return pooled_by_conv(x, lengths);
  const int64_t B = x.size(0), T = x.size(1), E = x.size(2), C = options.channels(), N = B * T;
  // Every tap of every convolution as a row block: tap j of a width-k kernel holds its weights
  // [C, E] at position j of the window.
  std::vector<torch::Tensor> weights;
  for (const auto& module : *convs) weights.push_back(module->as<torch::nn::Conv1d>()->weight);
  auto taps = taps_.get(weights, [&] {
    std::vector<torch::Tensor> blocks;
    for (const auto& w : weights) blocks.push_back(w.permute({2, 0, 1}).reshape({-1, E}));  // [k * C, E]
    return torch::cat(blocks, 0);
  });
  // The batch's positions as one sequence of N rows, taken in slices: each slice's responses to
  // every tap [rows, sum(k) * C] stay small and in cache for the sums below. A whole batch's would
  // be tens of MB (64 texts of 128 tokens: 39 MB), allocated afresh, page by page, at each call:
  // ltk-predict on textcnn spent 2 s of 7.5 in the kernel so, against 5 s in all by slices.
  const auto flat = x.reshape({N, E});
  std::vector<torch::Tensor> responses;  // per convolution, [N, C]
  for (size_t i = 0; i < convs->size(); ++i) responses.push_back(torch::empty({N, C}, x.options()));
  const int64_t kmax = *std::max_element(options.kernel_sizes().begin(), options.kernel_sizes().end());
  const int64_t slice = 256;  // rows: 1.2 MB of responses for 128 -> 100 channels, kernels 3-5
  for (int64_t r0 = 0; r0 < N; r0 += slice) {
    const int64_t r1 = std::min(N, r0 + slice);
    auto z = torch::mm(flat.narrow(0, r0, std::min(N, r1 + kmax - 1) - r0), taps.t());
    int64_t column = 0;
    for (size_t i = 0; i < convs->size(); ++i) {
      const int64_t k = options.kernel_sizes()[i];
      // The window at row r sums tap j's response at row r + j, for the rows whose window ends
      // inside the batch. Rows past a sample's T - k + 1 mix it with the next sample; they are past
      // every valid position (T is at least the widest kernel), so masked.
      const int64_t count = std::min(r1, N - k + 1) - r0;
      if (count > 0) {
        auto head = responses[i].narrow(0, r0, count);
        torch::add_out(head, z.narrow(0, 0, count).narrow(1, column, C), convs[i]->as<torch::nn::Conv1d>()->bias);
        for (int64_t j = 1; j < k; ++j) head.add_(z.narrow(0, j, count).narrow(1, column + j * C, C));
      }
      column += k * C;
    }
  }
  std::vector<torch::Tensor> pooled;
  for (size_t i = 0; i < convs->size(); ++i) {
    const int64_t k = options.kernel_sizes()[i];
    auto& y = responses[i];
    y.narrow(0, N - k + 1, k - 1).zero_();
    pooled.push_back(max_over_valid(torch::relu_(y).view({B, T, C}), lengths, k, T - k + 1));
  }
  return torch::cat(pooled, 1);
}

nlohmann::json resolve_textcnn(JsonReader& r) {
  TextCnnOptions o(0, 0);
  int64_t embed_dim = o.embed_dim(), channels = o.channels();
  std::vector<int64_t> kernels = o.kernel_sizes();
  double dropout = o.dropout();
  r.get("embed_dim", embed_dim);
  check_min(r.key_path("embed_dim"), embed_dim, 1);
  r.get("kernel_sizes", kernels);
  if (kernels.empty()) config_fail(r.key_path("kernel_sizes"), "needs at least one kernel size");
  for (int64_t k : kernels) check_min(r.key_path("kernel_sizes"), k, 1);
  r.get("channels", channels);
  check_min(r.key_path("channels"), channels, 1);
  r.get("dropout", dropout);
  check_min(r.key_path("dropout"), dropout, 0);
  check_max(r.key_path("dropout"), dropout, 1, /*inclusive=*/false);
  nlohmann::json out = {{"embed_dim", embed_dim}, {"kernel_sizes", kernels}, {"channels", channels}, {"dropout", dropout}};
  resolve_embedding_keys(r, out);
  return out;
}

std::shared_ptr<TextModel> build_textcnn(const nlohmann::json& j, const ModelContext& context) {
  TextCnnOptions o(context.vocab_size, context.num_outputs);
  o.embed_dim(j.at("embed_dim").get<int64_t>())
      .kernel_sizes(j.at("kernel_sizes").get<std::vector<int64_t>>())
      .channels(j.at("channels").get<int64_t>())
      .dropout(j.at("dropout").get<double>());
  TextCnn model(o);
  init_embeddings(model->embedding->weight, j, context.vocab);
  return model.ptr();
}

}  // namespace ltk
