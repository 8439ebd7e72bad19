// What is fitted on the validation split after training (task.calibrate, task.threshold "tune").
// Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the one number
// T that, dividing the logits, minimises the negative log-likelihood of held-out labels. Argmax
// predictions do not change; the probabilities' confidence does. Tuned thresholds: per label, the
// probability at which predicting the label maximises its F1.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace ltk {

/// The temperature(s) of task type `task_type` fitted on `logits` with their gold `targets`:
/// multiclass, one T over softmax ([N, C] logits, [N] class ids); binary and multilabel, one T per
/// column over sigmoid ([N, K] logits, [N, K] targets in [0, 1]). In float64, by golden-section
/// search on 1/T in [1/20, 20] (the NLL is convex in 1/T), so the same inputs give the same T on
/// any CPU to within the search's tolerance.
std::vector<double> fit_temperature(const std::string& task_type, const torch::Tensor& logits,
                                    const torch::Tensor& targets);

/// Thresholds chosen per output column, and what each gave on the data it was chosen on.
struct TunedThresholds {
  std::vector<double> thresholds;  ///< one per column
  std::vector<double> f1;          ///< the column's F1 at its threshold
  std::vector<int64_t> positives;  ///< the column's positive samples
  std::vector<bool> tuned;         ///< false: too few positives, the column kept `fallback`
};

/// Per column of `scores` ([N, K] probabilities; binary [N, 1]) against `targets` (the same shape
/// or [N], 1 = positive), the threshold that maximises F1: midway between the lowest score it
/// predicts positive and the next lower score (half the lowest when it predicts every sample
/// positive), so that the split does not hang on float rounding. A column with fewer than
/// `min_positives` positives keeps `fallback`.
TunedThresholds tune_thresholds(const torch::Tensor& scores, const torch::Tensor& targets, int64_t min_positives = 5,
                                double fallback = 0.5);

}  // namespace ltk
