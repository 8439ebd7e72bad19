// The config sections: each key defined once in a field table (name, member, check), then the
// checks that involve several keys. config.cpp assembles the sections; to_json writes them back
// from the same tables.
#include "ltk/config/sections.h"

#include <fmt/format.h>

#include "ltk/config/fields.h"

namespace ltk::config_detail {

namespace {

const std::vector<Field<Config>>& top_fields() {
  static const std::vector<Field<Config>> f = {
      {"device", &Config::device},
      {"threads", &Config::threads, at_least(0)},
      {"log_level", &Config::log_level, one_of({"debug", "info", "warn", "error", "off"})},
  };
  return f;
}

const std::vector<Field<DataConfig>>& data_fields() {
  static const std::vector<Field<DataConfig>> f = {
      {"train", &DataConfig::train},
      {"valid", &DataConfig::valid},
      {"test", &DataConfig::test},
      {"format", &DataConfig::format, one_of({"auto", "tsv", "csv", "jsonl", "text"})},
      {"header", &DataConfig::header},
      {"label_field", &DataConfig::label_field},
      {"text_field", &DataConfig::text_field},
      {"on_bad_row", &DataConfig::on_bad_row, one_of({"error", "skip"})},
      {"max_len", &DataConfig::max_len, at_least(0)},
      {"truncation", &DataConfig::truncation, one_of({"head", "tail", "head+tail"})},
      {"long_text", &DataConfig::long_text, one_of({"truncate", "window"})},
      {"window_overlap", &DataConfig::window_overlap, at_least(0)},
      {"window_pool", &DataConfig::window_pool, one_of({"mean", "max"})},
      {"text_pair_field", &DataConfig::text_pair_field},
      {"special_tokens", &DataConfig::special_tokens},
  };
  return f;
}

const std::vector<Field<TokenizerConfig>>& tokenizer_fields() {
  static const std::vector<Field<TokenizerConfig>> f = {
      {"type", &TokenizerConfig::type, one_of({"basic", "whitespace", "char", "jieba", "wordpiece", "sentencepiece"})},
      {"dict", &TokenizerConfig::dict},
      {"lowercase", &TokenizerConfig::lowercase},
      {"nfkc", &TokenizerConfig::nfkc},
      {"strip_accents", &TokenizerConfig::strip_accents},
      {"tokenize_chinese_chars", &TokenizerConfig::tokenize_chinese_chars},
      {"vocab_size", &TokenizerConfig::vocab_size, at_least(2)},
      {"model_type", &TokenizerConfig::model_type, one_of({"unigram", "bpe"})},
      {"character_coverage", &TokenizerConfig::character_coverage, between(0, 1, false, true)},
  };
  return f;
}

const std::vector<Field<VocabConfig>>& vocab_fields() {
  static const std::vector<Field<VocabConfig>> f = {
      {"source", &VocabConfig::source, one_of({"corpus", "tokenizer"})},
      {"min_freq", &VocabConfig::min_freq, at_least(1)},
      {"max_size", &VocabConfig::max_size, at_least(0)},
  };
  return f;
}

const std::vector<Field<TaskConfig>>& task_fields() {
  static const std::vector<Field<TaskConfig>> f = {
      {"type", &TaskConfig::type, one_of({"multiclass", "binary", "multilabel", "regression", "mlm"})},
      {"reduction", &TaskConfig::reduction, one_of({"mean", "sum"})},
      {"label_smoothing", &TaskConfig::label_smoothing, between(0, 1, true, false)},
      {"positive_label", &TaskConfig::positive_label},
      {"label_separator", &TaskConfig::label_separator},
      {"loss", &TaskConfig::loss, one_of({"auto", "cross_entropy", "squared_hinge", "mse", "l1", "huber"})},
      {"huber_delta", &TaskConfig::huber_delta, at_least(0, false)},
      {"mask_prob", &TaskConfig::mask_prob, between(0, 1, false, false)},
      {"whole_word", &TaskConfig::whole_word},
      {"word_segmenter", &TaskConfig::word_segmenter, one_of({"wordpiece", "jieba"})},
      {"pack", &TaskConfig::pack},
      {"calibrate", &TaskConfig::calibrate, one_of({"none", "temperature"})},
  };
  return f;
}

const std::vector<Field<OptimizerConfig>>& optimizer_fields() {
  static const std::vector<Field<OptimizerConfig>> f = {
      {"type", &OptimizerConfig::type, one_of({"sgd", "adam", "adamw", "adagrad", "dual_cd"})},
      {"lr", &OptimizerConfig::lr, at_least(0, false)},
      {"weight_decay", &OptimizerConfig::weight_decay, at_least(0)},
      {"momentum", &OptimizerConfig::momentum, at_least(0)},
      {"nesterov", &OptimizerConfig::nesterov},
      {"beta1", &OptimizerConfig::beta1, between(0, 1, true, false)},
      {"beta2", &OptimizerConfig::beta2, between(0, 1, true, false)},
      {"eps", &OptimizerConfig::eps, at_least(0, false)},
      {"lr_decay", &OptimizerConfig::lr_decay, at_least(0)},
      {"no_decay_bias_norm", &OptimizerConfig::no_decay_bias_norm},
      {"head_lr", &OptimizerConfig::head_lr, at_least(0)},
      {"layer_decay", &OptimizerConfig::layer_decay, between(0, 1, false, true)},
      {"tol", &OptimizerConfig::tol, at_least(0, false)},
      {"max_iter", &OptimizerConfig::max_iter, at_least(1)},
  };
  return f;
}

const std::vector<Field<SchedulerConfig>>& scheduler_fields() {
  static const std::vector<Field<SchedulerConfig>> f = {
      {"type", &SchedulerConfig::type, one_of({"constant", "step", "cosine", "linear", "plateau"})},
      {"warmup_steps", &SchedulerConfig::warmup_steps, at_least(0)},
      {"warmup_ratio", &SchedulerConfig::warmup_ratio, between(0, 1, true, false)},
      {"step_size", &SchedulerConfig::step_size, at_least(1)},
      {"gamma", &SchedulerConfig::gamma, at_least(0, false)},
      {"min_lr", &SchedulerConfig::min_lr, at_least(0)},
      {"factor", &SchedulerConfig::factor, between(0, 1, false, false)},
      {"patience", &SchedulerConfig::patience, at_least(0)},
  };
  return f;
}

const std::vector<Field<TrainerConfig>>& trainer_fields() {
  static const std::vector<Field<TrainerConfig>> f = {
      {"epochs", &TrainerConfig::epochs, at_least(1)},
      {"batch_size", &TrainerConfig::batch_size, at_least(1)},
      {"eval_batch_size", &TrainerConfig::eval_batch_size, at_least(1)},
      {"shuffle", &TrainerConfig::shuffle},
      {"drop_last", &TrainerConfig::drop_last},
      {"log_every", &TrainerConfig::log_every, at_least(1)},
      {"select_metric", &TrainerConfig::select_metric,
       one_of({"auto", "accuracy", "macro_f1", "loss", "mae", "rmse", "masked_accuracy", "perplexity"})},
      {"select_mode", &TrainerConfig::select_mode, one_of({"auto", "max", "min"})},
      {"accumulate", &TrainerConfig::accumulate, at_least(1)},
      {"clip_norm", &TrainerConfig::clip_norm, at_least(0)},
      {"clip_value", &TrainerConfig::clip_value, at_least(0)},
      {"eval_every", &TrainerConfig::eval_every, at_least(0)},
      {"checkpoint_every", &TrainerConfig::checkpoint_every, at_least(0)},
      {"patience", &TrainerConfig::patience, at_least(0)},
      {"min_delta", &TrainerConfig::min_delta, at_least(0)},
      {"keep_best", &TrainerConfig::keep_best, at_least(1)},
      {"on_nonfinite", &TrainerConfig::on_nonfinite, one_of({"stop", "skip"})},
      {"sampler", &TrainerConfig::sampler, one_of({"random", "balanced"})},
      {"progress", &TrainerConfig::progress, one_of({"auto", "bar", "lines"})},
      {"bucket_pool", &TrainerConfig::bucket_pool, at_least(0)},
      {"max_tokens", &TrainerConfig::max_tokens, at_least(0)},
      {"memory_check", &TrainerConfig::memory_check},
      {"dtype", &TrainerConfig::dtype, one_of({"float32", "float64"})},
      {"precision", &TrainerConfig::precision, one_of({"fp32", "bf16", "fp16", "auto"})},
      {"dist_timeout_s", &TrainerConfig::dist_timeout_s, at_least(1)},
      {"dist_bucket_mb", &TrainerConfig::dist_bucket_mb, at_least(0, false)},
  };
  return f;
}

// data.label_column / data.text_column: a header name or a 0-based index.
void read_column(JsonReader& r, const char* key, std::string& out) {
  const nlohmann::json& v = r.raw(key);
  if (v.is_null()) return;
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = std::to_string(v.get<int64_t>());
  } else if (v.is_string()) {
    out = v.get<std::string>();  // "" = the default column
  } else {
    config_fail(r.key_path(key), "expected a column name or a 0-based index, got " + json_type_name(v));
  }
}

}  // namespace

void read_top(JsonReader& r, Config& c) { read_fields(r, c, top_fields()); }

void read_data(JsonReader r, DataConfig& d) {
  read_fields(r, d, data_fields());
  read_column(r, "label_column", d.label_column);
  read_column(r, "text_column", d.text_column);
  read_column(r, "text_pair_column", d.text_pair_column);
  {
    JsonReader t = r.child("tokenizer");
    read_fields(t, d.tokenizer, tokenizer_fields());
    t.finish();
  }
  {
    JsonReader v = r.child("vocab");
    read_fields(v, d.vocab, vocab_fields());
    if (d.vocab.max_size != 0) check_min(v.key_path("max_size"), static_cast<double>(d.vocab.max_size), 3);
    v.finish();
  }
  r.finish();
  if (d.train.empty()) config_fail("data.train", "is required: the path of the training file");
}

namespace {

// data.long_text "window" and its keys.
void check_windows(const DataConfig& d) {
  const bool pairs = !d.text_pair_column.empty() || !d.text_pair_field.empty();
  if (d.long_text != "window") {
    if (d.window_overlap != 0 || d.window_pool != "mean")
      config_fail(d.window_overlap != 0 ? "data.window_overlap" : "data.window_pool",
                  "applies with data.long_text \"window\"");
    return;
  }
  const int64_t specials = d.special_tokens ? 2 : 0;
  if (d.max_len <= specials)
    config_fail("data.long_text", fmt::format("\"window\" cuts texts longer than data.max_len into windows: set "
                                              "data.max_len{}",
                                              specials ? " above 2 (it counts [CLS] and [SEP])" : ""));
  if (pairs)
    config_fail("data.long_text", "\"window\" takes single texts; sentence pairs are truncated (longest first)");
  if (d.truncation != "head")
    config_fail("data.truncation", "applies with data.long_text \"truncate\"; windows keep every token");
  if (d.window_overlap >= d.max_len - specials)
    config_fail("data.window_overlap",
                fmt::format("{} tokens shared by neighbouring windows must be fewer than a "
                            "window's {} (data.max_len{})",
                            d.window_overlap, d.max_len - specials, specials ? " less [CLS] and [SEP]" : ""));
}

}  // namespace

void check_data(const DataConfig& d) {
  check_windows(d);
  if (d.vocab.source == "tokenizer" && d.tokenizer.type != "wordpiece")
    config_fail("data.vocab.source", "\"tokenizer\" takes the ids of a WordPiece vocab.txt; data.tokenizer.type is '" +
                                         d.tokenizer.type + "', not \"wordpiece\"");
  if (d.special_tokens && d.vocab.source != "tokenizer")
    config_fail("data.special_tokens", "needs the [CLS] and [SEP] of a WordPiece vocabulary: set data.vocab.source to "
                                       "\"tokenizer\"");
  if (!d.text_pair_column.empty() || !d.text_pair_field.empty()) {
    if (!d.special_tokens)
      config_fail(d.text_pair_column.empty() ? "data.text_pair_field" : "data.text_pair_column",
                  "sentence pairs are joined as [CLS] a [SEP] b [SEP]: set data.special_tokens (a bert model sets it)");
    if (d.truncation != "head")
      config_fail("data.truncation", "sentence pairs are truncated longest first, from the end (\"head\"); got '" +
                                         d.truncation + "'");
  }
  const bool pairs = !d.text_pair_column.empty() || !d.text_pair_field.empty();
  if (d.special_tokens && d.max_len != 0 && d.max_len < (pairs ? 3 : 2))
    config_fail("data.max_len", fmt::format("counts [CLS] and [SEP]{}: it must be at least {} (got {})",
                                            pairs ? " (and the second [SEP] of a pair)" : "", pairs ? 3 : 2,
                                            d.max_len));
}

namespace {

void check_threshold_value(const nlohmann::json& v, const std::string& key) {
  if (!v.is_number() || !(v.get<double>() > 0 && v.get<double>() < 1))
    config_fail(key, "must be a number in (0, 1), got " + v.dump());
}

// task.threshold: a number, "tune" or {label: number}.
void read_threshold(const nlohmann::json& v, TaskConfig& t) {
  if (v.is_null()) return;
  if (v.is_string()) {
    if (v.get<std::string>() != "tune")
      config_fail("task.threshold",
                  "unknown value " + v.dump() + "; use a number in (0, 1), {label: number} or \"tune\"");
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) check_threshold_value(it.value(), "task.threshold." + it.key());
  } else {
    check_threshold_value(v, "task.threshold");
  }
  t.threshold = v;
  const bool uniform = t.threshold.is_number();
  if (!uniform && t.type != "binary" && t.type != "multilabel")
    config_fail(
        "task.threshold",
        "a threshold by label or \"tune\" applies to binary and multilabel tasks (task.type is '" + t.type + "')");
}

}  // namespace

void read_task(JsonReader r, TaskConfig& t) {
  read_fields(r, t, task_fields());
  const nlohmann::json& cw = r.raw("class_weights");
  if (!cw.is_null()) {
    if (cw.is_string()) {
      std::string v = cw.get<std::string>();
      if (v != "none" && v != "auto")
        config_fail("task.class_weights", "unknown value '" + v + "'; use \"none\", \"auto\" or {label: weight}");
    } else if (cw.is_object()) {
      for (auto it = cw.begin(); it != cw.end(); ++it)
        if (!it.value().is_number() || it.value().get<double>() < 0)
          config_fail("task.class_weights." + it.key(), "must be a number >= 0, got " + json_type_name(it.value()));
    } else {
      config_fail("task.class_weights",
                  "expected \"none\", \"auto\" or an object {label: weight}, got " + json_type_name(cw));
    }
    t.class_weights = cw;
  }
  read_threshold(r.raw("threshold"), t);
  r.finish();
  if (t.label_separator.size() != 1 || t.label_separator == "\t" || t.label_separator == "\n")
    config_fail("task.label_separator",
                "must be one character other than tab or newline (got '" + t.label_separator + "')");
  const bool regression = t.type == "regression";
  if (!regression && t.loss == "mse") t.loss = "auto";  // what runs made before class tasks had a loss key hold
  if (regression ? (t.loss == "cross_entropy" || t.loss == "squared_hinge")
                 : (t.loss == "l1" || t.loss == "huber" || (t.type == "mlm" && t.loss == "squared_hinge")))
    config_fail("task.loss", "'" + t.loss + "' is not a loss of a " + t.type + " task; " +
                                 (regression ? "regression takes mse, l1 or huber"
                                  : t.type == "mlm" ? "mlm takes cross_entropy"
                                                    : "it takes cross_entropy or squared_hinge"));
  if (t.label_smoothing > 0 && t.loss == "squared_hinge")
    config_fail("task.label_smoothing", "applies to cross_entropy, not to task.loss \"squared_hinge\"");
  if (t.label_smoothing > 0 && t.type != "multiclass")
    config_fail("task.label_smoothing", "applies to multiclass only (task.type is '" + t.type + "')");
  if (!t.positive_label.empty() && t.type != "binary")
    config_fail("task.positive_label", "applies to binary only (task.type is '" + t.type + "')");
  if ((t.type == "regression" || t.type == "mlm") &&
      !(t.class_weights.is_string() && t.class_weights.get<std::string>() == "none"))
    config_fail("task.class_weights", "a " + t.type + " task has no classes");
  if (t.word_segmenter != "wordpiece" && !t.whole_word)
    config_fail("task.word_segmenter", "applies with task.whole_word true");
  if (t.calibrate != "none" && t.type != "multiclass" && t.type != "binary" && t.type != "multilabel")
    config_fail("task.calibrate", "calibrates the probabilities of multiclass, binary and multilabel tasks, not of a " +
                                      t.type + " task");
  if (t.type != "mlm" && (t.whole_word || t.pack || t.mask_prob != 0.15))
    config_fail(t.whole_word ? "task.whole_word" : t.pack ? "task.pack" : "task.mask_prob",
                "applies to mlm only (task.type is '" + t.type + "')");
}

void read_optimizer(JsonReader r, OptimizerConfig& o) {
  read_fields(r, o, optimizer_fields());
  r.finish();
  if (o.type != "adagrad" && o.lr_decay != 0)
    config_fail("optimizer.lr_decay", "applies to adagrad only (optimizer.type is '" + o.type + "')");
  if (o.type != "sgd" && (o.momentum != 0 || o.nesterov))
    config_fail("optimizer.momentum", "applies to sgd only (optimizer.type is '" + o.type + "')");
  if (o.nesterov && o.momentum <= 0) config_fail("optimizer.nesterov", "needs optimizer.momentum > 0");
}

void read_scheduler(JsonReader r, SchedulerConfig& s) {
  read_fields(r, s, scheduler_fields());
  r.finish();
}

void read_trainer(JsonReader r, TrainerConfig& t) {
  read_fields(r, t, trainer_fields());
  r.finish();
  if (t.precision != "fp32" && t.dtype == "float64")
    config_fail("trainer.precision", "\"" + t.precision +
                                         "\" trains float32 weights in reduced-precision matrix products; "
                                         "trainer.dtype \"float64\" asks for float64 ones: set one of them back");
}

nlohmann::json write_sections(const Config& c) {
  nlohmann::json j = write_fields(c, top_fields());
  j["name"] = c.name;
  j["seed"] = c.seed;
  j["output_dir"] = c.output_dir;
  j["data"] = write_fields(c.data, data_fields());
  j["data"]["label_column"] = c.data.label_column;
  j["data"]["text_column"] = c.data.text_column;
  j["data"]["text_pair_column"] = c.data.text_pair_column;
  j["data"]["tokenizer"] = write_fields(c.data.tokenizer, tokenizer_fields());
  j["data"]["vocab"] = write_fields(c.data.vocab, vocab_fields());
  j["task"] = write_fields(c.task, task_fields());
  j["task"]["class_weights"] = c.task.class_weights;
  j["task"]["threshold"] = c.task.threshold;
  j["model"] = c.model.options;
  j["optimizer"] = write_fields(c.optimizer, optimizer_fields());
  j["scheduler"] = write_fields(c.scheduler, scheduler_fields());
  j["trainer"] = write_fields(c.trainer, trainer_fields());
  return j;
}

}  // namespace ltk::config_detail
