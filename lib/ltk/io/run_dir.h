// A run directory is a complete artefact: the resolved config, vocabulary, labels,
// checkpoints, metrics.jsonl and train.log. ltk-eval and ltk-predict need nothing else.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace ltk {

class RunDirectory {
 public:
  /// Creates `path` for a new run. An existing run there is an error unless `overwrite`.
  static RunDirectory create(const std::string& path, bool overwrite);
  /// Opens an existing run; throws CheckpointError when `path` holds no run.
  static RunDirectory open(const std::string& path);

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::string config_path() const { return file("config.json"); }
  std::string vocab_path() const { return file("vocab.txt"); }
  std::string labels_path() const { return file("labels.txt"); }
  std::string metrics_path() const { return file("metrics.jsonl"); }
  std::string log_path() const { return file("train.log"); }

  /// The weights file of a checkpoint: "best" or "last" (through checkpoints/best.json and
  /// last.json), "step-N" (checkpoints/step-N/weights.pt), a checkpoint directory, or a file path.
  std::string checkpoint(const std::string& which) const;
  /// The directory of checkpoint "best" or "last", or "" when there is none yet.
  std::string checkpoint_dir(const std::string& which) const;
  /// The directory name of the checkpoint at `step` ("step-N").
  static std::string step_dir_name(int64_t step) { return "step-" + std::to_string(step); }

  /// Appends one JSON object as a line of metrics.jsonl.
  void append_metrics(const nlohmann::json& record) const;

 private:
  explicit RunDirectory(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace ltk
