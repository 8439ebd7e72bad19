// The typed configuration of an experiment. Flow: JSON file -> --set overrides -> these
// structs (defaults filled, unknown keys and wrong types rejected) -> validation. The
// resolved config (to_json) is written to the run directory and printed by --dump-config.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ltk {

struct TokenizerConfig {
  std::string type = "basic";  ///< basic | whitespace | char | jieba | wordpiece | sentencepiece
  /// jieba: dict.txt path ("" = python3-jieba's); wordpiece: a BERT vocab.txt; sentencepiece: a
  /// trained .model ("" = train one on the training split). Copied into the run directory.
  std::string dict;
  bool lowercase = true;       ///< lowercase before splitting
  bool nfkc = false;           ///< Unicode NFKC first (full-width forms to half-width, ligatures split, ...)
  bool strip_accents = false;  ///< drop combining marks after canonical decomposition (é -> e); wordpiece: also when lowercase
  bool tokenize_chinese_chars = true;  ///< wordpiece: every CJK ideograph is a word of its own (BERT's default)
  int64_t vocab_size = 8000;   ///< sentencepiece: pieces to train
  std::string model_type = "unigram";  ///< sentencepiece: unigram | bpe
  double character_coverage = 0.9995;  ///< sentencepiece: share of characters the pieces must cover
};

struct VocabConfig {
  /// corpus: built from the training split | tokenizer: the wordpiece vocab.txt as it is, ids in
  /// file order (what a pretrained BERT needs)
  std::string source = "corpus";
  int64_t min_freq = 1;  ///< tokens seen fewer times in the training split map to <unk>
  int64_t max_size = 0;  ///< most frequent tokens kept, specials included; 0 = no limit
};

struct DataConfig {
  std::string train;           ///< training file (required)
  std::string valid;           ///< validation file: picks the best checkpoint ("" = none)
  std::string test;            ///< test file, evaluated with the best checkpoint at the end
  std::string format = "auto";  ///< auto (by extension) | tsv | csv | jsonl | text (one text per line)
  bool header = false;           ///< tsv/csv: the first row names the columns
  std::string label_column;      ///< tsv/csv: column name (with header) or 0-based index; "" = 0
  std::string text_column;       ///< tsv/csv: as above; "" = 1 (tsv: the rest of the line after the first tab)
  std::string label_field = "label";  ///< jsonl
  std::string text_field = "text";    ///< jsonl
  std::string text_pair_column;       ///< tsv/csv: a second text per sample (sentence pairs); "" = none
  std::string text_pair_field;        ///< jsonl: as above
  std::string on_bad_row = "error";   ///< error | skip (skipped rows are counted in the log)
  TokenizerConfig tokenizer;
  VocabConfig vocab;
  int64_t max_len = 0;            ///< tokens kept per sample; 0 = no limit
  std::string truncation = "head";  ///< head | tail | head+tail: which part of a long text is kept
  /// truncate (as data.truncation says) | window: a text longer than max_len becomes overlapping
  /// windows, each a sample with the text's label; predictions pool them per text
  std::string long_text = "truncate";
  int64_t window_overlap = 0;        ///< tokens two neighbouring windows share (Hugging Face's stride)
  std::string window_pool = "mean";  ///< mean | max: how a text's windows' outputs (logits) are pooled
  /// [CLS] text [SEP] (pairs: [CLS] a [SEP] b [SEP], token types 0/1) from the WordPiece
  /// vocabulary; max_len counts them. Needs vocab.source "tokenizer".
  bool special_tokens = false;
};

struct TaskConfig {
  std::string type = "multiclass";  ///< multiclass | binary | multilabel | regression | mlm
  std::string reduction = "mean";   ///< mean | sum over the batch (PyTorch's semantics)
  /// "none", "auto" (multiclass: N / (C * n_c); binary and multilabel: pos_weight = negatives /
  /// positives) or an object {label: weight}.
  nlohmann::json class_weights = "none";
  double label_smoothing = 0.0;       ///< multiclass only, in [0, 1)
  /// binary and multilabel: the probability at which a label is predicted: a number in (0, 1),
  /// {label: number} (labels not named: 0.5) or "tune" (per label, the F1-best on data.valid)
  nlohmann::json threshold = 0.5;
  std::string positive_label;         ///< binary: the positive label ("" = the second in sorted order)
  std::string label_separator = ",";  ///< multilabel: separates the labels of one sample
  /// auto (regression: mse, else cross_entropy) | cross_entropy | squared_hinge (class tasks: one-vs-rest,
  /// as LinearSVC) | mse | l1 | huber (regression)
  std::string loss = "auto";
  double huber_delta = 1.0;           ///< regression with loss huber
  double mask_prob = 0.15;            ///< mlm: share of the pieces selected for prediction
  bool whole_word = false;            ///< mlm: select every piece of a word together
  /// mlm with whole_word: what a word is: "wordpiece" (a piece and its "##" continuations) or
  /// "jieba" (a jieba word, for Chinese, as the Chinese BERT-wwm models do)
  std::string word_segmenter = "wordpiece";
  bool pack = false;                  ///< mlm: pack several short texts into one sequence up to max_len
  /// "none" | "temperature": after training, one temperature (multiclass; per label for binary and
  /// multilabel) fitted on data.valid divides the logits wherever scores are shown
  std::string calibrate = "none";
};

struct ModelConfig {
  std::string type = "bow";  ///< a name in the model registry
  nlohmann::json options;    ///< the section resolved by the model's own parser (defaults filled)
  std::string init_from;     ///< start from another run's weights (a run directory or a weights file)
  bool init_strict = true;   ///< init_from must match every parameter name and shape
  std::vector<std::string> freeze;  ///< parameter name prefixes kept fixed (e.g. "embedding")
};

struct OptimizerConfig {
  std::string type = "adam";  ///< sgd | adam | adamw | adagrad | dual_cd (the linear model's exact solver)
  double lr = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.0;  ///< sgd only
  bool nesterov = false;  ///< sgd only
  double beta1 = 0.9;     ///< adam/adamw
  double beta2 = 0.999;   ///< adam/adamw
  double eps = 1e-8;      ///< adam/adamw/adagrad
  double lr_decay = 0.0;  ///< adagrad
  /// Exempt biases and normalisation weights (every parameter of 1 dimension) from weight decay.
  bool no_decay_bias_norm = false;
  double head_lr = 0.0;      ///< learning rate of the task head (the output layer); 0 = lr
  /// Layer-wise lr decay: a layer d levels below the head learns at lr * layer_decay^d (models
  /// with layers: transformer, bert); 1 = off.
  double layer_decay = 1.0;
  double tol = 1e-4;        ///< dual_cd: the stopping tolerance (scikit-learn's LinearSVC tol)
  int64_t max_iter = 1000;  ///< dual_cd: passes over the samples at most
};

struct SchedulerConfig {
  /// constant | step | cosine | linear (to 0 at the last step) | plateau (reduce on plateau)
  std::string type = "constant";
  int64_t warmup_steps = 0;   ///< linear warmup from 0 over this many optimiser steps (any type)
  double warmup_ratio = 0.0;  ///< or over this share of all steps (used when warmup_steps is 0)
  int64_t step_size = 1000;   ///< step: multiply the lr by gamma every step_size steps
  double gamma = 0.1;         ///< step
  double min_lr = 0.0;        ///< cosine: the lr at the last step
  double factor = 0.5;        ///< plateau: multiply the lr by factor ...
  int64_t patience = 2;       ///< plateau: ... after this many validations without improvement
};

struct TrainerConfig {
  int64_t epochs = 5;
  int64_t batch_size = 64;
  int64_t eval_batch_size = 256;
  bool shuffle = true;     ///< reshuffle the training set every epoch (seeded)
  bool drop_last = false;  ///< drop the last incomplete training batch
  int64_t log_every = 50;  ///< a progress line every N steps
  /// Picks the best checkpoint: auto (accuracy; loss for regression) | accuracy | macro_f1 | loss |
  /// mae | rmse.
  std::string select_metric = "auto";
  std::string select_mode = "auto";  ///< auto | max | min: whether a larger select_metric is better
  int64_t accumulate = 1;     ///< micro-batches per optimiser step (effective batch = batch_size * accumulate)
  double clip_norm = 0.0;     ///< clip the gradients' global L2 norm to this; 0 = off
  double clip_value = 0.0;    ///< clip every gradient element to [-v, v]; 0 = off
  int64_t eval_every = 0;     ///< validate every N optimiser steps; 0 = at the end of every epoch
  int64_t checkpoint_every = 0;  ///< also write a resumable checkpoint every N steps; 0 = at validations only
  int64_t patience = 0;       ///< early stopping: stop after N validations without improvement; 0 = off
  double min_delta = 0.0;     ///< early stopping: the least change that counts as an improvement
  int64_t keep_best = 1;      ///< checkpoints kept besides the last: the k best by select_metric
  std::string on_nonfinite = "stop";  ///< stop | skip: what a NaN/inf loss does
  std::string sampler = "random";     ///< random | balanced (every class equally likely, with replacement)
  std::string progress = "auto";      ///< auto (a live bar when stderr is a terminal) | bar | lines
  int64_t bucket_pool = 0;  ///< length bucketing: sort pools of N batches by length; 0 = off
  int64_t max_tokens = 0;   ///< cap samples x longest sample per batch (padded tokens); 0 = off
  bool memory_check = true;  ///< refuse a run whose parameters, optimiser state and largest batch exceed the free memory
  std::string dtype = "float32";  ///< float32 | float64: the weights' type (float64 for numerical checks)
  /// fp32 | bf16 (autocast: matrix products in bf16, float32 weights and optimiser state; needs
  /// native bf16: a CPU with AVX512_BF16 or AMX, or CUDA) | auto (bf16 where native, else fp32)
  /// | fp16 (CUDA: autocast to fp16 with a dynamic loss scale, GradScaler; refused on a CPU)
  std::string precision = "fp32";
  double dist_timeout_s = 300;    ///< distributed: the longest any collective (and the rendezvous) waits
  double dist_bucket_mb = 25;     ///< distributed: gradients are all-reduced in buffers of this size
};

struct Config {
  std::string name;          ///< default: the config file's name without extension
  uint64_t seed = 13;
  std::string device = "auto";  ///< auto | cpu | cuda | cuda:N
  int64_t threads = 0;          ///< LibTorch intra-op threads; 0 = all cores
  std::string output_dir;       ///< default: runs/<name>
  std::string log_level = "info";
  DataConfig data;
  TaskConfig task;
  ModelConfig model;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  TrainerConfig trainer;
};

class JsonReader;

/// What the config layer needs to know of models, supplied by the layer that has them (the model
/// registry, ltk/models/registry.h: model_schema()). Config stays free of any model, while every
/// key of a model section is still checked when a config is parsed.
class ModelSchema {
 public:
  virtual ~ModelSchema() = default;
  /// Reads the keys of model `type` from its section (each read key becomes known to `section`)
  /// and returns them with their defaults filled in; throws ConfigError naming the key at fault,
  /// or the type when no model has that name.
  virtual nlohmann::json resolve(const std::string& type, JsonReader& section) const = 0;
  /// Checks that involve other sections (a sparse embedding needs an optimiser that takes sparse
  /// gradients, a transformer a data.max_len within its positions); throws ConfigError.
  virtual void check(const Config& config) const = 0;
  /// Fills the keys of other sections that the model decides when the config leaves them out (a
  /// pretrained BERT brings its tokenizer); `document` is the config as written, to tell a key
  /// left out from one set to its default. Runs before check().
  virtual void complete(const nlohmann::json& document, Config& config) const = 0;
};

/// Parses a JSON document (already overridden) into a validated Config, the model section through
/// `models`. `default_name` fills `name` when the document has none.
Config parse_config(const nlohmann::json& j, const ModelSchema& models, const std::string& default_name = "experiment");

/// Reads a config file with read_config_file (errors name file:line:column), applies `overrides`
/// ("a.b=value", the value parsed as JSON when it parses, else taken as a string) and parses it.
Config load_config(const std::string& path, const std::vector<std::string>& overrides, const ModelSchema& models);

/// The `model` section: the keys every model has (type, init_from, init_strict, freeze), and the
/// model's own keys through `models`. `options` holds them all, defaults filled in.
ModelConfig parse_model_section(const nlohmann::json& section, const ModelSchema& models);

/// Reads a JSON file into a document; a syntax error names file:line:column.
nlohmann::json read_json_file(const std::string& path);

/// Reads a config file and what it is made of (compose.cpp): "extends": "base.json" (a path
/// relative to the file; chains allowed, a cycle refused naming the files) merges the file over its
/// base, objects key by key and anything else replaced (a value of another kind than the base's is
/// an error naming file and key); ${env:NAME} and ${env:NAME:-default} in string values take the
/// environment's value (unset without a default: an error naming file, key and variable; $${ is a
/// literal ${). The result has neither: a run stores it, and never depends on the files or the
/// environment it came from.
nlohmann::json read_config_file(const std::string& path);

/// A resolved document made fit to be read again as a config file: every literal "${" in a string
/// value written "$${" (ltk-train --dump-config, ltk-sweep's trial configs).
nlohmann::json escape_substitutions(nlohmann::json j);

/// Applies one "a.b.c=value" override to a JSON document.
void apply_override(nlohmann::json& j, const std::string& assignment);

/// Every leaf of a JSON document as "a.b.c" -> its JSON text (for listing differences).
std::map<std::string, std::string> flatten_json(const nlohmann::json& j);

/// The resolved config, every default filled in.
nlohmann::json to_json(const Config& c);

}  // namespace ltk
