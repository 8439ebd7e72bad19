// Helpers the task types share: target and output checks, loss options, class-metric reports.
// Internal to lib/ltk/task.
#pragma once

#include <torch/nn/functional/loss.h>
#include <torch/types.h>

#include <optional>
#include <string>
#include <vector>

#include "ltk/task/answer_head.h"
#include "ltk/task/task.h"

namespace ltk::task_detail {

std::string shape_of(const torch::Tensor& t);

/// `o` with task.reduction ("mean" or "sum").
template <typename Options>
Options with_reduction(Options o, const std::string& reduction) {
  if (reduction == "sum") {
    o.reduction(torch::kSum);
  } else {
    o.reduction(torch::kMean);
  }
  return o;
}

/// Class weights as a tensor of `like`'s dtype and device.
torch::Tensor weights_tensor(const std::vector<double>& w, const torch::Tensor& like);

/// The squared hinge loss of each output against its 0/1 target (the margin target is 2t - 1):
/// max(0, 1 - (2t - 1) f)^2, elementwise, with the positives' terms times `pos_weight` when it is
/// defined (as binary cross-entropy's pos_weight): task.loss "squared_hinge", LinearSVC's loss.
torch::Tensor squared_hinge(const torch::Tensor& outputs, const torch::Tensor& targets, const torch::Tensor& pos_weight);

/// Per-sample losses reduced by task.reduction ("mean" or "sum").
torch::Tensor reduce(const torch::Tensor& losses, const std::string& reduction);

/// Float targets in [0, 1] of the given shape: the BCE pitfall (P7).
torch::Tensor check_float_targets(const torch::Tensor& targets, at::IntArrayRef shape, const char* task);

/// Outputs must be [batch, width].
void check_outputs(const torch::Tensor& outputs, int64_t width, const char* task);

/// Accuracy, per-class scores and the confusion matrix of class ids.
EvalReport classification_report(const std::vector<int64_t>& gold, const std::vector<int64_t>& pred,
                                 const LabelMap& labels, double loss);

/// The badcases.tsv row of a single-label prediction (ltk-predict's JSON), or nothing when its
/// label is `gold`.
std::optional<BadCase> single_label_bad_case(const nlohmann::ordered_json& prediction, const std::string& gold);

/// Macro and weighted averages over the classes, and the most frequent confusions.
void add_class_averages(EvalReport& r, const LabelMap& labels);

}  // namespace ltk::task_detail
