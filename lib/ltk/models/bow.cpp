#include "ltk/models/bow.h"

#include <torch/nn/init.h>

namespace ltk {

BowImpl::BowImpl(const BowOptions& options_) : options(options_) { reset(); }

void BowImpl::reset() {
  embedding = register_module(
      "embedding", torch::nn::EmbeddingBag(torch::nn::EmbeddingBagOptions(options.vocab_size(), options.embed_dim())
                                               .mode(torch::kMean)));
  int64_t width = options.embed_dim();
  if (options.hidden_dim() > 0) {
    hidden = register_module("hidden", torch::nn::Linear(width, options.hidden_dim()));
    width = options.hidden_dim();
  }
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout()));
  output = register_module("output", torch::nn::Linear(width, options.num_outputs()));
}

torch::Tensor BowImpl::forward(const Batch& batch) {
  // Flatten the real tokens and give each sample's start: padding is never looked up.
  auto flat = batch.ids.masked_select(batch.mask);
  auto offsets = batch.lengths.cumsum(0) - batch.lengths;
  auto pooled = embedding->forward(flat, offsets);
  if (hidden) pooled = torch::relu(hidden->forward(pooled));
  return output->forward(dropout->forward(pooled));
}

nlohmann::json resolve_bow(JsonReader& r) {
  BowOptions o(0, 0);
  int64_t embed_dim = o.embed_dim(), hidden_dim = o.hidden_dim();
  double dropout = o.dropout();
  r.get("embed_dim", embed_dim);
  check_min(r.key_path("embed_dim"), embed_dim, 1);
  r.get("hidden_dim", hidden_dim);
  check_min(r.key_path("hidden_dim"), hidden_dim, 0);
  r.get("dropout", dropout);
  check_min(r.key_path("dropout"), dropout, 0);
  check_max(r.key_path("dropout"), dropout, 1, /*inclusive=*/false);
  return {{"embed_dim", embed_dim}, {"hidden_dim", hidden_dim}, {"dropout", dropout}};
}

std::shared_ptr<TextModel> build_bow(const nlohmann::json& j, const ModelContext& context) {
  BowOptions o(context.vocab_size, context.num_outputs);
  o.embed_dim(j.at("embed_dim").get<int64_t>())
      .hidden_dim(j.at("hidden_dim").get<int64_t>())
      .dropout(j.at("dropout").get<double>());
  return Bow(o).ptr();
}

}  // namespace ltk
