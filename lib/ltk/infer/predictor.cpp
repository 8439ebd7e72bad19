#include "ltk/infer/predictor.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <ATen/Parallel.h>

#include "ltk/core/parallel.h"
#include "ltk/core/strings.h"
#include "ltk/data/utf8.h"
#include "ltk/eval/evaluator.h"

namespace ltk::infer {

Predictor::Predictor(LoadedRun run) : run_(std::move(run)) {
  const auto& data = run_.config.data;
  pairs_ = !data.text_pair_column.empty() || !data.text_pair_field.empty();
  pair_field_ = data.text_pair_field.empty() ? "text_pair" : data.text_pair_field;
  // For good: answer() on several threads at once then only reads the model.
  run_.model->eval();
  torch::NoGradGuard no_grad;
  scores_rows_ = !masked_lm() && run_.model->forward_rows(TextDataset(), {}).defined();
  if (scores_rows_) head_.emplace(answer_head(*run_.task, run_.labels));
}

void Predictor::score_rows(const torch::Tensor& logits, int64_t row, float* scores) const {
  head_->scores(logits.data_ptr<float>() + row * logits.size(1), scores);
}

TextDataset Predictor::encode(const std::vector<const TextInput*>& inputs) const {
  std::vector<Example> examples;
  examples.reserve(inputs.size());
  int64_t line = 0;
  for (const TextInput* in : inputs) {
    ++line;
    if (in->error.empty()) examples.push_back(Example{"", in->text, line, in->text_pair});
  }
  if (masked_lm())  // the pieces as the model reads them; whole-word flags only matter to training's masking
    return encode_examples(examples, "input", *run_.tokenizer, run_.vocab, nullptr,
                           encode_options(run_.config.data, run_.vocab));
  return run_.encode(examples, "input", /*labelled=*/false);
}

nlohmann::ordered_json Predictor::fill_masks(const TextDataset& data, int64_t i, int64_t top_k) const {
  const int64_t mask_id = run_.vocab.special_id("[MASK]");
  const int64_t k = std::min<int64_t>(top_k > 0 ? top_k : 5, run_.vocab.size());
  nlohmann::ordered_json j;
  Batch batch = PadCollate()(data, {i});
  auto masked = batch.ids.eq(mask_id);
  if (!masked.any().item<bool>()) {
    j["error"] = "no [MASK] in the text";
    return j;
  }
  batch.labels = torch::where(masked, torch::zeros_like(batch.ids), torch::full_like(batch.ids, -100));
  auto probs = run_.model->forward(batch.to(run_.device)).softmax(-1).to(torch::kCPU);
  auto [values, ids] = probs.topk(k, -1);
  auto positions = masked[0].nonzero().flatten();
  nlohmann::ordered_json masks = nlohmann::ordered_json::array();
  for (int64_t m = 0; m < positions.size(0); ++m) {
    nlohmann::ordered_json top = nlohmann::ordered_json::array();
    for (int64_t r = 0; r < k; ++r)
      top.push_back({{"token", run_.vocab.token(static_cast<int32_t>(ids[m][r].item<int64_t>()))},
                     {"score", std::round(values[m][r].item<double>() * 1e6) / 1e6}});
    masks.push_back({{"position", positions[m].item<int64_t>()}, {"top", top}});
  }
  j["masks"] = masks;
  return j;
}

std::vector<nlohmann::ordered_json> Predictor::answer(const TextDataset& data, const std::vector<int64_t>& top_k,
                                                      int64_t batch_size) const {
  std::vector<nlohmann::ordered_json> out;
  out.reserve(static_cast<size_t>(data.num_texts()));
  auto k_of = [&](int64_t i) { return static_cast<size_t>(i) < top_k.size() ? top_k[static_cast<size_t>(i)] : 0; };
  if (data.size() == 0) return out;
  if (masked_lm()) {
    EvalModeGuard eval_mode(*run_.model);
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < data.size(); ++i) out.push_back(fill_masks(data, i, k_of(i)));
    return out;
  }
  // Texts sorted by length, in groups of at most batch_size whose padding stays small (the padded
  // tokens at most 1.25 times the real ones, plus 4 a text): a convolution or an RNN computes every
  // padded position, so one long text in a batch of short ones would multiply the batch's cost
  // (textcnn on fortunes_en: 2.5x the texts/s of plain batches of 64). Models are
  // padding-invariant, so the grouping changes the speed, not the answers.
  const int64_t n = data.size();
  batch_size = std::max<int64_t>(1, batch_size);
  if (scores_rows_) {  // no padding to save: every row at once, scored as the LibTorch-free ltk-predict scores it
    torch::NoGradGuard no_grad;
    std::vector<int64_t> indices(static_cast<size_t>(n));
    std::iota(indices.begin(), indices.end(), int64_t{0});
    auto logits = run_.model->forward_rows(data, indices).to(torch::kFloat).contiguous();
    std::vector<float> scores(static_cast<size_t>(head_->width()));
    for (int64_t i = 0; i < n; ++i) {
      score_rows(logits, i, scores.data());
      out.push_back(run_.task->prediction(scores.data(), k_of(i)));
    }
    return out;
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return data.length(a) < data.length(b); });
  std::vector<torch::Tensor> rows(static_cast<size_t>(n));
  // A model that computes no padding (BERT's direct path) takes them as one batch: a server's batch
  // of a few texts of different lengths was split in two or three model calls.
  const bool one_batch = n <= batch_size && run_.model->padding_free([&] {
    int64_t real = 0;
    for (int64_t i = 0; i < n; ++i) real += std::max<int64_t>(1, data.length(i));
    return real;
  }());
  // Windows (data.long_text "window"): their logits, pooled per text before they are scored.
  const bool windows = data.windowed();
  for (size_t start = 0; start < order.size();) {
    size_t end = start;
    int64_t real = 0;
    while (end < order.size() && static_cast<int64_t>(end - start) < batch_size) {
      const int64_t len = std::max<int64_t>(1, data.length(order[end])), count = static_cast<int64_t>(end - start) + 1;
      if (end > start && !one_batch && len * count > (real + len) * 5 / 4 + 4 * count) break;
      real += len;
      ++end;
    }
    TextDataset group;
    for (size_t k = start; k < end; ++k) append_sample(group, data, order[k]);
    auto scores = predict(*run_.model, *run_.task, group, static_cast<int64_t>(end - start), run_.device,
                          run_.vocab.size(), 0, 1, /*raw_outputs=*/windows)
                      .scores.contiguous();
    for (size_t k = start; k < end; ++k) rows[static_cast<size_t>(order[k])] = scores[static_cast<int64_t>(k - start)];
    start = end;
  }
  if (windows) {
    auto scores = run_.task->scores(pool_windows(torch::stack(rows), data)).to(torch::kFloat).contiguous();
    for (int64_t t = 0; t < data.num_texts(); ++t)
      out.push_back(run_.task->prediction(scores[t].data_ptr<float>(), k_of(t)));
    return out;
  }
  for (int64_t i = 0; i < n; ++i)
    out.push_back(run_.task->prediction(rows[static_cast<size_t>(i)].data_ptr<float>(), k_of(i)));
  return out;
}

std::vector<std::string> Predictor::answer_texts(const std::vector<const TextInput*>& inputs, int64_t top_k,
                                                 int64_t batch_size, int threads) const {
  const auto n = static_cast<int64_t>(inputs.size());
  std::vector<std::string> out(static_cast<size_t>(n));
  if (!scores_rows_) {
    auto answers = answer(encode(inputs), std::vector<int64_t>(static_cast<size_t>(n), top_k), batch_size);
    for (size_t i = 0; i < answers.size(); ++i) out[i] = answers[i].dump();
    return out;
  }
  // Slices of the inputs on the LibTorch threads, each encoded, scored and written on its own
  // (the model's weights are only read).
  parallel_chunks(n, threads > 0 ? threads : at::get_num_threads(), 256, [&](int64_t begin, int64_t end) {
    torch::NoGradGuard no_grad;
    std::vector<const TextInput*> slice(inputs.begin() + begin, inputs.begin() + end);
    TextDataset data = encode(slice);
    std::vector<int64_t> indices(static_cast<size_t>(data.size()));
    std::iota(indices.begin(), indices.end(), int64_t{0});
    auto logits = run_.model->forward_rows(data, indices).to(torch::kFloat).contiguous();
    const int64_t width = logits.size(1);
    std::vector<float> scores(static_cast<size_t>(width));
    for (int64_t r = 0; r < data.size(); ++r) {
      std::string& text = out[static_cast<size_t>(begin + r)];
      text.reserve(static_cast<size_t>(24 * width + 64));
      score_rows(logits, r, scores.data());
      head_->write(scores.data(), top_k, text);
    }
  });
  return out;
}

void append_sample(TextDataset& into, const TextDataset& from, int64_t i) {
  if (into.size() == 0) {
    into.set_source(from.source(), TargetKind::none, from.num_classes());
    into.set_pad_id(from.pad_id());
  }
  const IdPieces ids = from.ids(i);
  std::vector<int32_t> copy(static_cast<size_t>(ids.size()));
  for (int64_t k = 0; k < ids.size(); ++k) copy[static_cast<size_t>(k)] = ids[k];
  into.add(copy, from.full_length(i), {}, 0.0f, from.source_line(i));
  if (from.has_pairs()) into.set_second_start(from.second_start(i));
}

void append_text(TextDataset& into, const TextDataset& from, int64_t t) {
  if (!from.windowed()) return append_sample(into, from, t);
  if (into.size() == 0 && !into.windowed()) into.set_windowing(from.window_pool());
  into.begin_text();
  for (int64_t w = 0; w < from.text_windows(t); ++w) append_sample(into, from, from.text_sample(t) + w);
}

}  // namespace ltk::infer
