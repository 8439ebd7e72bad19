// The samples a model got wrong (badcases.tsv), and which samples it got right.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ltk/data/dataset.h"
#include "ltk/data/reader.h"
#include "ltk/task/task.h"

namespace ltk {

/// Writes the samples the model got wrong, most wrong first (Task::bad_case: text, gold,
/// predicted, the task's figure, truncated). Returns how many rows were written.
int64_t write_badcases(const std::string& path, const Task& task, const std::vector<Example>& examples,
                       const TextDataset& data, const Predictions& p, int64_t limit = 1000);

/// Whether each sample was predicted right (Task::is_correct); a regression task has no right or
/// wrong: a ConfigError.
std::vector<int> per_sample_correct(const Task& task, const TextDataset& data, const Predictions& p);

}  // namespace ltk
