// ltk-predict: one JSON line per input text on stdout, in input order.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iostream>

#include "app.h"
#include "ltk/core/runtime.h"
#include "ltk/core/strings.h"
#include "ltk/data/utf8.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/run.h"

namespace {

struct Pending {
  int64_t line;
  std::string text;
  std::string error;  // non-empty: the line cannot be scored
};

void flush(const ltk::LoadedRun& run, std::vector<Pending>& pending, int64_t batch_size) {
  std::vector<ltk::Example> examples;
  for (const auto& p : pending)
    if (p.error.empty()) examples.push_back(ltk::Example{"", p.text, p.line});
  torch::Tensor probs;
  if (!examples.empty()) {
    auto data = run.encode(examples, "input", /*labelled=*/false);
    probs = ltk::predict(*run.model, *run.task, data, batch_size, run.device, run.vocab.size()).scores;
  }
  int64_t row = 0;
  for (const auto& p : pending) {
    nlohmann::ordered_json j;
    if (!p.error.empty()) {
      j["error"] = p.error;
      j["line"] = p.line;
    } else {
      auto r = probs[row++].contiguous();
      j = run.task->prediction(r.data_ptr<float>());
    }
    std::cout << j.dump() << '\n';
  }
  std::cout << std::flush;
  pending.clear();
}

}  // namespace

int main(int argc, char** argv) {
  return ltk::app::guarded_main("ltk-predict", [&] {
    cxxopts::Options options("ltk-predict",
                             "Classify texts, one per line, from --input or stdin. Prints one JSON object per line:\n"
                             "  multiclass and binary: {\"label\": ..., \"score\": ..., \"scores\": {label: probability, ...}}\n"
                             "  multilabel: {\"labels\": [...], \"scores\": {...}};  regression: {\"value\": ...}\n"
                             "or {\"error\": ..., \"line\": N} for a line that cannot be scored.");
    options.add_options()
        ("r,run", "run directory made by ltk-train", cxxopts::value<std::string>())
        ("i,input", "file of texts, one per line (default: stdin)", cxxopts::value<std::string>())
        ("checkpoint", "best, last, or a weights file", cxxopts::value<std::string>()->default_value("best"))
        ("device", "override the run's device (cpu, cuda, cuda:N)", cxxopts::value<std::string>()->default_value(""))
        ("threads", "LibTorch threads (0 = all cores)", cxxopts::value<int64_t>()->default_value("1"))
        ("batch-size", "texts per batch (default 256; 1 when reading a terminal or pipe, so each line is "
                       "answered at once)", cxxopts::value<int64_t>()->default_value("0"))
        ("h,help", "show this help");
    bool help = false;
    auto args = ltk::app::parse(options, argc, argv, help);
    if (help) return 0;
    if (!args.count("run")) throw ltk::UsageError("--run is required");
    ltk::apply_threads(args["threads"].as<int64_t>());
    auto run = ltk::load_run(args["run"].as<std::string>(), args["checkpoint"].as<std::string>(),
                             args["device"].as<std::string>());
    std::ifstream file;
    std::istream* in = &std::cin;
    bool streaming = false;
    if (args.count("input")) {
      std::string path = args["input"].as<std::string>();
      file.open(path, std::ios::binary);
      if (!file) throw ltk::DataError("cannot open input " + path);
      in = &file;
    } else {
      struct stat st {};
      streaming = fstat(STDIN_FILENO, &st) != 0 || !S_ISREG(st.st_mode);
    }
    int64_t batch_size = args["batch-size"].as<int64_t>();
    if (batch_size < 0) throw ltk::UsageError("--batch-size must be >= 1");
    if (batch_size == 0) batch_size = streaming ? 1 : 256;
    std::vector<Pending> pending;
    std::string line;
    int64_t line_no = 0;
    while (std::getline(*in, line)) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::string_view text = line_no == 1 ? ltk::utf8::strip_bom(line) : std::string_view(line);
      Pending p{line_no, std::string(ltk::trim(text)), ""};
      size_t bad = ltk::utf8::find_invalid(p.text);
      if (p.text.empty()) p.error = "empty text";
      else if (bad != std::string::npos) p.error = "invalid UTF-8 at byte " + std::to_string(bad);
      pending.push_back(std::move(p));
      if (static_cast<int64_t>(pending.size()) >= batch_size) flush(run, pending, batch_size);
    }
    if (!pending.empty()) flush(run, pending, batch_size);
    return 0;
  });
}
