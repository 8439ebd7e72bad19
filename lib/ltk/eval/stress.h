// Stress tests (the article's step 4, "压力测试"): how a model's answers hold up when the text is
// perturbed in ways that keep its label (ltk/data/perturb.h): for each perturbation the task's
// accuracy on the perturbed text, the share of predictions that flip, the mean drop in the
// probability of the label predicted on the clean text, and the worst flips.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "ltk/data/dataset.h"
#include "ltk/data/perturb.h"
#include "ltk/models/text_model.h"
#include "ltk/task/task.h"

namespace ltk {

struct StressOptions {
  std::string which = "all";  ///< perturbation names and groups (select_perturbations)
  uint64_t seed = 13;
  int64_t batch_size = 256;
  int64_t worst = 5;  ///< flips shown per perturbation
};

/// Encodes labelled examples as the run does (its tokenizer, vocabulary and options).
using ExampleEncoder = std::function<TextDataset(const std::vector<Example>&)>;

/// Runs every selected perturbation over `examples` (whose clean predictions are `clean`, in
/// order) and returns {"seed", "samples", "perturbations": [{name, group, summary, changed, metric,
/// value, clean_value, flip_rate (over every text), flip_rate_changed (over the changed ones),
/// mean_prob_drop (over every text), worst: [{line, text, perturbed, gold, clean, predicted,
/// prob_drop}]}]}. Only the changed texts are predicted again. Class tasks only (ConfigError
/// otherwise). With task.loss squared_hinge the "probabilities" are the softmax of margins.
nlohmann::json stress_test(TextModel& model, const Task& task, const Vocabulary& vocab, const ExampleEncoder& encode,
                           const std::vector<Example>& examples, const Predictions& clean, const StressOptions& options,
                           const torch::Device& device);

/// The stress results as a table for people.
std::string stress_table(const nlohmann::json& stress);

}  // namespace ltk
