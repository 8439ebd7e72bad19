#include "ltk/train/task.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/nn/functional/loss.h>

#include "ltk/core/error.h"

namespace ltk {

namespace {
std::string shape_of(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }
}  // namespace

MulticlassTask::MulticlassTask(int64_t num_classes, std::string reduction)
    : Task(std::move(reduction)), num_classes_(num_classes) {
  if (num_classes < 2)
    throw DataError(fmt::format("a multiclass task needs at least 2 labels in the training data, found {}",
                                num_classes));
}

torch::Tensor MulticlassTask::check_targets(const torch::Tensor& logits, const torch::Tensor& targets) const {
  if (!targets.defined()) throw TrainError("multiclass loss: the batch has no labels");
  if (logits.dim() != 2 || logits.size(1) != num_classes_)
    throw TrainError(fmt::format("multiclass loss: logits must be [batch, {}], got {}", num_classes_,
                                 shape_of(logits)));
  torch::Tensor t = targets;
  if (t.dim() == 2 && t.size(1) == 1) t = t.squeeze(1);  // an [N, 1] column is fine
  if (t.dim() != 1) {
    std::string hint = (t.dim() == 2 && t.size(1) == num_classes_)
                           ? " (these look one-hot: pass class ids, e.g. argmax over the last dimension)"
                           : "";
    throw TrainError(fmt::format("multiclass targets must be class ids of shape [{}], got {}{}",
                                 logits.size(0), shape_of(targets), hint));
  }
  if (t.size(0) != logits.size(0))
    throw TrainError(fmt::format("multiclass targets: {} targets for {} logit rows", t.size(0), logits.size(0)));
  if (t.scalar_type() != torch::kLong)
    throw TrainError(fmt::format("multiclass targets must be int64 class ids, got {}",
                                 std::string(c10::toString(t.scalar_type()))));
  if (t.numel() > 0) {
    auto lo = t.min().item<int64_t>(), hi = t.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes_) {
      int64_t bad = lo < 0 ? lo : hi;
      throw TrainError(fmt::format("multiclass target {} is out of range [0, {}): class ids start at 0 "
                                   "(labels 1..{} must be mapped to 0..{})",
                                   bad, num_classes_, num_classes_, num_classes_ - 1));
    }
  }
  return t;
}

torch::Tensor Task::loss(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto per_sample = per_sample_loss(logits, targets);
  return reduction_ == "sum" ? per_sample.sum() : per_sample.mean();
}

torch::Tensor MulticlassTask::per_sample_loss(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto t = check_targets(logits, targets);
  namespace F = torch::nn::functional;
  return F::cross_entropy(logits, t, F::CrossEntropyFuncOptions().reduction(torch::kNone));
}

torch::Tensor MulticlassTask::probabilities(const torch::Tensor& logits) const { return logits.softmax(1); }

std::unique_ptr<Task> make_task(const TaskConfig& config, int64_t num_labels) {
  if (config.type == "multiclass") return std::make_unique<MulticlassTask>(num_labels, config.reduction);
  throw ConfigError("config key 'task.type': unknown task '" + config.type + "'");
}

void check_scalar_loss(const torch::Tensor& loss) {
  if (loss.dim() != 0)
    throw TrainError(fmt::format("the loss must be a scalar for backward(), got shape {}; set "
                                 "task.reduction to \"mean\" or \"sum\"",
                                 shape_of(loss)));
}

}  // namespace ltk
