// Loads an ltk run directory and classifies the lines of stdin through the library: one JSON
// prediction per line on stdout, as ltk-predict prints them.
//   classify RUN_DIR < texts.txt
#include <iostream>
#include <string>
#include <vector>

#include "ltk/core/version.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/run.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: classify RUN_DIR < texts.txt\n";
    return 2;
  }
  try {
    std::cerr << ltk::version_line() << "\n";
    ltk::LoadedRun run = ltk::load_run(argv[1], "best", "cpu");
    std::vector<ltk::Example> texts;
    std::string line;
    for (int64_t n = 1; std::getline(std::cin, line); ++n)
      if (!line.empty()) texts.emplace_back("", line, n);
    ltk::TextDataset data = run.encode(texts, "stdin", /*labelled=*/false);
    ltk::Predictions p = ltk::predict(*run.model, *run.task, data, 64, run.device, run.vocab.size());
    auto scores = p.scores.contiguous();
    for (int64_t i = 0; i < scores.size(0); ++i)
      std::cout << run.task->prediction(scores.data_ptr<float>() + i * scores.size(1)).dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "classify: " << e.what() << "\n";
    return 1;
  }
}
