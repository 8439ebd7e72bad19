// A task (`task.type`) owns its output size, its loss, the dtype and shape of its targets and
// how logits decode to predictions. The checks here turn the article's loss pitfalls
// (P4, P7, P8, P10) into clear errors.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

#include "ltk/config/config.h"

namespace ltk {

class Task {
 public:
  explicit Task(std::string reduction) : reduction_(std::move(reduction)) {}
  virtual ~Task() = default;
  virtual std::string type() const = 0;
  /// Logits per sample the model must produce.
  virtual int64_t num_outputs() const = 0;
  /// The loss of every sample [B]. Checks the targets first.
  virtual torch::Tensor per_sample_loss(const torch::Tensor& logits, const torch::Tensor& targets) const = 0;
  /// Class probabilities [B, C].
  virtual torch::Tensor probabilities(const torch::Tensor& logits) const = 0;
  /// The loss of a batch: per_sample_loss reduced by task.reduction (mean or sum), a scalar.
  torch::Tensor loss(const torch::Tensor& logits, const torch::Tensor& targets) const;

 protected:
  std::string reduction_;
};

/// C classes, cross-entropy; targets are 1-D int64 class ids in [0, C). A [N, 1] column is
/// squeezed; one-hot or float targets are an error naming the shape expected (P10).
class MulticlassTask : public Task {
 public:
  MulticlassTask(int64_t num_classes, std::string reduction);
  std::string type() const override { return "multiclass"; }
  int64_t num_outputs() const override { return num_classes_; }
  torch::Tensor per_sample_loss(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  torch::Tensor probabilities(const torch::Tensor& logits) const override;
  /// The checked, squeezed targets (exposed for tests).
  torch::Tensor check_targets(const torch::Tensor& logits, const torch::Tensor& targets) const;

 private:
  int64_t num_classes_;
};

std::unique_ptr<Task> make_task(const TaskConfig& config, int64_t num_labels);

/// Throws TrainError unless `loss` is a scalar (P4): backward() needs one.
void check_scalar_loss(const torch::Tensor& loss);

}  // namespace ltk
