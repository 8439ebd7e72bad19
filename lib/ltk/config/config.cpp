#include "ltk/config/config.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ltk/config/json_reader.h"
#include "ltk/core/strings.h"
#include "ltk/models/registry.h"

namespace ltk {

namespace {

void parse_data(JsonReader r, DataConfig& d) {
  r.get("train", d.train);
  r.get("valid", d.valid);
  r.get("test", d.test);
  r.get_enum("format", d.format, {"tsv"});
  {
    JsonReader t = r.child("tokenizer");
    t.get_enum("type", d.tokenizer.type, {"basic", "whitespace", "char"});
    t.get("lowercase", d.tokenizer.lowercase);
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
  r.get_enum("type", o.type, {"sgd", "adam", "adamw"});
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
  r.finish();
  if (o.type != "sgd" && (o.momentum != 0 || o.nesterov))
    config_fail("optimizer.momentum", "applies to sgd only (optimizer.type is '" + o.type + "')");
  if (o.nesterov && o.momentum <= 0)
    config_fail("optimizer.nesterov", "needs optimizer.momentum > 0");
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
  r.get_enum("select_metric", t.select_metric, {"accuracy", "macro_f1", "loss"});
  r.finish();
}

}  // namespace

Config parse_config(const nlohmann::json& j, const std::string& default_name) {
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
  {
    JsonReader t = r.child("task");
    t.get_enum("type", c.task.type, {"multiclass"});
    t.get_enum("reduction", c.task.reduction, {"mean", "sum"});
    t.finish();
  }
  c.model = resolve_model_config(r.raw("model"), "model");
  parse_optimizer(r.child("optimizer"), c.optimizer);
  {
    JsonReader s = r.child("scheduler");
    s.get_enum("type", c.scheduler.type, {"constant", "linear"});
    s.get("warmup_steps", c.scheduler.warmup_steps);
    check_min(s.key_path("warmup_steps"), c.scheduler.warmup_steps, 0);
    s.finish();
  }
  parse_trainer(r.child("trainer"), c.trainer);
  r.finish();
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

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  nlohmann::json j = read_json_file(path);
  if (!j.is_object()) throw ConfigError(path + ": the config must be a JSON object {...}");
  for (const auto& o : overrides) apply_override(j, o);
  std::string stem = std::filesystem::path(path).stem().string();
  try {
    return parse_config(j, stem);
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
               {"tokenizer", {{"type", d.tokenizer.type}, {"lowercase", d.tokenizer.lowercase}}},
               {"vocab", {{"min_freq", d.vocab.min_freq}, {"max_size", d.vocab.max_size}}},
               {"max_len", d.max_len},
               {"truncation", d.truncation}};
  j["task"] = {{"type", c.task.type}, {"reduction", c.task.reduction}};
  j["model"] = c.model.options;
  const auto& o = c.optimizer;
  j["optimizer"] = {{"type", o.type},         {"lr", o.lr},       {"weight_decay", o.weight_decay},
                    {"momentum", o.momentum}, {"nesterov", o.nesterov}, {"beta1", o.beta1},
                    {"beta2", o.beta2},       {"eps", o.eps}};
  j["scheduler"] = {{"type", c.scheduler.type}, {"warmup_steps", c.scheduler.warmup_steps}};
  const auto& t = c.trainer;
  j["trainer"] = {{"epochs", t.epochs},
                  {"batch_size", t.batch_size},
                  {"eval_batch_size", t.eval_batch_size},
                  {"shuffle", t.shuffle},
                  {"drop_last", t.drop_last},
                  {"log_every", t.log_every},
                  {"select_metric", t.select_metric}};
  return j;
}

}  // namespace ltk
