#include "ltk/eval/evaluator.h"

#include <fmt/format.h>
#include <torch/utils.h>

#include "ltk/core/error.h"

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

Predictions predict(TextModel& model, const Task& task, const TextDataset& data, int64_t batch_size,
                    const torch::Device& device, int64_t vocab_size) {
  EvalModeGuard eval_mode(model);
  torch::NoGradGuard no_grad;
  PadCollate collate;
  BatchSampler sampler(data.size(), batch_size, /*shuffle=*/false, /*drop_last=*/false, 0);
  Predictions out;
  std::vector<torch::Tensor> probs;
  for (const auto& indices : sampler.epoch(0)) {
    Batch batch = collate(data, indices);
    check_token_ids(batch, vocab_size, data);
    Batch on_device = batch.to(device);
    auto logits = model.forward(on_device);
    if (data.has_labels()) {
      out.loss_sum += task.per_sample_loss(logits, on_device.labels).sum().item<double>();
    }
    auto p = task.probabilities(logits).to(torch::kCPU, torch::kFloat);
    probs.push_back(p);
  }
  out.probabilities = probs.empty() ? torch::empty({0, task.num_outputs()}) : torch::cat(probs, 0);
  auto argmax = out.probabilities.argmax(1);
  const int64_t* ap = argmax.data_ptr<int64_t>();
  out.predicted.assign(ap, ap + argmax.numel());
  if (data.has_labels()) {
    out.gold.reserve(static_cast<size_t>(data.size()));
    for (int64_t i = 0; i < data.size(); ++i) out.gold.push_back(data.label(i));
  }
  return out;
}

ClassificationMetrics score(const Predictions& p, int64_t num_classes) {
  auto m = classification_metrics(p.gold, p.predicted, num_classes);
  m.loss = m.samples ? p.loss_sum / static_cast<double>(m.samples) : 0.0;
  return m;
}

}  // namespace ltk
