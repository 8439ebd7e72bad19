// Deploy artifacts (ltk-eval --quantize): a run's model in bf16 or int8, scored against the
// float32 model on labelled data, and written only when its accuracy holds. The artifact is a run
// directory that ltk-eval, ltk-predict and ltk-serve load as any other (run format 3):
//   config.json, vocab.txt, labels.txt, task.json, the tokenizer's file   copied from the run
//   deploy.json          {"precision": "bf16" | "int8", "source_run", "source_checkpoint", "check",
//                         "calibration" (int8: {"data", "samples"})}
//   checkpoints/best.json, last.json -> checkpoints/deploy/weights.pt
// weights.pt holds every tensor by its run name: bf16 tensors for "bf16"; for "int8" the float32
// ones, except that each quantized Linear layer NAME stores NAME.weight_int8 (int8 [out, in]) and
// NAME.weight_scale (float32 [out]) in place of NAME.weight = weight_int8 * weight_scale per row,
// and NAME.input_range (float32 [lo, hi]: its activations' calibrated range; run format 3).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "ltk/infer/score_file.h"
#include "ltk/io/run.h"

namespace ltk {

/// The float32 model and its artifact on the same labelled file.
struct DeployCheck {
  std::string data;  ///< the file
  int64_t samples = 0;
  double reference_accuracy = 0, accuracy = 0;  ///< the float32 model's, the artifact's
  double agreement = 0;                         ///< the fraction of samples both predict alike
  double max_probability_change = 0;            ///< the largest |p - p_float32| over every sample and label
  /// The model's pass over the file (batches, forward, scores), in seconds: the float32 model's
  /// and the artifact's, each the faster of two passes (the first pays the process's warm-up or the
  /// artifact's first kernel builds); 0 when not timed.
  double reference_seconds = 0, seconds = 0;
  int64_t batch_size = 0;  ///< the batches they ran in
  /// The same for the file's first `single_texts` texts one at a time (batches of one, as a server
  /// answers a quiet stream), where batching cannot help: each the faster of two passes.
  int64_t single_texts = 0;
  double reference_single_seconds = 0, single_seconds = 0;

  /// Accuracy lost, in points (negative: gained).
  double drop() const { return 100.0 * (reference_accuracy - accuracy); }
  /// Why the artifact must not be written ("" when it may): its accuracy dropped more than
  /// `max_drop` points.
  std::string refusal(double max_drop) const;
  nlohmann::json to_json() const;
};

/// Converts `run`'s model in place to `precision` ("bf16" or "int8") and sets run.precision.
/// ConfigError (naming --quantize) where it cannot: a model type or task without it (the check
/// needs accuracy: multiclass, binary, multilabel), int8 off the CPU or without the onednn
/// engine, bf16 on a CPU without native bf16 (where it is slower than float32).
void quantize_run(LoadedRun& run, const std::string& precision);

/// What an int8 artifact's activation ranges were calibrated on.
struct CalibrationData {
  std::string data;     ///< the file (absolute)
  int64_t samples = 0;  ///< how many of its samples (spread over it evenly)
  nlohmann::json to_json() const { return {{"data", data}, {"samples", samples}}; }
};

/// Fixes an int8 `run`'s activation ranges (Int8Linear::lo, hi) to those its layers meet on at
/// most `max_samples` samples of the file `path` (read as the run's data, labels optional; spread
/// evenly over it), run once with each call's own range. Nothing (samples 0) for another precision.
CalibrationData calibrate_run(LoadedRun& run, const std::string& path, int64_t batch_size,
                              const std::string& format = "", int64_t max_samples = 4096);

/// Seconds `run`'s model takes over the first `texts` texts of `data` one at a time (batches of one).
double one_at_a_time_seconds(const LoadedRun& run, const TextDataset& data, int64_t texts);

/// Compares the float32 run's scores with the artifact's on the same file.
DeployCheck compare_deploy(const Task& task, const ScoredFile& reference, const ScoredFile& candidate);

/// `dir` as an artifact's directory: UsageError (naming --out) unless it is missing, empty or one an
/// earlier --quantize wrote (it is replaced whole). Returns it without trailing slashes.
std::string check_deploy_dir(const std::string& dir);

/// Writes the quantized `run` as an artifact into `dir` (check_deploy_dir), with `check` (and
/// `calibration`, when it has samples) in deploy.json. Returns the weights file's size.
uint64_t write_deploy_run(const LoadedRun& run, const DeployCheck& check, const std::string& dir,
                          const CalibrationData& calibration = {});

}  // namespace ltk
