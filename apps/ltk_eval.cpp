// ltk-eval: scores a run's checkpoint on labelled data, writes the misclassified samples and a
// report, compares two runs, or exports a checkpoint for Python.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>

#include "app.h"
#include "ltk/core/files.h"
#include "ltk/core/runtime.h"
#include "ltk/data/formats.h"
#include "ltk/data/shards.h"
#include "ltk/eval/badcases.h"
#include "ltk/eval/evaluator.h"
#include "ltk/eval/report.h"
#include "ltk/eval/stress.h"
#include "ltk/infer/deploy.h"
#include "ltk/infer/score_file.h"
#include "ltk/io/hf.h"
#include "ltk/io/run.h"
#include "ltk/metrics/compare.h"
#include "ltk/sweep/sweep.h"

namespace fs = std::filesystem;

namespace {

using Scored = ltk::ScoredFile;
using ltk::score_file;

// One side of --compare that names a sweep configuration ("SWEEP_DIR:ID"): each of its trials
// scored on `path`.
struct Side {
  std::vector<std::vector<int>> right;
  std::vector<double> accuracy;
};

Side score_side(const std::vector<std::string>& runs, const cxxopts::ParseResult& args, const std::string& path,
                int64_t batch_size) {
  Side side;
  for (const auto& dir : runs) {
    auto run = ltk::load_run(dir, args["checkpoint"].as<std::string>(), args["device"].as<std::string>());
    auto s = score_file(run, path, batch_size ? batch_size : run.config.trainer.eval_batch_size,
                        args["format"].as<std::string>());
    side.right.push_back(ltk::per_sample_correct(*run.task, s.data, s.predictions));
    double right = 0;
    for (int x : side.right.back()) right += x;
    side.accuracy.push_back(side.right.back().empty() ? 0.0 : right / static_cast<double>(side.right.back().size()));
  }
  return side;
}

int compare_configurations(const cxxopts::ParseResult& args, const std::vector<std::string>& specs, int64_t batch_size) {
  std::vector<std::vector<std::string>> runs;
  for (const auto& spec : specs) {
    auto r = ltk::sweep::configuration_runs(spec);
    runs.push_back(r.empty() ? std::vector<std::string>{spec} : r);
  }
  for (const auto& path : args["data"].as<std::vector<std::string>>()) {
    Side a = score_side(runs[0], args, path, batch_size), b = score_side(runs[1], args, path, batch_size);
    auto c = ltk::compare_groups(a.right, b.right, a.accuracy, b.accuracy);
    std::cerr << fmt::format(
        "== {}: {} samples\n  A {} ({} run(s)): accuracy {:.4f}\n  B {} ({} run(s)): accuracy {:.4f}\n"
        "  A - B = {:+.4f} (95% paired bootstrap over samples [{:+.4f}, {:+.4f}], p = {:.3g})\n"
        "  Welch's t-test over the runs' accuracies: {}\n  {}\n",
        path, c.samples, specs[0], c.trials_a, c.accuracy_a, specs[1], c.trials_b, c.accuracy_b,
        c.accuracy_a - c.accuracy_b, c.diff_low, c.diff_high, c.p_samples,
        std::isnan(c.p_trials) ? std::string("n/a (needs 2 runs or more on each side)") : fmt::format("p = {:.3g}", c.p_trials),
        c.significant_samples() || c.significant_trials() ? "the difference is significant at the 5% level"
                                                          : "the difference is NOT significant at the 5% level");
    if (args.count("json")) {
      auto j = c.to_json();
      j["file"] = path;
      j["a"] = specs[0];
      j["b"] = specs[1];
      j["runs_a"] = runs[0];
      j["runs_b"] = runs[1];
      std::cout << j.dump() << std::endl;
    }
  }
  return 0;
}

int compare(const cxxopts::ParseResult& args, int64_t batch_size) {
  auto runs = args["compare"].as<std::vector<std::string>>();
  if (runs.size() != 2) throw ltk::UsageError("--compare takes two run directories: --compare RUN_A RUN_B");
  if (!args.count("data")) throw ltk::UsageError("--compare needs --data");
  if (!ltk::sweep::configuration_runs(runs[0]).empty() || !ltk::sweep::configuration_runs(runs[1]).empty())
    return compare_configurations(args, runs, batch_size);
  auto a = ltk::load_run(runs[0], args["checkpoint"].as<std::string>(), args["device"].as<std::string>());
  auto b = ltk::load_run(runs[1], args["checkpoint"].as<std::string>(), args["device"].as<std::string>());
  for (const auto& path : args["data"].as<std::vector<std::string>>()) {
    auto sa = score_file(a, path, batch_size ? batch_size : a.config.trainer.eval_batch_size, args["format"].as<std::string>());
    auto sb = score_file(b, path, batch_size ? batch_size : b.config.trainer.eval_batch_size, args["format"].as<std::string>());
    auto c = ltk::compare_runs(ltk::per_sample_correct(*a.task, sa.data, sa.predictions),
                               ltk::per_sample_correct(*b.task, sb.data, sb.predictions));
    std::cerr << fmt::format(
        "== {}: {} samples\n  A {}: accuracy {:.4f}\n  B {}: accuracy {:.4f}\n  A - B = {:+.4f} (95% paired bootstrap "
        "[{:+.4f}, {:+.4f}])\n  only A right: {}   only B right: {}   McNemar exact p = {:.4g}\n  {}\n",
        path, c.samples, runs[0], c.accuracy_a, runs[1], c.accuracy_b, c.accuracy_a - c.accuracy_b, c.diff_low,
        c.diff_high, c.only_a, c.only_b, c.p_value,
        c.p_value < 0.05 ? "the difference is significant at the 5% level"
                         : "the difference is NOT significant at the 5% level");
    if (args.count("json")) {
      auto j = c.to_json();
      j["file"] = path;
      j["run_a"] = runs[0];
      j["run_b"] = runs[1];
      std::cout << j.dump() << std::endl;
    }
  }
  return 0;
}

// --quantize: the run's model in bf16 or int8, checked on labelled data against the float32 model,
// written to --out only when its accuracy holds (exit 3 otherwise).
int quantize(const cxxopts::ParseResult& args, int64_t batch_size) {
  const std::string precision = args["quantize"].as<std::string>();
  if (!args.count("out")) throw ltk::UsageError("--quantize needs --out DIR, the artifact's directory");
  const double max_drop = args["max-drop"].as<double>();
  if (!(max_drop >= 0)) throw ltk::UsageError("--max-drop is points of accuracy the artifact may lose: >= 0");
  auto load = [&] {
    return ltk::load_run(args["run"].as<std::string>(), args["checkpoint"].as<std::string>(),
                         args["device"].as<std::string>());
  };
  if (args.count("calibrate") && precision != "int8")
    throw ltk::UsageError("--calibrate sets the int8 activation ranges: it goes with --quantize int8");
  const std::string out = ltk::check_deploy_dir(args["out"].as<std::string>());  // before the work, not after
  auto reference = load();
  std::string data = reference.config.data.valid;
  if (args.count("data")) {
    if (args["data"].as<std::vector<std::string>>().size() != 1)
      throw ltk::UsageError("--quantize checks the artifact on one labelled file: give one --data");
    data = args["data"].as<std::vector<std::string>>()[0];
  }
  if (data.empty())
    throw ltk::UsageError(
        "--quantize checks the artifact on labelled data, and the run has no data.valid: pass --data FILE");
  auto quantized = load();
  ltk::quantize_run(quantized, precision);
  if (batch_size == 0) batch_size = reference.config.trainer.eval_batch_size;
  const std::string format = args["format"].as<std::string>();
  auto a = score_file(reference, data, batch_size, format);
  ltk::CalibrationData calibration;
  if (precision == "int8") {
    // Not the check's data: the check then meets inputs outside the ranges, clamped, as the artifact will.
    std::string calibrate = args.count("calibrate") ? args["calibrate"].as<std::string>() : reference.config.data.train;
    std::string what = args.count("calibrate") ? "--calibrate " + calibrate : "the run's data.train " + calibrate;
    std::string calibrate_format;  // the run's data.format (auto: by extension)
    if (!args.count("calibrate") && (calibrate.empty() || !fs::exists(calibrate) || ltk::is_shard(calibrate))) {
      std::cerr << "ltk-eval: the run's data.train (" << (calibrate.empty() ? "none" : calibrate)
                << ") is not a raw file here: the int8 ranges are calibrated on the check's data, which the check "
                   "then cannot catch clamping on; pass --calibrate FILE (texts like the training data)\n";
      calibrate = data;
      what = "the check's data " + data;
      calibrate_format = format;
    }
    try {
      calibration = ltk::calibrate_run(quantized, calibrate, batch_size, calibrate_format);
    } catch (const ltk::DataError& e) {
      throw ltk::DataError(fmt::format("calibrating the int8 ranges on {}: {}", what, e.what()));
    }
    std::cerr << fmt::format("int8 activation ranges calibrated on {} sample(s) of {}\n", calibration.samples,
                             calibration.data);
  }
  auto b = score_file(quantized, data, batch_size, format);
  auto check = ltk::compare_deploy(*reference.task, a, b);
  check.data = data;
  check.batch_size = batch_size;
  // Each model's pass again, the faster kept: the process's first pass pays its warm-up, and an
  // artifact's first its kernels' first build (oneDNN's, per shape).
  check.reference_seconds = std::min(check.reference_seconds, score_file(reference, data, batch_size, format).seconds);
  check.seconds = std::min(check.seconds, score_file(quantized, data, batch_size, format).seconds);
  // One text at a time too (a server's quiet stream), on the first texts: each model twice, taking
  // the faster pass, so that neither pays alone for its kernels' first build (oneDNN's, per shape).
  check.single_texts = std::min<int64_t>(256, a.data.num_texts());
  check.reference_single_seconds = check.single_seconds = std::numeric_limits<double>::infinity();
  for (int pass = 0; pass < 2; ++pass) {
    check.reference_single_seconds =
        std::min(check.reference_single_seconds, ltk::one_at_a_time_seconds(reference, a.data, check.single_texts));
    check.single_seconds =
        std::min(check.single_seconds, ltk::one_at_a_time_seconds(quantized, b.data, check.single_texts));
  }
  nlohmann::json j = check.to_json();
  j["precision"] = precision;
  j["max_drop"] = max_drop;
  if (calibration.samples) j["calibration"] = calibration.to_json();
  auto per_text = [&](double seconds) {
    return check.single_texts ? 1e3 * seconds / static_cast<double>(check.single_texts) : 0.0;
  };
  std::cerr << fmt::format(
      "== {} on {} ({} samples)\n  float32: accuracy {:.4f}\n  {:<7}: accuracy {:.4f} ({:+.2f} points)\n  the same "
      "prediction on {:.2f}% of the samples; the largest probability change {:.4f}\n  the model's pass in "
      "batches of {}: float32 {:.3f}s, {} {:.3f}s ({:.2f}x float32's speed)\n  one text at a time ({} texts): "
      "float32 {:.2f} ms a text, {} {:.2f} ms ({:.2f}x)\n",
      precision, data, check.samples, check.reference_accuracy, precision, check.accuracy, -check.drop(),
      100 * check.agreement, check.max_probability_change, batch_size, check.reference_seconds, precision,
      check.seconds, check.seconds > 0 ? check.reference_seconds / check.seconds : 0.0, check.single_texts,
      per_text(check.reference_single_seconds), precision, per_text(check.single_seconds),
      check.single_seconds > 0 ? check.reference_single_seconds / check.single_seconds : 0.0);
  const std::string why = check.refusal(max_drop);
  if (!why.empty()) {
    std::cerr << "ltk-eval: refused: " << why << "\n";
    j["written"] = false;
    if (args.count("json")) std::cout << j.dump() << std::endl;
    return 3;
  }
  const uint64_t bytes = ltk::write_deploy_run(quantized, check, out, calibration);
  const uint64_t float_bytes = fs::file_size(reference.checkpoint_path);
  std::cerr << fmt::format(
      "wrote {} ({} weights: {:.1f} MB, float32 {:.1f} MB); ltk-eval, ltk-predict and ltk-serve "
      "take it as --run {}\n",
      out, precision, static_cast<double>(bytes) / 1e6, static_cast<double>(float_bytes) / 1e6, out);
  j["written"] = true;
  j["out"] = out;
  j["weights_bytes"] = bytes;
  j["reference_weights_bytes"] = float_bytes;
  if (args.count("json")) std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return ltk::app::guarded_main("ltk-eval", argv, [&] {
    cxxopts::Options options("ltk-eval",
                             "Evaluate a trained run on labelled data (label<TAB>text lines): metrics on stderr (and "
                             "stdout with --json), misclassified samples and metrics under --out, a report with "
                             "--report, two runs side by side with --compare.");
    // clang-format off
    options.add_options()
        ("r,run", "run directory made by ltk-train", cxxopts::value<std::string>())
        ("d,data", "labelled file(s) to score", cxxopts::value<std::vector<std::string>>())
        ("format", "format of the --data files: auto (the run's data.format, or by extension when that is auto), tsv, csv, jsonl or text; columns and fields as in "
                   "the run's config", cxxopts::value<std::string>()->default_value("auto"))
        ("checkpoint", "best, last, step-N, or a weights file", cxxopts::value<std::string>()->default_value("best"))
        ("device", "override the run's device (cpu, cuda, cuda:N)", cxxopts::value<std::string>()->default_value(""))
        ("threads", "LibTorch threads (0 = all cores)", cxxopts::value<int64_t>()->default_value("0"))
        ("batch-size", "evaluation batch size (default: the run's trainer.eval_batch_size)",
         cxxopts::value<int64_t>()->default_value("0"))
        ("json", "print the metrics as one JSON object per file on stdout")
        ("out", "where metrics.json and badcases.tsv go, per data file (default: RUN/eval/FILE-STEM); with --quantize, "
                "the artifact's directory", cxxopts::value<std::string>())
        ("stress", "stress tests: perturb every text (case, punctuation, typos, whitespace, truncation, unknown "
                   "words, Chinese forms) and report accuracy, flips and probability drops; all, or a list of "
                   "names and groups such as case,typos", cxxopts::value<std::string>()->implicit_value("all"))
        ("stress-seed", "seed of the stress perturbations", cxxopts::value<uint64_t>()->default_value("13"))
        ("report", "write RUN/report.html (training curves, confusions, calibration) from the first --data file")
        ("compare", "compare two runs, or two sweep configurations (SWEEP_DIR:ID, SWEEP_DIR:best), on --data: ltk-eval --compare A B --data F",
         cxxopts::value<std::vector<std::string>>())
        ("export", "write the checkpoint for Python into DIR (weights.pt, model.json, vocab.txt, labels.txt)",
         cxxopts::value<std::string>())
        ("quantize", "write the run's model in bf16 (bert, transformer, textcnn, rnn) or int8 (bert; its activation "
                     "ranges calibrated on --calibrate) to --out DIR, a run ltk-eval, ltk-predict and ltk-serve load, after "
                     "checking it against the float32 model on --data (default: the run's data.valid); refused "
                     "(exit 3) when accuracy drops more than --max-drop", cxxopts::value<std::string>())
        ("max-drop", "points of accuracy a --quantize artifact may lose", cxxopts::value<double>()->default_value("0.5"))
        ("calibrate", "with --quantize int8: the file whose texts calibrate the activation ranges, in the run's data "
                      "format (auto: by extension), labels may be empty (default: the run's data.train; at most "
                      "4,096 samples spread over the file)", cxxopts::value<std::string>())
        ("export-hf", "write a bert run as a Hugging Face directory DIR (config.json, vocab.txt, "
                      "tokenizer_config.json, model.safetensors)", cxxopts::value<std::string>())
        ("h,help", "show this help");
    // clang-format on
    options.parse_positional({"compare"});
    // "--stress case,typos" as well as "--stress=case,typos" and a bare "--stress".
    std::vector<std::string> words(argv, argv + argc);
    std::vector<char*> argv2;
    for (size_t i = 0; i < words.size(); ++i) {
      if (words[i] == "--stress" && i + 1 < words.size() && !words[i + 1].empty() && words[i + 1][0] != '-')
        words[i] += "=" + words[i + 1], words.erase(words.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
    for (auto& w : words) argv2.push_back(w.data());
    argc = static_cast<int>(argv2.size());
    argv = argv2.data();
    bool help = false;
    auto args = ltk::app::parse(options, argc, argv, help);
    if (help) return 0;
    ltk::apply_threads(args["threads"].as<int64_t>());
    int64_t batch_size = args["batch-size"].as<int64_t>();
    if (batch_size < 0) throw ltk::UsageError("--batch-size must be >= 1");
    if (args.count("compare")) return compare(args, batch_size);
    if (!args.count("run")) throw ltk::UsageError("--run is required");
    if (args.count("calibrate") && !args.count("quantize"))
      throw ltk::UsageError("--calibrate sets the int8 activation ranges: it goes with --quantize int8");
    if (args.count("quantize")) return quantize(args, batch_size);
    if (!args.count("data") && !args.count("export") && !args.count("export-hf"))
      throw ltk::UsageError("--data (or --export, --export-hf) is required");
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
    }
    if (args.count("export-hf")) {
      std::string dir = args["export-hf"].as<std::string>();
      ltk::export_hf(run, dir);
      std::cerr << "exported " << run.checkpoint_path << " to " << dir << " (Hugging Face); in Python:\n"
                << "  from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
                << "  model = AutoModelForSequenceClassification.from_pretrained('" << dir << "')\n"
                << "  tokenizer = AutoTokenizer.from_pretrained('" << dir << "')\n";
    }
    if (!args.count("data")) return 0;
    if (batch_size == 0) batch_size = run.config.trainer.eval_batch_size;
    bool first = true;
    for (const auto& path : args["data"].as<std::vector<std::string>>()) {
      Scored s = score_file(run, path, batch_size, args["format"].as<std::string>());
      std::string stem = fs::path(path).stem().string();
      // Written beside, then swapped in whole (as --export): a kill or a full disk leaves the earlier
      // metrics.json and badcases.tsv, or both new ones.
      const std::string out = ltk::check_export_dir(
          args.count("out") ? args["out"].as<std::string>() + "/" + stem : run.dir.file("eval/" + stem),
          {"badcases.tsv", "metrics.json"}, "--out");
      const std::string out_tmp = out + ".ltk-tmp";
      ltk::remove_tree(out_tmp);
      fs::create_directories(out_tmp);
      struct RemoveUnlessDone {  // (a failure on the way: the partial output goes, the old one stays)
        std::string path;
        bool done = false;
        ~RemoveUnlessDone() {
          if (!done) try {
              ltk::remove_tree(path);
            } catch (...) {
            }
        }
      } partial{out_tmp};
      auto bad = run.task->token_level()
                     ? 0
                     : ltk::write_badcases(out_tmp + "/badcases.tsv", *run.task, s.examples, s.data, s.predictions);
      nlohmann::json j = s.report.metrics;
      j["file"] = path;
      j["checkpoint"] = run.checkpoint_path;
      nlohmann::json stress;
      if (args.count("stress")) {
        ltk::StressOptions so;
        so.which = args["stress"].as<std::string>();
        so.seed = args["stress-seed"].as<uint64_t>();
        so.batch_size = batch_size;
        stress = ltk::stress_test(*run.model, *run.task, run.vocab,
                                  [&](const std::vector<ltk::Example>& ex) { return run.encode(ex, path, true); },
                                  s.examples, s.predictions, so, run.device);
        j["stress"] = stress;
        std::cerr << ltk::stress_table(stress);
      }
      ltk::write_file_atomic(out_tmp + "/metrics.json", j.dump(2) + "\n");
      ltk::replace_directory_durable(out_tmp, out);
      partial.done = true;
      j["seconds"] = s.seconds;  // timings on stdout only: metrics.json stays comparable between runs
      j["samples_per_s"] = s.seconds > 0 ? static_cast<double>(s.data.num_texts()) / s.seconds : 0.0;
      std::cerr << "== " << path << " (" << run.checkpoint_path << ")\n" << s.report.table << "wrote " << out
                << "/metrics.json"
                << (run.task->token_level() ? std::string()
                                            : " and " + std::to_string(bad) + " bad case(s) to " + out + "/badcases.tsv")
                << "\n";
      if (args.count("json")) std::cout << j.dump() << std::endl;
      if (first && args.count("report")) {
        auto stats = ltk::dataset_stats(stem, s.data);
        std::string written = ltk::write_run_report(run.dir.path(), ltk::to_json(run.config), &s.report,
                                                    path + " (" + run.checkpoint_path + ")", stats, "", nullptr,
                                                    stress);
        std::cerr << "wrote " << written << "\n";
      }
      first = false;
    }
    return 0;
  });
}
