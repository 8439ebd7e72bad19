// Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the one number
// T that, dividing the logits, minimises the negative log-likelihood of held-out labels. Argmax
// predictions do not change; the probabilities' confidence does.
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

}  // namespace ltk
