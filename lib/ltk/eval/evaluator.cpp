#include "ltk/eval/evaluator.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/utils.h>

#include "ltk/core/error.h"
#include "ltk/core/stop.h"

namespace ltk {

void check_token_ids(const Batch& batch, int64_t vocab_size, const TextDataset& data) {
  if (batch.ids.numel() == 0) return;
  auto max_id = batch.ids.max().item<int64_t>();
  auto min_id = batch.ids.min().item<int64_t>();
  if (max_id < vocab_size && min_id >= 0) return;
  int64_t bad = min_id < 0 ? min_id : max_id;
  auto rows = (batch.ids == bad).any(1).nonzero().flatten();
  int64_t sample = batch.indices[rows[0].item<int64_t>()].item<int64_t>();
  throw DataError(fmt::format("{}:{}: token id {} is out of range for a vocabulary of {} entries; the "
                              "data was encoded with another vocabulary than the model's",
                              data.source(), data.source_line(sample), bad, vocab_size));
}

void check_same_device(const torch::nn::Module& model, const torch::Device& device) {
  // Run before every batch of ltk-serve's: each module's own parameters (parameters() joins every
  // parameter's full dotted name on the way: 2.5% of a BERT server's time); the names only on a mismatch.
  bool same = true;
  model.apply([&](const torch::nn::Module& m) {
    for (const auto& p : m.parameters(/*recurse=*/false)) same = same && p.device() == device;
  });
  if (same) return;
  for (const auto& p : model.named_parameters())
    if (p.value().device() != device)
      throw TrainError(fmt::format("parameter {} of the model is on {} but the batches go to {}; move the model "
                                   "with model->to(device) before training or evaluating",
                                   p.key(), p.value().device().str(), device.str()));
}

torch::Tensor targets_like(const torch::Tensor& labels, const torch::Tensor& outputs) {
  if (labels.is_floating_point() && outputs.is_floating_point() && labels.scalar_type() != outputs.scalar_type())
    return labels.to(outputs.scalar_type());
  return labels;
}

void check_forward_outputs(TextModel& model, const Task& task, const TextDataset& data, const torch::Device& device,
                           const std::string& model_type) {
  if (data.size() == 0) return;
  EvalModeGuard eval_mode(model);
  torch::NoGradGuard no_grad;
  std::vector<int64_t> first;
  for (int64_t i = 0; i < std::min<int64_t>(2, data.size()); ++i) first.push_back(i);
  Batch batch = PadCollate()(data, first);
  if (task.token_level()) task.prepare_batch(batch, 0x5eedull);
  Batch on_device = batch.to(device);
  auto outputs = model.forward(on_device);
  int64_t rows = batch.size();
  const char* unit = "sample";
  if (task.token_level()) {
    rows = on_device.labels.ne(MaskedLmTask::kIgnore).sum().item<int64_t>();
    unit = "masked piece";
  }
  if (!outputs.defined() || outputs.dim() == 0 || outputs.size(0) != rows)
    throw ConfigError(fmt::format(
        "model '{}': forward returned {} for a batch of {} {}(s); a model must return one row of outputs per {} "
        "(shape [{}, ...]): a scalar, such as a loss or a mean over the batch, can neither be scored per sample nor "
        "gathered from the processes of a distributed job",
        model_type, outputs.defined() ? fmt::format("shape [{}]", fmt::join(outputs.sizes().vec(), ", ")) : std::string("an undefined tensor"),
        rows, unit, unit, rows));
}

namespace {

/// check_token_ids for samples scored without a batch: the same error, from their batch, when one
/// id is out of range.
void check_row_ids(const TextDataset& data, const std::vector<int64_t>& indices, int64_t vocab_size,
                   const PadCollate& collate) {
  for (int64_t i : indices) {
    const IdPieces ids = data.ids(i);
    for (int64_t k = 0; k < ids.size(); ++k)
      if (ids[k] < 0 || ids[k] >= vocab_size) return check_token_ids(collate(data, indices), vocab_size, data);
  }
}

}  // namespace

namespace {

// predict() over the samples `order` (in data order) of `data`; the other rows of scores and
// targets are zeros.
Predictions predict_samples(TextModel& model, const Task& task, const TextDataset& data, std::vector<int64_t> order,
                            int64_t batch_size, const torch::Device& device, int64_t vocab_size, int shards,
                            bool raw_outputs) {
  check_same_device(model, device);
  EvalModeGuard eval_mode(model);
  torch::NoGradGuard no_grad;
  PadCollate collate;
  // Batches of samples of similar length (sorted, stable), so that little padding is computed;
  // the outputs go back to the data's order at the end. Models are padding-invariant (tested),
  // so this changes the speed, not the predictions.
  const int64_t n = data.size();
  if (batch_size <= 0)
    throw ConfigError(fmt::format(
        "evaluation batch size {}: must be >= 1 (config key 'trainer.eval_batch_size', or --batch-size)", batch_size));
  const auto mine = static_cast<int64_t>(order.size());
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return data.length(a) < data.length(b); });
  Predictions out;
  std::vector<torch::Tensor> scores, targets;
  std::vector<int64_t> indices;
  for (int64_t start = 0; start < mine; start += batch_size) {
    throw_if_stop_requested();  // Ctrl-C during a long evaluation acts now, not after it
    indices.assign(order.begin() + start, order.begin() + std::min(mine, start + batch_size));
    if (!task.token_level() && device.is_cpu()) {
      // A model that scores rows without a padded batch (the linear model's sparse dot products).
      auto outputs = model.forward_rows(data, indices);
      if (outputs.defined()) {
        check_row_ids(data, indices, vocab_size, collate);
        if (data.has_labels()) {
          auto labels = data.targets(indices);
          out.loss_sum += task.per_sample_loss(outputs, targets_like(labels, outputs)).sum().item<double>();
          targets.push_back(labels);
        }
        // Scored as ltk-predict scores them (float64, row by row): the same figures in badcases.tsv.
        scores.push_back(raw_outputs ? outputs.to(torch::kFloat) : task.row_scores(outputs));
        continue;
      }
    }
    Batch batch = collate(data, indices);
    check_token_ids(batch, vocab_size, data);
    if (task.token_level()) {
      // The same masks at every evaluation and batch size (seeded by each sample's index), so that
      // validations and ltk-eval compare; counted per predicted piece.
      task.prepare_batch(batch, 0x5eedull);
      Batch on_device = batch.to(device);
      auto outputs = model.forward(on_device);
      auto gold = on_device.labels.masked_select(on_device.labels != MaskedLmTask::kIgnore);
      out.loss_sum += task.per_sample_loss(outputs, on_device.labels).sum().item<double>();
      out.correct += outputs.argmax(-1).eq(gold).sum().item<int64_t>();
      out.tokens += gold.numel();
      continue;
    }
    Batch on_device = batch.to(device);
    auto outputs = model.forward(on_device);
    if (data.has_labels()) {
      out.loss_sum += task.per_sample_loss(outputs, targets_like(on_device.labels, outputs)).sum().item<double>();
      targets.push_back(batch.labels);
    }
    scores.push_back((raw_outputs ? outputs : task.scores(outputs)).to(torch::kCPU, torch::kFloat));
  }
  out.samples = n;
  auto positions = torch::from_blob(order.data(), {mine}, torch::kLong);
  auto in_data_order = [&](const std::vector<torch::Tensor>& parts) {
    auto sorted = torch::cat(parts, 0);
    std::vector<int64_t> shape = sorted.sizes().vec();
    shape[0] = n;
    auto whole = mine == n ? torch::empty(shape, sorted.options()) : torch::zeros(shape, sorted.options());
    return whole.index_copy_(0, positions, sorted);
  };
  out.scores = scores.empty() ? torch::zeros({shards > 1 ? n : 0, task.num_outputs()}) : in_data_order(scores);
  if (task.token_level()) out.scores = torch::empty({0, 0});
  if (!targets.empty()) out.targets = in_data_order(targets);
  return out;
}

// predict() of a windowed dataset: the windows' outputs pooled per text, scored and lost per text.
Predictions predict_texts(TextModel& model, const Task& task, const TextDataset& data, int64_t batch_size,
                          const torch::Device& device, int64_t vocab_size, int shard, int shards, bool raw_outputs) {
  const int64_t texts = data.num_texts();
  std::vector<int64_t> rows, mine, firsts;
  for (int64_t t = 0; t < texts; ++t) {
    firsts.push_back(data.text_sample(t));
    if (t % std::max(shards, 1) != shard) continue;
    mine.push_back(t);
    for (int64_t w = 0; w < data.text_windows(t); ++w) rows.push_back(data.text_sample(t) + w);
  }
  const Predictions windows =
      predict_samples(model, task, data, std::move(rows), batch_size, device, vocab_size, shards, /*raw_outputs=*/true);
  const torch::Tensor pooled = pool_windows(windows.scores, data);
  const auto index = torch::tensor(mine, torch::kLong);
  Predictions out;
  out.samples = texts;
  out.scores = raw_outputs ? pooled : task.scores(pooled).to(torch::kFloat);
  const bool all = static_cast<int64_t>(mine.size()) == texts;
  if (!all) out.scores = torch::zeros_like(out.scores).index_copy_(0, index, out.scores.index_select(0, index));
  if (data.has_labels() && texts > 0) {
    const torch::Tensor targets = data.targets(firsts);
    const torch::Tensor own = targets.index_select(0, index), own_outputs = pooled.index_select(0, index);
    out.loss_sum = task.per_sample_loss(own_outputs, targets_like(own, own_outputs)).sum().item<double>();
    out.targets = all ? targets : torch::zeros_like(targets).index_copy_(0, index, own);
  }
  return out;
}

}  // namespace

torch::Tensor pool_windows(const torch::Tensor& outputs, const TextDataset& data) {
  const int64_t texts = data.num_texts();
  if (!data.windowed() || texts == data.size()) return outputs;
  std::vector<int64_t> firsts;
  for (int64_t t = 0; t < texts; ++t) firsts.push_back(data.text_sample(t));
  torch::Tensor pooled = outputs.index_select(0, torch::tensor(firsts, torch::kLong));
  const bool max = data.window_pool() == "max";
  for (int64_t t = 0; t < texts; ++t) {
    const int64_t w = data.text_windows(t);
    if (w <= 1) continue;
    const torch::Tensor rows = outputs.narrow(0, data.text_sample(t), w);
    pooled[t] = max ? std::get<0>(rows.max(0)) : rows.mean(0);
  }
  return pooled;
}

Predictions predict(TextModel& model, const Task& task, const TextDataset& data, int64_t batch_size,
                    const torch::Device& device, int64_t vocab_size, int shard, int shards, bool raw_outputs) {
  if (data.windowed() && !task.token_level())
    return predict_texts(model, task, data, batch_size, device, vocab_size, shard, shards, raw_outputs);
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(data.size() / std::max(shards, 1) + 1));
  for (int64_t i = shard; i < data.size(); i += std::max(shards, 1)) order.push_back(i);
  return predict_samples(model, task, data, std::move(order), batch_size, device, vocab_size, shards, raw_outputs);
}

}  // namespace ltk
