#include "ltk/infer/deploy.h"

#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/version.h"
#include "ltk/eval/evaluator.h"
#include "ltk/infer/predictor.h"
#include "ltk/io/checkpoint.h"
#include "ltk/models/quantize.h"

namespace ltk {

namespace fs = std::filesystem;

namespace {

// What an artifact directory holds (check_export_dir replaces only such a directory).
// (eval/ and report.html: what ltk-eval writes into a run it scores, an artifact included.)
const std::vector<std::string> kArtifactFiles = {
    "config.json", "vocab.txt", "labels.txt",  "task.json",   "spm.model",   "spm.vocab",          "jieba_dict.txt",
    "ltk.json",    "eval",      "report.html", "deploy.json", "checkpoints", "wordpiece_vocab.txt"};
// Copied from the run as they are (task.json: write_task_json).
const char* const kCopied[] = {"config.json", "vocab.txt",      "labels.txt",         "spm.model",
                               "spm.vocab",   "jieba_dict.txt", "wordpiece_vocab.txt"};

// The run's task.json, without the temperature and tuned thresholds when the artifact is made from
// another checkpoint than the best, which they were fitted on (load_run answers without them then).
void write_task_json(const LoadedRun& run, const std::string& path) {
  if (!fs::exists(run.dir.file("task.json"))) return;
  auto j = read_json_file(run.dir.file("task.json"));
  std::string best;
  try {
    best = run.dir.checkpoint("best");
  } catch (const Error&) {
  }
  if (best != run.checkpoint_path) {
    j.erase("temperature");
    j.erase("thresholds");
  }
  write_file_atomic(path, j.dump(2) + "\n");
}

nlohmann::ordered_json prediction_label(const Task& task, const float* row) {
  auto p = task.prediction(row);
  return p.contains("labels") ? p["labels"] : p.contains("label") ? p["label"] : nlohmann::ordered_json();
}

void write_artifact(const LoadedRun& run, const DeployCheck& check, const CalibrationData& calibration,
                    const std::string& tmp) {
  for (const char* name : kCopied)
    if (fs::exists(run.dir.file(name))) write_file_atomic(tmp + "/" + name, read_file(run.dir.file(name)));
  write_task_json(run, tmp + "/task.json");
  fs::create_directories(tmp + "/checkpoints/deploy");
  save_tensors(deploy_tensors(*run.model, run.precision), tmp + "/checkpoints/deploy/weights.pt");
  const std::string pointer = nlohmann::json{{"dir", "deploy"}}.dump() + "\n";
  write_file_atomic(tmp + "/checkpoints/best.json", pointer);
  write_file_atomic(tmp + "/checkpoints/last.json", pointer);
  nlohmann::json deploy = {{"precision", run.precision},
                           {"source_run", fs::absolute(run.dir.path()).lexically_normal().string()},
                           {"source_checkpoint", run.checkpoint_path},
                           {"check", check.to_json()}};
  if (calibration.samples) deploy["calibration"] = calibration.to_json();
  write_file_atomic(tmp + "/deploy.json", deploy.dump(2) + "\n");
  write_file_atomic(
      tmp + "/ltk.json",
      nlohmann::json{{"ltk_version", version()}, {"commit", git_commit()}, {"run_format", kRunFormat}}.dump(2) + "\n");
}

}  // namespace

std::string DeployCheck::refusal(double max_drop) const {
  if (drop() <= max_drop + 1e-9) return "";  // (a drop of exactly --max-drop, give or take rounding, passes)
  return fmt::format(
      "accuracy fell from {:.4f} to {:.4f} on {} ({:.2f} points, more than --max-drop {:g}); nothing "
      "was written. Try the other precision, or raise --max-drop if the loss is acceptable",
      reference_accuracy, accuracy, data, drop(), max_drop);
}

nlohmann::json DeployCheck::to_json() const {
  return {{"data", data},
          {"samples", samples},
          {"reference_accuracy", reference_accuracy},
          {"accuracy", accuracy},
          {"drop_points", drop()},
          {"agreement", agreement},
          {"max_probability_change", max_probability_change},
          {"reference_seconds", reference_seconds},
          {"seconds", seconds},
          {"batch_size", batch_size},
          {"single_texts", single_texts},
          {"reference_single_seconds", reference_single_seconds},
          {"single_seconds", single_seconds}};
}

void quantize_run(LoadedRun& run, const std::string& precision) {
  if (precision != "bf16" && precision != "int8") throw UsageError("--quantize takes bf16 or int8, not " + precision);
  if (run.precision != "fp32")
    throw ConfigError("--quantize: " + run.dir.path() + " is already a deploy artifact (" + run.precision +
                      "); quantize the run it was made from");
  const std::string& task = run.task->type();
  if (task != "multiclass" && task != "binary" && task != "multilabel")
    throw ConfigError("--quantize checks the artifact's accuracy against the float32 model's; a " + task +
                      " run reports none (it takes multiclass, binary and multilabel runs)");
  Quantizable& q = quantizable(*run.model, run.config.model.type);
  if (precision == "int8") {
    if (!run.device.is_cpu()) throw ConfigError("--quantize int8 runs on the CPU: pass --device cpu");
    if (auto why = int8_unavailable(); !why.empty()) throw ConfigError("--quantize int8: " + why);
  } else if (run.device.is_cpu() && !cpu_has_native_bf16()) {
    throw ConfigError(
        "--quantize bf16: " + why_no_native_bf16() +
        "; without it bf16 is slower than float32: serve the float32 run (or, for bert, --quantize int8)");
  }
  q.quantize(precision);
  run.precision = precision;
}

CalibrationData calibrate_run(LoadedRun& run, const std::string& path, int64_t batch_size, const std::string& format,
                              int64_t max_samples) {
  if (run.precision != "int8") return {};
  if (max_samples < 1) throw Error("calibrate_run: max_samples must be >= 1");
  auto examples = read_labelled(run, path, format, /*labelled=*/false);
  if (examples.empty()) throw DataError(path + ": no sample to calibrate the int8 activation ranges on");
  // k samples at i * n / k: spread evenly over the file, all of them when it holds at most k.
  const size_t n = examples.size(), k = std::min(n, static_cast<size_t>(max_samples));
  std::vector<Example> chosen;
  for (size_t i = 0; i < k; ++i) chosen.push_back(std::move(examples[i * n / k]));
  auto data = run.encode(chosen, path, /*labelled=*/false);
  Int8Calibration calibration;
  predict(*run.model, *run.task, data, batch_size, run.device, run.vocab.size());
  quantizable(*run.model, run.config.model.type).fix_int8_ranges(calibration);
  return {fs::absolute(path).lexically_normal().string(), static_cast<int64_t>(chosen.size())};
}

double one_at_a_time_seconds(const LoadedRun& run, const TextDataset& data, int64_t texts) {
  texts = std::min(texts, data.num_texts());
  std::vector<TextDataset> singles(static_cast<size_t>(texts));
  for (int64_t t = 0; t < texts; ++t) infer::append_text(singles[static_cast<size_t>(t)], data, t);
  c10::InferenceMode inference;  // as ltk-serve's model threads run it
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& one : singles) predict(*run.model, *run.task, one, 1, run.device, run.vocab.size());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

DeployCheck compare_deploy(const Task& task, const ScoredFile& reference, const ScoredFile& candidate) {
  DeployCheck c;
  c.samples = reference.predictions.samples;
  auto accuracy = [](const ScoredFile& s) {
    if (!s.report.metrics.contains("accuracy")) throw ConfigError("the task reports no accuracy to check");
    return s.report.metrics["accuracy"].get<double>();
  };
  c.reference_accuracy = accuracy(reference);
  c.accuracy = accuracy(candidate);
  auto a = reference.predictions.scores.to(torch::kFloat).contiguous();
  auto b = candidate.predictions.scores.to(torch::kFloat).contiguous();
  if (a.sizes() != b.sizes()) throw Error("the artifact's scores differ in shape from the float32 model's");
  const int64_t n = a.size(0), k = a.dim() > 1 ? a.size(1) : 1;
  int64_t same = 0;
  for (int64_t i = 0; i < n; ++i)
    same += prediction_label(task, a.data_ptr<float>() + i * k) == prediction_label(task, b.data_ptr<float>() + i * k);
  c.agreement = n ? static_cast<double>(same) / static_cast<double>(n) : 1.0;
  c.max_probability_change = a.numel() ? (a - b).abs().max().item<double>() : 0.0;
  c.reference_seconds = reference.seconds;
  c.seconds = candidate.seconds;
  return c;
}

std::string check_deploy_dir(const std::string& given) {
  const std::string dir = check_export_dir(given, kArtifactFiles, "--out");
  // Only an artifact is replaced: one with deploy.json, whose checkpoints/ holds what --quantize writes.
  std::error_code ec;
  if (!fs::exists(dir, ec) || fs::is_empty(dir, ec)) return dir;
  bool ours = fs::exists(dir + "/deploy.json", ec);
  if (ours && fs::exists(dir + "/checkpoints", ec))
    for (const auto& e : fs::directory_iterator(dir + "/checkpoints", ec)) {
      const std::string name = e.path().filename().string();
      ours = ours && (name == "best.json" || name == "last.json" || name == "deploy");
    }
  if (!ours)
    throw UsageError("--out " + dir +
                     " is no deploy artifact (it has no deploy.json, or its checkpoints/ holds more "
                     "than --quantize writes); it would be replaced whole, so give a new directory");
  return dir;
}

uint64_t write_deploy_run(const LoadedRun& run, const DeployCheck& check, const std::string& given,
                          const CalibrationData& calibration) {
  if (run.precision == "fp32") throw Error("write_deploy_run: the run is not quantized");
  const std::string dir = check_deploy_dir(given);
  const std::string tmp = dir + ".ltk-tmp";
  remove_tree(tmp);
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) throw Error("cannot create " + tmp + ": " + ec.message());
  try {
    write_artifact(run, check, calibration, tmp);
  } catch (...) {
    remove_tree(tmp);  // (a full disk: the partial artifact goes, an earlier one stays)
    throw;
  }
  replace_directory_durable(tmp, dir);
  return fs::file_size(dir + "/checkpoints/deploy/weights.pt");
}

}  // namespace ltk
