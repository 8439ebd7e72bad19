#include "ltk/models/bow.h"

#include "ltk/models/embeddings.h"

namespace ltk {

namespace {
constexpr int64_t kHashPrime = 116049371;
}

std::pair<torch::Tensor, torch::Tensor> hashed_ngrams(const torch::Tensor& ids, const torch::Tensor& mask, int64_t n,
                                                      int64_t vocab_size, int64_t buckets) {
  const int64_t T = ids.size(1);
  if (T < n) return {ids.narrow(1, 0, 0), mask.narrow(1, 0, 0)};
  auto h = ids.narrow(1, 0, T - n + 1).remainder(buckets);
  auto valid = mask.narrow(1, n - 1, T - n + 1);  // the n-gram's last token is real, so all are
  for (int64_t k = 1; k < n; ++k) h = (h * kHashPrime + ids.narrow(1, k, T - n + 1)).remainder(buckets);
  return {h + vocab_size, valid};
}

BowImpl::BowImpl(const BowOptions& options_) : options(options_) { reset(); }

void BowImpl::reset() {
  int64_t rows = options.vocab_size() + (options.ngrams() > 1 ? options.buckets() : 0);
  embedding = register_module(
      "embedding", torch::nn::EmbeddingBag(
                       torch::nn::EmbeddingBagOptions(rows, options.embed_dim()).mode(torch::kMean).sparse(options.sparse())));
  int64_t width = options.embed_dim();
  if (options.hidden_dim() > 0) {
    hidden = register_module("hidden", torch::nn::Linear(width, options.hidden_dim()));
    width = options.hidden_dim();
  }
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout()));
  output = register_module("output", torch::nn::Linear(width, options.num_outputs()));
}

torch::Tensor BowImpl::forward(const Batch& batch) {
  // Flatten the real tokens (and n-grams) of each sample and give each sample's start: padding is
  // never looked up.
  torch::Tensor ids = batch.ids, mask = batch.mask;
  if (options.ngrams() > 1) {
    std::vector<torch::Tensor> all_ids{ids}, all_mask{mask};
    for (int64_t n = 2; n <= options.ngrams(); ++n) {
      auto [h, valid] = hashed_ngrams(batch.ids, batch.mask, n, options.vocab_size(), options.buckets());
      all_ids.push_back(h);
      all_mask.push_back(valid);
    }
    ids = torch::cat(all_ids, 1);
    mask = torch::cat(all_mask, 1);
  }
  auto flat = ids.masked_select(mask);
  auto counts = mask.sum(1);
  auto offsets = counts.cumsum(0) - counts;
  auto pooled = embedding->forward(flat, offsets);
  if (hidden) pooled = torch::relu(hidden->forward(pooled));
  return output->forward(dropout->forward(pooled));
}

nlohmann::json resolve_bow(JsonReader& r) {
  BowOptions o(0, 0);
  int64_t embed_dim = o.embed_dim(), hidden_dim = o.hidden_dim(), ngrams = o.ngrams(), buckets = o.buckets();
  double dropout = o.dropout();
  bool sparse = o.sparse();
  r.get("embed_dim", embed_dim);
  check_min(r.key_path("embed_dim"), embed_dim, 1);
  r.get("ngrams", ngrams);
  check_min(r.key_path("ngrams"), ngrams, 1);
  check_max(r.key_path("ngrams"), ngrams, 5);
  r.get("buckets", buckets);
  check_min(r.key_path("buckets"), buckets, 1);
  check_max(r.key_path("buckets"), buckets, 100000000);
  r.get("hidden_dim", hidden_dim);
  check_min(r.key_path("hidden_dim"), hidden_dim, 0);
  r.get("dropout", dropout);
  check_min(r.key_path("dropout"), dropout, 0);
  check_max(r.key_path("dropout"), dropout, 1, /*inclusive=*/false);
  r.get("sparse", sparse);
  nlohmann::json out = {{"embed_dim", embed_dim}, {"ngrams", ngrams},   {"buckets", buckets},
                        {"hidden_dim", hidden_dim}, {"dropout", dropout}, {"sparse", sparse}};
  resolve_embedding_keys(r, out);
  return out;
}

std::shared_ptr<TextModel> build_bow(const nlohmann::json& j, const ModelContext& context) {
  BowOptions o(context.vocab_size, context.num_outputs);
  o.embed_dim(j.at("embed_dim").get<int64_t>())
      .ngrams(j.at("ngrams").get<int64_t>())
      .buckets(j.at("buckets").get<int64_t>())
      .hidden_dim(j.at("hidden_dim").get<int64_t>())
      .dropout(j.at("dropout").get<double>())
      .sparse(j.at("sparse").get<bool>());
  Bow model(o);
  init_embeddings(model->embedding->weight, j, context.vocab);
  return model.ptr();
}

void check_bow(const nlohmann::json& options, const Config& config) {
  if (options.value("sparse", false)) check_sparse_optimizer("model.sparse", config);
}

}  // namespace ltk
