// A run directory is a complete artefact: the resolved config, vocabulary, labels,
// checkpoints, metrics.jsonl and train.log. ltk-eval and ltk-predict need nothing else.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "ltk/config/config.h"

namespace ltk {

class DirectoryLock;

class RunDirectory {
 public:
  /// The file that marks a directory as made by ltk-train: --overwrite deletes nothing else.
  static constexpr const char* kMarker = ".ltk-run";

  /// Creates `path` for a new run and locks it (lock()). A directory that already holds a run (it
  /// has kMarker, or is a run made before runs were marked) is an error unless `overwrite`, which
  /// removes the files ltk-train writes there and nothing else. A directory with a config.json that
  /// ltk did not write is refused untouched; other files in a directory are left where they are.
  static RunDirectory create(const std::string& path, bool overwrite);
  /// Opens an existing run; throws CheckpointError when `path` holds no run.
  static RunDirectory open(const std::string& path);

  /// Takes the run's lock for writing (ltk/core/files.h DirectoryLock), held while this object or a
  /// copy lives: a second ltk-train on the same directory gets an error naming this process. Marks
  /// the directory (kMarker) when it is not yet.
  void lock();

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

  /// Appends one JSON object as a line of metrics.jsonl, on disk when this returns.
  void append_metrics(const nlohmann::json& record) const;

 private:
  explicit RunDirectory(std::string path) : path_(std::move(path)) {}
  std::string path_;
  std::shared_ptr<DirectoryLock> lock_;
};

/// What training fitted to a run's task, from its task.json: task.class_weights resolved, and
/// task.calibrate's temperature and task.threshold "tune"'s thresholds, which fit the best
/// checkpoint's outputs: for any other `checkpoint_path` they are left empty, with a warning.
struct TaskFit {
  std::vector<double> class_weights, temperature, thresholds;
};
TaskFit read_task_fit(const RunDirectory& dir, const std::string& checkpoint_path);

/// Points `tokenizer.dict` at the tokenizer's file the run keeps (runs made before ltk kept one use
/// the configured path).
void use_run_tokenizer_file(const RunDirectory& dir, TokenizerConfig& tokenizer);

}  // namespace ltk
