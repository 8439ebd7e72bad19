// A task (`task.type`) owns its output size, its loss, the dtype and shape of its targets, how
// outputs decode to predictions and which metrics it reports. Its checks turn the article's
// loss pitfalls (P4, P7, P8, P10) into clear errors.
#pragma once

#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/data/dataset.h"
#include "ltk/data/labels.h"
#include "ltk/task/answer_head.h"

namespace ltk {

/// What an evaluation produced, on the CPU, in dataset order.
struct Predictions {
  torch::Tensor scores;   ///< [N, K] probabilities (class tasks) or values (regression), float
  torch::Tensor targets;  ///< the gold targets as the task's loss takes them; undefined when unlabelled
  double loss_sum = 0;    ///< summed per-sample loss (labelled data only); token-level tasks: per token
  int64_t samples = 0;
  int64_t tokens = 0;     ///< token-level tasks (mlm): positions predicted
  int64_t correct = 0;    ///< ... and predicted right
};

/// The metrics of one evaluation.
struct EvalReport {
  nlohmann::json metrics;  ///< every figure, by name ("samples", "loss", "accuracy", ...)
  std::string table;       ///< the same for people
  /// A figure by name (e.g. trainer.select_metric); throws when the task has no such figure.
  double get(const std::string& name) const;
  /// The headline figures on one line ("accuracy 0.4983 macro_f1 0.5038 loss 2.0688").
  std::string summary() const;
  /// The headline figures as a JSON object (for metrics.jsonl).
  nlohmann::json headline() const;
};

/// One row of badcases.tsv: how wrong the sample is (rows sort by it, largest first), its gold
/// and predicted labels or values, and the figure column.
struct BadCase {
  double key = 0;
  std::string gold, predicted, figure;
};

class Task {
 public:
  Task(TaskConfig config, std::vector<double> class_weights)
      : config_(std::move(config)), class_weights_(std::move(class_weights)) {}
  virtual ~Task() = default;
  const std::string& type() const { return config_.type; }
  /// Outputs per sample the model must produce.
  virtual int64_t num_outputs() const = 0;
  /// How this task turns label strings into targets.
  virtual TargetEncoder target_encoder() const = 0;
  /// The loss of a batch, reduced by task.reduction with PyTorch's semantics: a scalar.
  virtual torch::Tensor loss(const torch::Tensor& outputs, const torch::Tensor& targets) const = 0;
  /// The loss of every sample [B] (evaluation reports their mean).
  virtual torch::Tensor per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const = 0;
  /// Probabilities (class tasks) or values (regression), [B, K].
  virtual torch::Tensor scores(const torch::Tensor& outputs) const = 0;
  /// scores() of a multiclass, binary, multilabel or regression task computed row by row in
  /// float64 (answer_scores()), as float32 on the CPU: the scores ltk-predict gives a linear run,
  /// to the bit. A masked-LM task's are scores().
  torch::Tensor row_scores(const torch::Tensor& outputs) const;
  /// One prediction as a JSON object, from a row of scores().
  virtual nlohmann::ordered_json prediction(const float* scores) const = 0;
  /// prediction() with "top" added, the k most probable labels (ties in label order), when
  /// top_k > 0 and the prediction has "scores".
  nlohmann::ordered_json prediction(const float* scores, int64_t top_k) const;
  /// Appends prediction(scores, top_k) as JSON text to `out`, the same bytes as its dump(), without
  /// building the object (the class tasks write it directly: ltk-predict's lines at 100,000s a second).
  virtual void write_prediction(const float* scores, int64_t top_k, std::string& out) const;
  /// Metrics of labelled predictions.
  virtual EvalReport evaluate(const Predictions& p) const = 0;
  /// Whether sample `i` of `data` is predicted right from its row of scores() (the label, or the
  /// exact label set). A regression task has no right or wrong: ConfigError.
  virtual bool is_correct(const float* scores, const TextDataset& data, int64_t i) const = 0;
  /// Sample i's row of badcases.tsv, or nothing when it is predicted right.
  virtual std::optional<BadCase> bad_case(const float* scores, const TextDataset& data, int64_t i) const = 0;
  /// The name of badcases.tsv's figure column.
  virtual const char* bad_case_figure() const { return "confidence"; }
  /// Token-level tasks (mlm) predict positions, not samples: prepare_batch() makes their targets
  /// and evaluation counts tokens (Predictions::tokens, correct).
  virtual bool token_level() const { return false; }
  /// Makes the batch's inputs and targets where the task decides them (mlm: the masking), from
  /// `seed` and each sample's index alone, so a resumed run sees the same batches and an
  /// evaluation the same masks at any batch size. A no-op for sample-level tasks.
  virtual void prepare_batch(Batch& batch, uint64_t seed) const {}
  /// What a mean loss averages over in `batch` (samples; mlm: the masked positions): accumulated
  /// micro-batches are weighted by it, so that their step is one batch's.
  virtual double batch_weight(const Batch& batch) const { return static_cast<double>(batch.size()); }
  /// Tells the task the vocabulary (mlm: the ids of [MASK] and the specials).
  virtual void set_vocabulary(const Vocabulary& vocab) {}
  /// True when a larger value of `metric` is better.
  static bool higher_is_better(const std::string& metric);
  /// trainer.select_metric with "auto" resolved for this task.
  std::string selection_metric(const std::string& configured) const { return selection_metric(type(), configured); }
  /// trainer.select_metric with "auto" resolved for a task of type `task_type`.
  static std::string selection_metric(const std::string& task_type, const std::string& configured);
  /// Whether the selection (trainer.select_metric, trainer.select_mode) prefers larger values.
  static bool selection_higher_better(const std::string& metric, const std::string& select_mode) {
    return select_mode == "auto" ? higher_is_better(metric) : select_mode == "max";
  }

  const std::vector<double>& class_weights() const { return class_weights_; }
  const TaskConfig& config() const { return config_; }

  /// Temperature scaling (task.calibrate): the logits are divided by `t` before scores() turns
  /// them into probabilities: one value, or one per output column. Empty: none.
  void set_temperature(std::vector<double> t) { temperature_ = std::move(t); }
  const std::vector<double>& temperature() const { return temperature_; }

  /// Binary and multilabel: the probability at which each output column's label is predicted
  /// (task.threshold resolved by label; "tune" starts at 0.5 until set_thresholds() gives the
  /// validation's choice). Empty for the other tasks.
  const std::vector<double>& thresholds() const { return thresholds_; }
  /// Replaces thresholds(); one value per output column.
  void set_thresholds(std::vector<double> t);
  /// The thresholds as a report shows them: a number when every label has the same one, else
  /// {label: threshold}.
  virtual nlohmann::json thresholds_json() const { return nullptr; }

 protected:
  /// The outputs divided by the temperature (as they are without one).
  torch::Tensor calibrated(const torch::Tensor& outputs) const;

  TaskConfig config_;
  std::vector<double> class_weights_;  ///< resolved task.class_weights (empty = none)
  std::vector<double> temperature_;    ///< task.calibrate's fit (empty = none)
  std::vector<double> thresholds_;     ///< binary and multilabel: one per output column
  /// thresholds_ from task.threshold: `names` are the output columns' labels.
  void resolve_thresholds(const std::vector<std::string>& names);
  /// thresholds_json() over the columns' label names.
  nlohmann::json thresholds_json(const std::vector<std::string>& names) const;
};

/// C classes, cross-entropy with optional class weights and label smoothing; targets are 1-D
/// int64 class ids in [0, C). A [N, 1] column is squeezed; one-hot or float targets are an error
/// naming the shape expected (P10).
class MulticlassTask : public Task {
 public:
  MulticlassTask(TaskConfig config, const LabelMap& labels, std::vector<double> class_weights = {});
  /// Convenience for tests: plain cross-entropy over `num_classes` unnamed classes.
  MulticlassTask(int64_t num_classes, const std::string& reduction);
  int64_t num_outputs() const override { return labels_.size(); }
  TargetEncoder target_encoder() const override { return class_targets(labels_); }
  torch::Tensor loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  torch::Tensor per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  /// With class weights, a mean cross-entropy divides by the batch's summed target weights (PyTorch's
  /// weighted mean), so that is what micro-batches and ranks weigh by.
  double batch_weight(const Batch& batch) const override;
  torch::Tensor scores(const torch::Tensor& outputs) const override { return calibrated(outputs).softmax(1); }
  nlohmann::ordered_json prediction(const float* scores) const override;
  void write_prediction(const float* scores, int64_t top_k, std::string& out) const override;
  EvalReport evaluate(const Predictions& p) const override;
  bool is_correct(const float* scores, const TextDataset& data, int64_t i) const override;
  std::optional<BadCase> bad_case(const float* scores, const TextDataset& data, int64_t i) const override;
  /// The checked, squeezed targets.
  torch::Tensor check_targets(const torch::Tensor& outputs, const torch::Tensor& targets) const;

 private:
  /// task.loss "squared_hinge": per sample, the sum over the classes of the one-vs-rest terms (a
  /// class weight multiplies its positive terms, as LinearSVC's class_weight; the mean is over samples).
  torch::Tensor hinge_losses(const torch::Tensor& logits, const torch::Tensor& targets) const;
  LabelMap labels_;
};

/// Two labels, one logit, BCE-with-logits; targets are floats in [0, 1] (P7); the positive class
/// is predicted when its probability reaches its threshold (task.threshold).
class BinaryTask : public Task {
 public:
  BinaryTask(TaskConfig config, const LabelMap& labels, std::vector<double> class_weights = {});
  int64_t num_outputs() const override { return 1; }
  TargetEncoder target_encoder() const override;
  torch::Tensor loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  torch::Tensor per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  torch::Tensor scores(const torch::Tensor& outputs) const override { return calibrated(outputs).sigmoid(); }
  nlohmann::ordered_json prediction(const float* scores) const override;
  void write_prediction(const float* scores, int64_t top_k, std::string& out) const override;
  EvalReport evaluate(const Predictions& p) const override;
  bool is_correct(const float* scores, const TextDataset& data, int64_t i) const override;
  std::optional<BadCase> bad_case(const float* scores, const TextDataset& data, int64_t i) const override;
  int64_t positive() const { return positive_; }
  nlohmann::json thresholds_json() const override { return Task::thresholds_json({labels_.name(positive_)}); }

 private:
  torch::Tensor check(const torch::Tensor& outputs, const torch::Tensor& targets) const;
  LabelMap labels_;
  int64_t positive_ = 1;
};

/// C labels, any number per sample, C logits, BCE-with-logits on multi-hot float targets.
class MultilabelTask : public Task {
 public:
  MultilabelTask(TaskConfig config, const LabelMap& labels, std::vector<double> class_weights = {});
  int64_t num_outputs() const override { return labels_.size(); }
  TargetEncoder target_encoder() const override;
  torch::Tensor loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  torch::Tensor per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  torch::Tensor scores(const torch::Tensor& outputs) const override { return calibrated(outputs).sigmoid(); }
  nlohmann::ordered_json prediction(const float* scores) const override;
  void write_prediction(const float* scores, int64_t top_k, std::string& out) const override;
  EvalReport evaluate(const Predictions& p) const override;
  bool is_correct(const float* scores, const TextDataset& data, int64_t i) const override;
  std::optional<BadCase> bad_case(const float* scores, const TextDataset& data, int64_t i) const override;
  nlohmann::json thresholds_json() const override { return Task::thresholds_json(labels_.names()); }

 private:
  torch::Tensor check(const torch::Tensor& outputs, const torch::Tensor& targets) const;
  LabelMap labels_;
};

/// One output, MSE, L1 or Huber loss against a float target.
class RegressionTask : public Task {
 public:
  const char* bad_case_figure() const override { return "abs_error"; }
  explicit RegressionTask(TaskConfig config);
  int64_t num_outputs() const override { return 1; }
  TargetEncoder target_encoder() const override { return TargetEncoder{TargetKind::value, nullptr, ",", 1}; }
  torch::Tensor loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  torch::Tensor per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  torch::Tensor scores(const torch::Tensor& outputs) const override { return outputs; }
  nlohmann::ordered_json prediction(const float* scores) const override;
  void write_prediction(const float* scores, int64_t top_k, std::string& out) const override;
  EvalReport evaluate(const Predictions& p) const override;
  bool is_correct(const float* scores, const TextDataset& data, int64_t i) const override;
  std::optional<BadCase> bad_case(const float* scores, const TextDataset& data, int64_t i) const override;

 private:
  torch::Tensor check(const torch::Tensor& outputs, const torch::Tensor& targets) const;
  torch::Tensor raw_loss(const torch::Tensor& out, const torch::Tensor& t, bool reduce) const;
};

/// Masked-language-model pretraining (Hugging Face's recipe): task.mask_prob of the pieces selected
/// (whole words together with task.whole_word; [CLS], [SEP] and [PAD] never), of those 80% become
/// [MASK], 10% a random piece, 10% stay; the loss is cross-entropy on the selected positions only.
/// The model returns logits [M, V] for the M selected positions (batch.labels != -100).
class MaskedLmTask : public Task {
 public:
  static constexpr int64_t kIgnore = -100;
  explicit MaskedLmTask(TaskConfig config);
  int64_t num_outputs() const override { return vocab_size_; }
  TargetEncoder target_encoder() const override { return TargetEncoder{}; }
  torch::Tensor loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  torch::Tensor per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const override;
  torch::Tensor scores(const torch::Tensor& outputs) const override { return outputs.softmax(-1); }
  nlohmann::ordered_json prediction(const float* scores) const override;
  EvalReport evaluate(const Predictions& p) const override;
  bool is_correct(const float* scores, const TextDataset& data, int64_t i) const override;
  std::optional<BadCase> bad_case(const float* scores, const TextDataset& data, int64_t i) const override;
  bool token_level() const override { return true; }
  void prepare_batch(Batch& batch, uint64_t seed) const override;
  void set_vocabulary(const Vocabulary& vocab) override;
  double batch_weight(const Batch& batch) const override {
    return batch.labels.defined() ? (batch.labels != kIgnore).sum().item<double>() : 0.0;
  }

 private:
  int64_t vocab_size_ = 0;
  int64_t mask_id_ = -1, cls_id_ = -1, sep_id_ = -1, pad_id_ = -1;
};

/// True when the task has class labels (and so a labels.txt).
/// The LibTorch-free head that answers as `task` does (ltk/task/answer_head.h): its type, labels
/// (`labels`, the run's), positive label, thresholds and temperature. multiclass, binary,
/// multilabel and regression tasks only (Error otherwise).
AnswerHead answer_head(const Task& task, const LabelMap& labels);

bool task_has_labels(const std::string& type);

/// The labels of the training examples (multilabel fields split by task.label_separator).
LabelMap labels_from_examples(const TaskConfig& config, const std::vector<Example>& examples);

/// The class names one example's label holds under `config` (multilabel: split on the separator,
/// trimmed, empty parts dropped; else the label itself), into `out`.
void label_names(const TaskConfig& config, const Example& example, std::vector<std::string>& out);

/// Resolves task.class_weights ("none", "auto" or a map by label) against the training data.
std::vector<double> resolve_class_weights(const TaskConfig& config, const LabelMap& labels,
                                          const TextDataset& train);

/// Builds the task; `labels` is ignored by regression.
std::unique_ptr<Task> make_task(const TaskConfig& config, const LabelMap& labels,
                                std::vector<double> class_weights = {});

/// Throws TrainError unless `loss` is a scalar (P4): backward() needs one.
void check_scalar_loss(const torch::Tensor& loss);

}  // namespace ltk
