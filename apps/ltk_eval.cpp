// ltk-eval: scores a run's checkpoint on labelled data.
#include <iostream>

#include "app.h"
#include "ltk/core/runtime.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/run.h"

int main(int argc, char** argv) {
  return ltk::app::guarded_main("ltk-eval", [&] {
    cxxopts::Options options("ltk-eval", "Evaluate a trained run on labelled data (label<TAB>text lines).");
    options.add_options()
        ("r,run", "run directory made by ltk-train", cxxopts::value<std::string>())
        ("d,data", "labelled file(s) to score", cxxopts::value<std::vector<std::string>>())
        ("checkpoint", "best, last, or a weights file", cxxopts::value<std::string>()->default_value("best"))
        ("device", "override the run's device (cpu, cuda, cuda:N)", cxxopts::value<std::string>()->default_value(""))
        ("threads", "LibTorch threads (0 = all cores)", cxxopts::value<int64_t>()->default_value("0"))
        ("batch-size", "evaluation batch size (default: the run's trainer.eval_batch_size)",
         cxxopts::value<int64_t>()->default_value("0"))
        ("json", "print the metrics as one JSON object per file on stdout")
        ("export", "write the checkpoint for Python into DIR (weights.pt, model.json, vocab.txt, labels.txt) and exit",
         cxxopts::value<std::string>())
        ("h,help", "show this help");
    bool help = false;
    auto args = ltk::app::parse(options, argc, argv, help);
    if (help) return 0;
    if (!args.count("run")) throw ltk::UsageError("--run is required");
    if (!args.count("data") && !args.count("export")) throw ltk::UsageError("--data (or --export) is required");
    ltk::apply_threads(args["threads"].as<int64_t>());
    auto run = ltk::load_run(args["run"].as<std::string>(), args["checkpoint"].as<std::string>(),
                             args["device"].as<std::string>());
    if (args.count("export")) {
      std::string dir = args["export"].as<std::string>();
      ltk::export_run(run, dir);
      std::cerr << "exported " << run.checkpoint_path << " to " << dir << "; in Python:\n"
                << "  import json, torch, sys; sys.path.insert(0, 'bench'); import ltk_torch\n"
                << "  spec = json.load(open('" << dir << "/model.json'))\n"
                << "  model = ltk_torch.build_model(spec['model'], spec['vocab_size'], spec['num_outputs'])\n"
                << "  model.load_state_dict(torch.load('" << dir << "/weights.pt'))\n";
      if (!args.count("data")) return 0;
    }
    int64_t batch_size = args["batch-size"].as<int64_t>();
    if (batch_size < 0) throw ltk::UsageError("--batch-size must be >= 1");
    if (batch_size == 0) batch_size = run.config.trainer.eval_batch_size;
    for (const auto& path : args["data"].as<std::vector<std::string>>()) {
      auto data = run.encode(ltk::read_tsv(path), path, /*labelled=*/true);
      auto report = run.task->evaluate(ltk::predict(*run.model, *run.task, data, batch_size, run.device, run.vocab.size()));
      std::cerr << "== " << path << " (" << run.checkpoint_path << ")\n" << report.table;
      if (args.count("json")) {
        auto j = report.metrics;
        j["file"] = path;
        j["checkpoint"] = run.checkpoint_path;
        std::cout << j.dump() << std::endl;
      }
    }
    return 0;
  });
}
