// Data-path benchmark (issue #3, item 8): read + normalise + tokenise + count + numericalise a
// TSV corpus with ltk's own reader, tokenizer, vocabulary and dataset, on one thread, and print
// one JSON object with the time and size of each phase. bench/data_pipeline.py does the same
// job the way a PyTorch user writes it in Python; scripts/bench_data.sh runs both.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "ltk/core/error.h"
#include "ltk/core/runtime.h"
#include "ltk/data/dataset.h"
#include "ltk/data/formats.h"
#include "ltk/data/labels.h"

namespace {

double now() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

long peak_rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: ltk-data-bench CORPUS.tsv [basic|whitespace|char] [max_size]\n";
    return 2;
  }
  try {
    std::string path = argv[1];
    ltk::TokenizerConfig tc;
    tc.type = argc > 2 ? argv[2] : "basic";
    tc.lowercase = true;
    int64_t max_size = argc > 3 ? std::stoll(argv[3]) : 50000;
    ltk::apply_threads(1);

    double t0 = now();
    ltk::ReaderOptions ro;
    ro.format = "tsv";
    auto examples = ltk::read_examples(path, ro).examples;
    double t1 = now();
    auto tokenizer = ltk::make_tokenizer(tc);
    std::vector<std::string> label_names;
    for (const auto& ex : examples) label_names.push_back(ex.label);
    auto labels = ltk::LabelMap::from_labels(label_names);
    auto targets = ltk::class_targets(labels);
    double t2 = now();
    // The training split's path in ltk-train: vocabulary and ids in one tokenisation pass.
    auto [vocab, data] = ltk::build_vocab_and_encode(examples, path, *tokenizer, 1, max_size, &targets, {});
    double t3 = now();

    size_t bytes = 0;
    for (const auto& ex : examples) bytes += ex.text.size() + ex.label.size() + 2;
    auto tokens = data.total_tokens();
    nlohmann::json out;
    out["impl"] = "ltk";
    out["tokenizer"] = tc.type;
    out["samples"] = data.size();
    out["tokens"] = tokens;
    out["bytes"] = bytes;
    out["vocab"] = vocab.size();
    out["read_s"] = t1 - t0;
    out["labels_s"] = t2 - t1;
    out["encode_s"] = t3 - t2;
    out["total_s"] = t3 - t0;
    out["mb_per_s"] = bytes / 1e6 / (t3 - t0);
    out["stored_bytes"] = data.memory_bytes();
    out["id_bytes"] = data.id_bytes();
    out["id_bytes_per_token"] = data.id_bytes() / double(tokens);
    out["bytes_per_sample_besides_ids"] = (data.memory_bytes() - data.id_bytes()) / double(data.size());
    out["peak_rss_mb"] = peak_rss_kb() / 1024.0;
    std::cout << out.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "ltk-data-bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
