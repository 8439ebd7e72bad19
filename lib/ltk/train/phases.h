// The phases of a training run, in the order run_training (run_training.cpp) calls them:
//   prepare_data      (prepare_data.cpp)     read the splits, the tokenizer, vocabulary, labels, task
//   build_run_model   (build_model.cpp)      the model on its device: initialised, frozen, checked
//   Trainer::fit      (trainer.cpp)          the five-step loop, validation, checkpoints
//   or solve_linear   (solve_linear.cpp)     optimizer.type "dual_cd": the linear model solved exactly
//   calibrate         (calibrate.cpp)        task.calibrate, task.threshold "tune": fitted on the validation split
//   test_and_report   (test_and_report.cpp)  the best checkpoint on the test split, report.html
//   compare_baseline  (baseline.cpp)         the tf-idf linear baseline on the same split, beside
// Private to the train area.
#pragma once

#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/data/dataset.h"
#include "ltk/data/labels.h"
#include "ltk/data/vocab.h"
#include "ltk/io/run_dir.h"
#include "ltk/models/text_model.h"
#include "ltk/task/task.h"
#include "ltk/train/train_options.h"
#include "ltk/train/trainer.h"

namespace ltk {

namespace dist {
class Group;
}

/// What run_training is doing, for the message when a stop request interrupts it.
enum class Phase { data, training, test };

/// The phases in order (run_training without its distributed launch and stop handling; the
/// baseline runs through it). `phase` follows the run; `group` is null in one process.
TrainSummary run_phases(const Config& config, const TrainOptions& options, std::shared_ptr<dist::Group> group,
                        Phase& phase);

/// What every phase reads: the config, the flags, the process's place in a job, its device and
/// threads, and the run directory (`src`: where a resumed run's files are read; rank > 0 writes
/// into a scratch directory of its own but reads the run's).
struct RunContext {
  const Config& config;
  const TrainOptions& options;
  std::shared_ptr<dist::Group> group;
  int rank = 0;
  torch::Device device = torch::kCPU;
  int threads = 1;
  RunDirectory& run;
  const RunDirectory& src;
};

/// The data of a run, encoded: what prepare_data makes and the later phases read.
struct PreparedData {
  Vocabulary vocab;
  LabelMap labels;
  std::unique_ptr<Task> task;
  TextDataset train;
  std::optional<TextDataset> valid, test;
  /// model.init_from when it names a run directory (its vocabulary and best weights are used).
  std::string init_run;
  /// The task's class weights (task.class_weights resolved; empty: none).
  std::vector<double> class_weights;
};

/// Reads data.train, builds (or, resumed and fine-tuned, reuses) the tokenizer files, vocabulary
/// and labels from it, encodes every split, writes vocab.txt, labels.txt and task.json, and in a
/// data-parallel job checks that every rank read the same data.
PreparedData prepare_data(const RunContext& ctx);

/// The model for the data, on ctx.device: from pretrained_dir or init_from when configured,
/// frozen where asked, its outputs checked against the task, its memory checked first.
std::shared_ptr<TextModel> build_run_model(const RunContext& ctx, const PreparedData& data);

/// The fit of optimizer.type "dual_cd" (solve_linear.cpp), in place of the Trainer's loop: the
/// linear model's tf-idf features of the training split as a sparse matrix, built once, solved
/// exactly (one-vs-rest on ctx.threads threads), the solution validated and checkpointed.
TrainSummary solve_linear(const RunContext& ctx, const PreparedData& data, const std::shared_ptr<TextModel>& model);

/// What is fitted on data.valid with the best weights, set on data.task and stored in task.json
/// (with the class weights), first task.calibrate "temperature": the temperature that minimises the
/// logits' NLL, the validation ECE before and after in the log, metrics.jsonl ("calibration") and
/// summary.calibration; then task.threshold "tune": per label, the threshold that maximises F1 on
/// the calibrated probabilities, in the log, metrics.jsonl ("thresholds") and summary.thresholds.
void calibrate(const RunContext& ctx, PreparedData& data, TextModel& model, TrainSummary& summary);

/// report.html of a run: what it shows besides the evaluation, and where it is.
struct RunReport {
  std::vector<std::pair<std::string, std::string>> stats;  ///< the vocabulary, labels and splits
  std::string evaluated;                                   ///< what its figures are of
  std::string path;                                        ///< report.html
};

/// The best checkpoint on data.test (summary.test, a "test" record in metrics.jsonl), the split
/// report.html shows (summary.shown: test, else valid), the exported encoder of an mlm run, and
/// report.html.
RunReport test_and_report(const RunContext& ctx, const PreparedData& data, TextModel& model, TrainSummary& summary);

/// Trains the baseline (baseline_config) on the same data and adds its comparison to the summary
/// and the report. The run is complete before it starts: a failure or a stop costs only the
/// baseline, logged as such.
void compare_baseline(const RunContext& ctx, TrainSummary& summary, RunReport& report);

}  // namespace ltk
