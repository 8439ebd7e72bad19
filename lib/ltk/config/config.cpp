#include "ltk/config/config.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ltk/config/json_reader.h"
#include "ltk/core/strings.h"

namespace ltk {

namespace {

void parse_data(JsonReader r, DataConfig& d) {
  r.get("train", d.train);
  r.get("valid", d.valid);
  r.get("test", d.test);
  r.get_enum("format", d.format, {"auto", "tsv", "csv", "jsonl"});
  r.get("header", d.header);
  for (auto [key, out] : {std::pair<const char*, std::string*>{"label_column", &d.label_column},
                          {"text_column", &d.text_column}}) {
    const nlohmann::json& v = r.raw(key);
    if (v.is_null()) continue;
    if (v.is_number_integer() && v.get<int64_t>() >= 0) {
      *out = std::to_string(v.get<int64_t>());
    } else if (v.is_string()) {
      *out = v.get<std::string>();  // "" = the default column
    } else {
      config_fail(r.key_path(key), "expected a column name or a 0-based index, got " + json_type_name(v));
    }
  }
  r.get("label_field", d.label_field);
  r.get("text_field", d.text_field);
  r.get_enum("on_bad_row", d.on_bad_row, {"error", "skip"});
  {
    JsonReader t = r.child("tokenizer");
    t.get_enum("type", d.tokenizer.type, {"basic", "whitespace", "char", "jieba", "wordpiece", "sentencepiece"});
    t.get("dict", d.tokenizer.dict);
    if (d.tokenizer.type == "wordpiece" && d.tokenizer.dict.empty())
      config_fail(t.key_path("dict"), "wordpiece needs a BERT-style vocab.txt (one token per line, with [UNK])");
    t.get("lowercase", d.tokenizer.lowercase);
    t.get("nfkc", d.tokenizer.nfkc);
    t.get("strip_accents", d.tokenizer.strip_accents);
    t.get("vocab_size", d.tokenizer.vocab_size);
    if (d.tokenizer.vocab_size < 2) config_fail(t.key_path("vocab_size"), "must be at least 2");
    t.get_enum("model_type", d.tokenizer.model_type, {"unigram", "bpe"});
    t.get("character_coverage", d.tokenizer.character_coverage);
    if (!(d.tokenizer.character_coverage > 0 && d.tokenizer.character_coverage <= 1))
      config_fail(t.key_path("character_coverage"), "must be in (0, 1]");
    t.finish();
  }
  {
    JsonReader v = r.child("vocab");
    v.get("min_freq", d.vocab.min_freq);
    check_min(v.key_path("min_freq"), d.vocab.min_freq, 1);
    v.get("max_size", d.vocab.max_size);
    if (d.vocab.max_size != 0) check_min(v.key_path("max_size"), d.vocab.max_size, 3);
    v.finish();
  }
  r.get("max_len", d.max_len);
  check_min(r.key_path("max_len"), d.max_len, 0);
  r.get_enum("truncation", d.truncation, {"head", "tail", "head+tail"});
  r.finish();
  if (d.train.empty()) config_fail("data.train", "is required: the path of the training file");
}

void parse_optimizer(JsonReader r, OptimizerConfig& o) {
  r.get_enum("type", o.type, {"sgd", "adam", "adamw", "adagrad"});
  r.get("lr", o.lr);
  check_min(r.key_path("lr"), o.lr, 0, /*inclusive=*/false);
  r.get("weight_decay", o.weight_decay);
  check_min(r.key_path("weight_decay"), o.weight_decay, 0);
  r.get("momentum", o.momentum);
  check_min(r.key_path("momentum"), o.momentum, 0);
  r.get("nesterov", o.nesterov);
  r.get("beta1", o.beta1);
  r.get("beta2", o.beta2);
  for (const char* k : {"beta1", "beta2"}) {
    double v = std::string(k) == "beta1" ? o.beta1 : o.beta2;
    check_min(r.key_path(k), v, 0);
    check_max(r.key_path(k), v, 1, /*inclusive=*/false);
  }
  r.get("eps", o.eps);
  check_min(r.key_path("eps"), o.eps, 0, /*inclusive=*/false);
  r.get("lr_decay", o.lr_decay);
  check_min(r.key_path("lr_decay"), o.lr_decay, 0);
  r.get("no_decay_bias_norm", o.no_decay_bias_norm);
  r.finish();
  if (o.type != "adagrad" && o.lr_decay != 0)
    config_fail("optimizer.lr_decay", "applies to adagrad only (optimizer.type is '" + o.type + "')");
  if (o.type != "sgd" && (o.momentum != 0 || o.nesterov))
    config_fail("optimizer.momentum", "applies to sgd only (optimizer.type is '" + o.type + "')");
  if (o.nesterov && o.momentum <= 0)
    config_fail("optimizer.nesterov", "needs optimizer.momentum > 0");
}

void parse_task(JsonReader r, TaskConfig& t) {
  r.get_enum("type", t.type, {"multiclass", "binary", "multilabel", "regression"});
  r.get_enum("reduction", t.reduction, {"mean", "sum"});
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
      config_fail("task.class_weights", "expected \"none\", \"auto\" or an object {label: weight}, got " +
                                            json_type_name(cw));
    }
    t.class_weights = cw;
  }
  r.get("label_smoothing", t.label_smoothing);
  check_min(r.key_path("label_smoothing"), t.label_smoothing, 0);
  check_max(r.key_path("label_smoothing"), t.label_smoothing, 1, /*inclusive=*/false);
  r.get("threshold", t.threshold);
  check_min(r.key_path("threshold"), t.threshold, 0, /*inclusive=*/false);
  check_max(r.key_path("threshold"), t.threshold, 1, /*inclusive=*/false);
  r.get("positive_label", t.positive_label);
  r.get("label_separator", t.label_separator);
  if (t.label_separator.size() != 1 || t.label_separator == "\t" || t.label_separator == "\n")
    config_fail("task.label_separator", "must be one character other than tab or newline (got '" + t.label_separator + "')");
  r.get_enum("loss", t.loss, {"mse", "l1", "huber"});
  r.get("huber_delta", t.huber_delta);
  check_min(r.key_path("huber_delta"), t.huber_delta, 0, /*inclusive=*/false);
  r.finish();
  if (t.label_smoothing > 0 && t.type != "multiclass")
    config_fail("task.label_smoothing", "applies to multiclass only (task.type is '" + t.type + "')");
  if (!t.positive_label.empty() && t.type != "binary")
    config_fail("task.positive_label", "applies to binary only (task.type is '" + t.type + "')");
  if (t.type == "regression" && !(t.class_weights.is_string() && t.class_weights.get<std::string>() == "none"))
    config_fail("task.class_weights", "a regression task has no classes");
}

void parse_trainer(JsonReader r, TrainerConfig& t) {
  r.get("epochs", t.epochs);
  check_min(r.key_path("epochs"), t.epochs, 1);
  r.get("batch_size", t.batch_size);
  check_min(r.key_path("batch_size"), t.batch_size, 1);
  r.get("eval_batch_size", t.eval_batch_size);
  check_min(r.key_path("eval_batch_size"), t.eval_batch_size, 1);
  r.get("shuffle", t.shuffle);
  r.get("drop_last", t.drop_last);
  r.get("log_every", t.log_every);
  check_min(r.key_path("log_every"), t.log_every, 1);
  r.get_enum("select_metric", t.select_metric, {"auto", "accuracy", "macro_f1", "loss", "mae", "rmse"});
  r.get_enum("select_mode", t.select_mode, {"auto", "max", "min"});
  r.get("accumulate", t.accumulate);
  check_min(r.key_path("accumulate"), t.accumulate, 1);
  r.get("clip_norm", t.clip_norm);
  check_min(r.key_path("clip_norm"), t.clip_norm, 0);
  r.get("clip_value", t.clip_value);
  check_min(r.key_path("clip_value"), t.clip_value, 0);
  r.get("eval_every", t.eval_every);
  check_min(r.key_path("eval_every"), t.eval_every, 0);
  r.get("checkpoint_every", t.checkpoint_every);
  check_min(r.key_path("checkpoint_every"), t.checkpoint_every, 0);
  r.get("patience", t.patience);
  check_min(r.key_path("patience"), t.patience, 0);
  r.get("min_delta", t.min_delta);
  check_min(r.key_path("min_delta"), t.min_delta, 0);
  r.get("keep_best", t.keep_best);
  check_min(r.key_path("keep_best"), t.keep_best, 1);
  r.get_enum("on_nonfinite", t.on_nonfinite, {"stop", "skip"});
  r.get_enum("sampler", t.sampler, {"random", "balanced"});
  r.get_enum("progress", t.progress, {"auto", "bar", "lines"});
  r.get("bucket_pool", t.bucket_pool);
  check_min(r.key_path("bucket_pool"), t.bucket_pool, 0);
  r.get("max_tokens", t.max_tokens);
  check_min(r.key_path("max_tokens"), t.max_tokens, 0);
  r.finish();
}

}  // namespace

ModelConfig parse_model_section(const nlohmann::json& section, const ModelSchema& models) {
  JsonReader r(section, "model");
  ModelConfig config;
  r.get("type", config.type);
  // Keys every model has: where its weights start from and which stay fixed.
  r.get("init_from", config.init_from);
  r.get("init_strict", config.init_strict);
  const nlohmann::json& freeze = r.raw("freeze");
  if (!freeze.is_null()) {
    if (!freeze.is_array()) config_fail("model.freeze", "expected an array of parameter name prefixes");
    for (const auto& f : freeze) {
      if (!f.is_string()) config_fail("model.freeze", "expected strings, found " + json_type_name(f));
      config.freeze.push_back(f.get<std::string>());
    }
  }
  config.options = models.resolve(config.type, r);
  r.finish();
  config.options["type"] = config.type;
  config.options["init_from"] = config.init_from;
  config.options["init_strict"] = config.init_strict;
  config.options["freeze"] = config.freeze;
  return config;
}

Config parse_config(const nlohmann::json& j, const ModelSchema& models, const std::string& default_name) {
  Config c;
  JsonReader r(j, "");
  c.name = default_name;
  r.get("name", c.name);
  if (c.name.empty() || c.name.find('/') != std::string::npos)
    config_fail("name", "must be a non-empty name without '/' (got '" + c.name + "')");
  int64_t seed = static_cast<int64_t>(c.seed);
  r.get("seed", seed);
  check_min("seed", seed, 0);
  c.seed = static_cast<uint64_t>(seed);
  r.get("device", c.device);
  r.get("threads", c.threads);
  check_min("threads", c.threads, 0);
  c.output_dir = "runs/" + c.name;
  r.get("output_dir", c.output_dir);
  r.get_enum("log_level", c.log_level, {"debug", "info", "warn", "error", "off"});
  parse_data(r.child("data"), c.data);
  parse_task(r.child("task"), c.task);
  c.model = parse_model_section(r.raw("model"), models);
  parse_optimizer(r.child("optimizer"), c.optimizer);
  {
    JsonReader s = r.child("scheduler");
    auto& sc = c.scheduler;
    s.get_enum("type", sc.type, {"constant", "step", "cosine", "linear", "plateau"});
    s.get("warmup_steps", sc.warmup_steps);
    check_min(s.key_path("warmup_steps"), sc.warmup_steps, 0);
    s.get("warmup_ratio", sc.warmup_ratio);
    check_min(s.key_path("warmup_ratio"), sc.warmup_ratio, 0);
    check_max(s.key_path("warmup_ratio"), sc.warmup_ratio, 1, /*inclusive=*/false);
    s.get("step_size", sc.step_size);
    check_min(s.key_path("step_size"), sc.step_size, 1);
    s.get("gamma", sc.gamma);
    check_min(s.key_path("gamma"), sc.gamma, 0, /*inclusive=*/false);
    s.get("min_lr", sc.min_lr);
    check_min(s.key_path("min_lr"), sc.min_lr, 0);
    s.get("factor", sc.factor);
    check_min(s.key_path("factor"), sc.factor, 0, /*inclusive=*/false);
    check_max(s.key_path("factor"), sc.factor, 1, /*inclusive=*/false);
    s.get("patience", sc.patience);
    check_min(s.key_path("patience"), sc.patience, 0);
    s.finish();
  }
  parse_trainer(r.child("trainer"), c.trainer);
  r.finish();
  // Checks that span sections.
  models.check(c);
  const std::string& m = c.trainer.select_metric;
  bool regression = c.task.type == "regression";
  if (regression && (m == "accuracy" || m == "macro_f1"))
    config_fail("trainer.select_metric", "'" + m + "' needs classes; a regression task selects by loss, mae or rmse");
  if (!regression && (m == "mae" || m == "rmse"))
    config_fail("trainer.select_metric", "'" + m + "' applies to regression; use accuracy, macro_f1 or loss");
  return c;
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("cannot open config file " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // Turn the byte offset into line:column.
    size_t line = 1, col = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    std::string what = e.what();
    auto pos = what.find("parse error");
    if (pos != std::string::npos) what = what.substr(pos);
    throw ConfigError(fmt::format("{}:{}:{}: invalid JSON: {}", path, line, col, what));
  }
}

void apply_override(nlohmann::json& j, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--set '" + assignment + "': expected key.path=value, e.g. --set trainer.epochs=3");
  std::string key = assignment.substr(0, eq);
  std::string value = assignment.substr(eq + 1);
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(value);
  } catch (const nlohmann::json::parse_error&) {
    parsed = value;  // a bare word is a string
  }
  nlohmann::json* node = &j;
  auto parts = split(key, '.');
  std::string walked;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string part(parts[i]);
    if (part.empty()) throw ConfigError("--set '" + assignment + "': empty key component");
    if (!node->is_object()) {
      if (!node->is_null())
        throw ConfigError("--set '" + assignment + "': '" + walked + "' is not an object");
      *node = nlohmann::json::object();
    }
    walked += (walked.empty() ? "" : ".") + part;
    node = &(*node)[part];
  }
  *node = parsed;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides, const ModelSchema& models) {
  nlohmann::json j = read_json_file(path);
  if (!j.is_object()) throw ConfigError(path + ": the config must be a JSON object {...}");
  for (const auto& o : overrides) apply_override(j, o);
  std::string stem = std::filesystem::path(path).stem().string();
  try {
    return parse_config(j, models, stem);
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

nlohmann::json to_json(const Config& c) {
  nlohmann::json j;
  j["name"] = c.name;
  j["seed"] = c.seed;
  j["device"] = c.device;
  j["threads"] = c.threads;
  j["output_dir"] = c.output_dir;
  j["log_level"] = c.log_level;
  const auto& d = c.data;
  j["data"] = {{"train", d.train},
               {"valid", d.valid},
               {"test", d.test},
               {"format", d.format},
               {"header", d.header},
               {"label_column", d.label_column},
               {"text_column", d.text_column},
               {"label_field", d.label_field},
               {"text_field", d.text_field},
               {"on_bad_row", d.on_bad_row},
               {"tokenizer",
                {{"type", d.tokenizer.type},
                 {"dict", d.tokenizer.dict},
                 {"lowercase", d.tokenizer.lowercase},
                 {"nfkc", d.tokenizer.nfkc},
                 {"strip_accents", d.tokenizer.strip_accents},
                 {"vocab_size", d.tokenizer.vocab_size},
                 {"model_type", d.tokenizer.model_type},
                 {"character_coverage", d.tokenizer.character_coverage}}},
               {"vocab", {{"min_freq", d.vocab.min_freq}, {"max_size", d.vocab.max_size}}},
               {"max_len", d.max_len},
               {"truncation", d.truncation}};
  const auto& t = c.task;
  j["task"] = {{"type", t.type},
               {"reduction", t.reduction},
               {"class_weights", t.class_weights},
               {"label_smoothing", t.label_smoothing},
               {"threshold", t.threshold},
               {"positive_label", t.positive_label},
               {"label_separator", t.label_separator},
               {"loss", t.loss},
               {"huber_delta", t.huber_delta}};
  j["model"] = c.model.options;
  const auto& o = c.optimizer;
  j["optimizer"] = {{"type", o.type},         {"lr", o.lr},       {"weight_decay", o.weight_decay},
                    {"momentum", o.momentum}, {"nesterov", o.nesterov}, {"beta1", o.beta1},
                    {"beta2", o.beta2},       {"eps", o.eps},          {"lr_decay", o.lr_decay},
                    {"no_decay_bias_norm", o.no_decay_bias_norm}};
  const auto& sc = c.scheduler;
  j["scheduler"] = {{"type", sc.type},           {"warmup_steps", sc.warmup_steps}, {"warmup_ratio", sc.warmup_ratio},
                    {"step_size", sc.step_size}, {"gamma", sc.gamma},               {"min_lr", sc.min_lr},
                    {"factor", sc.factor},       {"patience", sc.patience}};
  const auto& tr = c.trainer;
  j["trainer"] = {{"epochs", tr.epochs},
                  {"batch_size", tr.batch_size},
                  {"eval_batch_size", tr.eval_batch_size},
                  {"shuffle", tr.shuffle},
                  {"drop_last", tr.drop_last},
                  {"log_every", tr.log_every},
                  {"select_metric", tr.select_metric},
                  {"select_mode", tr.select_mode},
                  {"accumulate", tr.accumulate},
                  {"clip_norm", tr.clip_norm},
                  {"clip_value", tr.clip_value},
                  {"eval_every", tr.eval_every},
                  {"checkpoint_every", tr.checkpoint_every},
                  {"patience", tr.patience},
                  {"min_delta", tr.min_delta},
                  {"keep_best", tr.keep_best},
                  {"on_nonfinite", tr.on_nonfinite},
                  {"sampler", tr.sampler},
                  {"progress", tr.progress},
                  {"bucket_pool", tr.bucket_pool},
                  {"max_tokens", tr.max_tokens}};
  return j;
}

}  // namespace ltk
