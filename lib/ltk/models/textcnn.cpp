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
  x = x.transpose(1, 2);  // [B, E, T']
  std::vector<torch::Tensor> pooled;
  auto lengths = batch.lengths;
  size_t i = 0;
  for (const auto& module : *convs) {
    int64_t k = options.kernel_sizes()[i++];
    auto y = torch::relu(module->as<torch::nn::Conv1d>()->forward(x));  // [B, C, T' - k + 1]
    // Position t is valid when its window starts inside the sample; at least one per sample.
    auto valid = torch::clamp_min(lengths - k + 1, 1).to(y.device());
    auto positions = torch::arange(y.size(2), torch::TensorOptions().dtype(torch::kLong).device(y.device()));
    auto keep = positions.unsqueeze(0) < valid.unsqueeze(1);  // [B, P]
    y = y.masked_fill(~keep.unsqueeze(1), -std::numeric_limits<float>::infinity());
    pooled.push_back(std::get<0>(y.max(2)));
  }
  return float32_outputs(output->forward(dropout->forward(torch::cat(pooled, 1))));
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
