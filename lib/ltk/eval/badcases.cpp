#include "ltk/eval/badcases.h"

#include <fmt/format.h>

#include <algorithm>

#include "ltk/core/files.h"

namespace ltk {

namespace {

std::string tsv_field(std::string s) {
  for (char& c : s)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

int64_t write_badcases(const std::string& path, const Task& task, const std::vector<Example>& examples,
                       const TextDataset& data, const Predictions& p, int64_t limit) {
  struct Row {
    double key;
    std::string line;
  };
  std::vector<Row> rows;
  auto scores = p.scores.contiguous();
  const int64_t K = scores.size(1);
  for (int64_t t = 0; t < data.num_texts(); ++t) {  // rows of scores are texts (a text's first window: its label)
    auto bad = task.bad_case(scores.data_ptr<float>() + t * K, data, data.text_sample(t));
    if (!bad) continue;
    const int64_t windows = data.text_windows(t);
    rows.push_back({bad->key, fmt::format("{}\t{}\t{}\t{}\t{}", tsv_field(examples[static_cast<size_t>(t)].text),
                                          bad->gold, bad->predicted, bad->figure,
                                          windows > 1                           ? fmt::format("{} windows", windows)
                                          : data.truncated(data.text_sample(t)) ? "yes"
                                                                                : "no")});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.key > b.key; });
  std::string out = std::string("text\tgold\tpredicted\t") + task.bad_case_figure() + "\ttruncated\n";
  int64_t written = 0;
  for (const auto& r : rows) {
    if (written >= limit) break;
    out += r.line + '\n';
    ++written;
  }
  write_file_atomic(path, out);
  return written;
}

std::vector<int> per_sample_correct(const Task& task, const TextDataset& data, const Predictions& p) {
  std::vector<int> out;
  auto scores = p.scores.contiguous();
  const int64_t K = scores.size(1);
  for (int64_t t = 0; t < data.num_texts(); ++t)
    out.push_back(task.is_correct(scores.data_ptr<float>() + t * K, data, data.text_sample(t)));
  return out;
}

}  // namespace ltk
