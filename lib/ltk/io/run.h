// A trained run loaded from its directory: everything ltk-eval and ltk-predict need.
#pragma once

#include <memory>
#include <string>

#include "ltk/config/config.h"
#include "ltk/data/dataset.h"
#include "ltk/io/run_dir.h"
#include "ltk/models/text_model.h"
#include "ltk/task/task.h"

namespace ltk {

struct LoadedRun {
  RunDirectory dir;
  Config config;
  std::unique_ptr<Tokenizer> tokenizer;
  Vocabulary vocab;
  LabelMap labels;
  std::unique_ptr<Task> task;
  std::shared_ptr<TextModel> model;  ///< in eval mode, on `device`
  torch::Device device{torch::kCPU};
  std::string checkpoint_path;
  /// The weights' precision: "fp32" (a trained run), or a deploy artifact's "bf16" or "int8"
  /// (ltk-eval --quantize; deploy.json says which).
  std::string precision = "fp32";

  /// Tokenises examples with the run's own tokenizer, vocabulary and truncation. With
  /// `labelled`, each label must be one the model knows (DataError naming file:line otherwise).
  TextDataset encode(const std::vector<Example>& examples, const std::string& source, bool labelled) const;
};

/// An export directory (--export, --export-hf) is replaced whole; this refuses one that holds
/// anything but the files such an export writes (`files`), so that `--export .` or a directory of
/// the user's is never swapped away. A missing or empty directory is fine. Returns `dir` without
/// trailing slashes ("out/" would put the temporary directory inside the one it replaces); "", ".",
/// ".." and "/" are refused.
std::string check_export_dir(const std::string& dir, const std::vector<std::string>& files, const std::string& option);

/// A ConfigError naming `option` when `run` is a deploy artifact (its weights are no float32 ones).
void check_float_run(const LoadedRun& run, const std::string& option);

/// Writes what Python needs to rebuild the model into `dir`: weights.pt (name -> tensor, read by
/// torch.load), model.json (the resolved model and task sections, vocab_size, num_outputs),
/// vocab.txt and labels.txt.
void export_run(const LoadedRun& run, const std::string& dir);

/// Opens `dir`, rebuilds the model from its config and loads `checkpoint` ("best", "last" or a
/// path). `device` overrides the config's device when not empty. A deploy artifact's model is
/// built in its precision (an int8 one runs on the CPU only).
LoadedRun load_run(const std::string& dir, const std::string& checkpoint = "best", const std::string& device = "");

}  // namespace ltk
