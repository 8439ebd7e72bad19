#include "ltk/models/rnn.h"

#include <torch/nn/utils/rnn.h>

#include "ltk/models/embeddings.h"

namespace ltk {

namespace rnn_utils = torch::nn::utils::rnn;

RnnImpl::RnnImpl(const RnnOptions& options_) : options(options_) { reset(); }

void RnnImpl::reset() {
  embedding = register_module(
      "embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(options.vocab_size(), options.embed_dim()).padding_idx(0)));
  double between = options.layers() > 1 ? options.dropout() : 0.0;
  if (options.cell() == "gru") {
    gru = register_module("rnn", torch::nn::GRU(torch::nn::GRUOptions(options.embed_dim(), options.hidden_dim())
                                                    .num_layers(options.layers())
                                                    .bidirectional(options.bidirectional())
                                                    .batch_first(true)
                                                    .dropout(between)));
  } else {
    lstm = register_module("rnn", torch::nn::LSTM(torch::nn::LSTMOptions(options.embed_dim(), options.hidden_dim())
                                                      .num_layers(options.layers())
                                                      .bidirectional(options.bidirectional())
                                                      .batch_first(true)
                                                      .dropout(between)));
  }
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout()));
  int64_t dirs = options.bidirectional() ? 2 : 1;
  output = register_module("output", torch::nn::Linear(options.hidden_dim() * dirs, options.num_outputs()));
}

torch::Tensor RnnImpl::forward(const Batch& batch) {
  if (auto rounded = rounded_bf16_batch(embedding->weight, batch)) return forward(*rounded).narrow(0, 0, batch.size());
  auto x = embedding->forward(batch.ids);
  // An empty sample is fed one padding step: packing needs every length >= 1.
  auto lengths = batch.lengths.clamp_min(1).to(torch::kCPU);
  auto packed = rnn_utils::pack_padded_sequence(x, lengths, /*batch_first=*/true, /*enforce_sorted=*/false);
  auto [out, h] = [&]() -> std::pair<rnn_utils::PackedSequence, torch::Tensor> {
    if (gru) {
      auto r = gru->forward_with_packed_input(packed);
      return {std::get<0>(r), std::get<1>(r)};
    }
    auto r = lstm->forward_with_packed_input(packed);
    return {std::get<0>(r), std::get<0>(std::get<1>(r))};
  }();
  const int64_t dirs = options.bidirectional() ? 2 : 1, B = batch.ids.size(0);
  torch::Tensor pooled;
  if (options.pooling() == "last") {
    // h: [layers * dirs, B, H] -> the last layer's directions side by side.
    pooled = h.view({options.layers(), dirs, B, options.hidden_dim()}).select(0, options.layers() - 1)
                 .transpose(0, 1).reshape({B, dirs * options.hidden_dim()});
  } else {
    auto padded = std::get<0>(rnn_utils::pad_packed_sequence(out, /*batch_first=*/true));  // [B, T', D]
    auto steps = torch::arange(padded.size(1), torch::TensorOptions().dtype(torch::kLong).device(padded.device()));
    auto real = (steps.unsqueeze(0) < lengths.to(padded.device()).unsqueeze(1)).unsqueeze(2);
    if (options.pooling() == "max") {
      pooled = std::get<0>(padded.masked_fill(~real, -std::numeric_limits<float>::infinity()).max(1));
    } else {
      // (A bf16 model's sums and counts divided in float32: bf16 holds whole numbers up to 256 alone.)
      const auto acc = torch::promote_types(padded.scalar_type(), torch::kFloat);
      pooled = ((padded * real.to(padded.dtype())).sum(1).to(acc) / lengths.to(padded.device()).unsqueeze(1).to(acc))
                   .to(padded.dtype());
    }
  }
  return float32_outputs(output->forward(dropout->forward(pooled)));
}

nlohmann::json resolve_rnn(JsonReader& r) {
  RnnOptions o(0, 0);
  int64_t embed_dim = o.embed_dim(), hidden_dim = o.hidden_dim(), layers = o.layers();
  std::string cell = o.cell(), pooling = o.pooling();
  bool bidirectional = o.bidirectional();
  double dropout = o.dropout();
  r.get("embed_dim", embed_dim);
  check_min(r.key_path("embed_dim"), embed_dim, 1);
  r.get_enum("cell", cell, {"lstm", "gru"});
  r.get("hidden_dim", hidden_dim);
  check_min(r.key_path("hidden_dim"), hidden_dim, 1);
  r.get("layers", layers);
  check_min(r.key_path("layers"), layers, 1);
  r.get("bidirectional", bidirectional);
  r.get_enum("pooling", pooling, {"last", "max", "mean"});
  r.get("dropout", dropout);
  check_min(r.key_path("dropout"), dropout, 0);
  check_max(r.key_path("dropout"), dropout, 1, /*inclusive=*/false);
  nlohmann::json out = {{"embed_dim", embed_dim}, {"cell", cell},       {"hidden_dim", hidden_dim},
                        {"layers", layers},       {"bidirectional", bidirectional}, {"pooling", pooling},
                        {"dropout", dropout}};
  resolve_embedding_keys(r, out);
  return out;
}

void complete_rnn(const nlohmann::json& options, const nlohmann::json& document, Config& config) {
  if (!written(document, {"trainer", "bucket_pool"})) config.trainer.bucket_pool = 50;
}

std::shared_ptr<TextModel> build_rnn(const nlohmann::json& j, const ModelContext& context) {
  RnnOptions o(context.vocab_size, context.num_outputs);
  o.embed_dim(j.at("embed_dim").get<int64_t>())
      .cell(j.at("cell").get<std::string>())
      .hidden_dim(j.at("hidden_dim").get<int64_t>())
      .layers(j.at("layers").get<int64_t>())
      .bidirectional(j.at("bidirectional").get<bool>())
      .pooling(j.at("pooling").get<std::string>())
      .dropout(j.at("dropout").get<double>());
  Rnn model(o);
  init_embeddings(model->embedding->weight, j, context.vocab);
  return model.ptr();
}

}  // namespace ltk
