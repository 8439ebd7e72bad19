// The bert model section of a config: read and checked (resolve_bert), completed from a Hugging
// Face directory's config.json and tokenizer_config.json (read_hf_config, complete_bert), checked
// against the data (check_bert), turned into the architecture (bert_config_from), and the model
// built from it with Hugging Face's initialisation (build_bert). The modules themselves are in bert.cpp.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <iterator>

#include "ltk/core/error.h"
#include "ltk/models/bert.h"
#include "ltk/models/embeddings.h"

namespace ltk {

namespace {

namespace fs = std::filesystem;

// The integer keys of the architecture, as config.json and the model section name them (the rest are numbers).
const char* const kIntKeys[] = {"vocab_size",          "hidden_size",       "num_hidden_layers",
                                "num_attention_heads", "intermediate_size", "max_position_embeddings",
                                "type_vocab_size",     "pad_token_id"};

}  // namespace

BertConfig bert_config_from(const nlohmann::json& j) {
  BertConfig c;
  c.vocab_size = j.at("vocab_size").get<int64_t>();
  c.hidden_size = j.at("hidden_size").get<int64_t>();
  c.num_hidden_layers = j.at("num_hidden_layers").get<int64_t>();
  c.num_attention_heads = j.at("num_attention_heads").get<int64_t>();
  c.intermediate_size = j.at("intermediate_size").get<int64_t>();
  c.hidden_act = j.at("hidden_act").get<std::string>();
  c.layer_norm_eps = j.at("layer_norm_eps").get<double>();
  c.max_position_embeddings = j.at("max_position_embeddings").get<int64_t>();
  c.type_vocab_size = j.at("type_vocab_size").get<int64_t>();
  c.pad_token_id = j.at("pad_token_id").get<int64_t>();
  c.hidden_dropout_prob = j.at("hidden_dropout_prob").get<double>();
  c.attention_probs_dropout_prob = j.at("attention_probs_dropout_prob").get<double>();
  c.classifier_dropout = j.at("classifier_dropout").get<double>();
  c.pooling = j.at("pooling").get<std::string>();
  return c;
}

nlohmann::json read_hf_config(const std::string& dir) {
  if (!fs::is_directory(dir))
    config_fail("model.pretrained_dir", dir + " is not a directory (a Hugging Face model directory with config.json)");
  const std::string path = dir + "/config.json";
  if (!fs::is_regular_file(path))
    config_fail("model.pretrained_dir", dir +
                                            " has no config.json: it is not a Hugging Face model directory, or its "
                                            "download is incomplete");
  nlohmann::json j = read_json_file(path);
  if (!j.is_object()) throw ConfigError(path + ": expected a JSON object");
  if (j.contains("model_type") && !j["model_type"].is_string())
    throw ConfigError(path + ": model_type must be a string, got " + json_type_name(j["model_type"]));
  std::string type = j.value("model_type", std::string("bert"));
  if (type != "bert")
    throw ConfigError(path + ": model_type '" + type +
                      "' is not supported; ltk loads the BERT layout (model_type "
                      "\"bert\", which the chinese-roberta-wwm-ext family also uses)");
  if (j.contains("position_embedding_type") && !j["position_embedding_type"].is_null() &&
      j["position_embedding_type"] != "absolute")
    throw ConfigError(path + ": position_embedding_type '" + j["position_embedding_type"].dump() +
                      "' is not supported; ltk's BERT has absolute position embeddings");
  return j;
}

nlohmann::json resolve_bert(JsonReader& r) {
  std::string dir, pooling = "cls";
  bool freeze_embeddings = false;
  int64_t freeze_layers = 0;
  r.get("pretrained_dir", dir);
  r.get_enum("pooling", pooling, {"cls", "mean"});
  r.get("freeze_embeddings", freeze_embeddings);
  r.get("freeze_layers", freeze_layers);
  check_min(r.key_path("freeze_layers"), static_cast<double>(freeze_layers), 0);
  // The architecture: the section's keys, then config.json's for those it leaves out (a resolved
  // config has them all, so a trained run never needs its pretrained directory again).
  const BertConfig defaults;
  nlohmann::json arch = {{"vocab_size", defaults.vocab_size},
                         {"hidden_size", defaults.hidden_size},
                         {"num_hidden_layers", defaults.num_hidden_layers},
                         {"num_attention_heads", defaults.num_attention_heads},
                         {"intermediate_size", defaults.intermediate_size},
                         {"hidden_act", defaults.hidden_act},
                         {"layer_norm_eps", defaults.layer_norm_eps},
                         {"max_position_embeddings", defaults.max_position_embeddings},
                         {"type_vocab_size", defaults.type_vocab_size},
                         {"pad_token_id", defaults.pad_token_id},
                         {"hidden_dropout_prob", defaults.hidden_dropout_prob},
                         {"attention_probs_dropout_prob", defaults.attention_probs_dropout_prob},
                         {"classifier_dropout", defaults.classifier_dropout},
                         {"initializer_range", 0.02}};
  bool all_given = true;
  for (auto it = arch.begin(); it != arch.end(); ++it)
    if (r.raw(it.key().c_str()).is_null()) all_given = false;
  if (!dir.empty() && !all_given) {
    const nlohmann::json hf = read_hf_config(dir);
    const std::string where = dir + "/config.json";
    for (auto it = arch.begin(); it != arch.end(); ++it) {
      auto v = hf.find(it.key());
      if (v == hf.end() || v->is_null()) continue;
      const bool integer = std::find_if(std::begin(kIntKeys), std::end(kIntKeys),
                                        [&](const char* k) { return it.key() == k; }) != std::end(kIntKeys);
      bool ok = it.value().is_string() ? v->is_string() : integer ? v->is_number_integer() : v->is_number();
      if (!ok)
        throw ConfigError(where + ": '" + it.key() + "' must be " +
                          (it.value().is_string() ? "a string"
                           : integer              ? "an integer"
                                                  : "a number") +
                          ", got " + (v->is_number() ? v->dump() : json_type_name(*v)));
      if (it.key() == "hidden_act" && *v != "gelu" && *v != "gelu_new" && *v != "relu")
        throw ConfigError(where + ": hidden_act " + v->dump() +
                          " is not supported; ltk's BERT has gelu, gelu_new and relu");
      it.value() = *v;
    }
  }
  for (auto it = arch.begin(); it != arch.end(); ++it) {
    const char* key = it.key().c_str();
    if (it.value().is_string()) {
      std::string v = it.value();
      r.get(key, v);
      it.value() = v;
    } else if (std::find_if(std::begin(kIntKeys), std::end(kIntKeys), [&](const char* k) { return it.key() == k; }) !=
               std::end(kIntKeys)) {
      int64_t v = it.value().get<int64_t>();
      r.get(key, v);
      it.value() = v;
    } else {
      double v = it.value().get<double>();
      r.get(key, v);
      it.value() = v;
    }
  }
  const std::string act = arch["hidden_act"];
  if (act != "gelu" && act != "gelu_new" && act != "relu")
    config_fail(r.key_path("hidden_act"), "'" + act + "' is not supported; use gelu, gelu_new or relu");
  for (const char* k : {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                        "max_position_embeddings", "type_vocab_size"})
    check_min(r.key_path(k), arch[k].get<double>(), 1);
  check_min(r.key_path("vocab_size"), arch["vocab_size"].get<double>(), 0);
  check_min(r.key_path("pad_token_id"), arch["pad_token_id"].get<double>(), 0);
  check_min(r.key_path("layer_norm_eps"), arch["layer_norm_eps"].get<double>(), 0, false);
  for (const char* k : {"hidden_dropout_prob", "attention_probs_dropout_prob"}) {
    check_min(r.key_path(k), arch[k].get<double>(), 0);
    check_max(r.key_path(k), arch[k].get<double>(), 1, false);
  }
  check_max(r.key_path("classifier_dropout"), arch["classifier_dropout"].get<double>(), 1, false);
  if (arch["hidden_size"].get<int64_t>() % arch["num_attention_heads"].get<int64_t>() != 0)
    config_fail(r.key_path("num_attention_heads"),
                fmt::format("{} heads do not divide hidden_size {}", arch["num_attention_heads"].get<int64_t>(),
                            arch["hidden_size"].get<int64_t>()));
  if (freeze_layers > arch["num_hidden_layers"].get<int64_t>())
    config_fail(r.key_path("freeze_layers"), fmt::format("the model has {} layers; got {}",
                                                         arch["num_hidden_layers"].get<int64_t>(), freeze_layers));
  nlohmann::json out = arch;
  out["pretrained_dir"] = dir;
  out["pooling"] = pooling;
  out["freeze_embeddings"] = freeze_embeddings;
  out["freeze_layers"] = freeze_layers;
  return out;
}

void check_bert(const nlohmann::json& options, const Config& config) {
  const int64_t max_pos = options.at("max_position_embeddings").get<int64_t>();
  if (config.data.max_len == 0 || config.data.max_len > max_pos)
    config_fail("data.max_len", fmt::format("must be between 1 and the model's max_position_embeddings ({}) for a "
                                            "bert model (got {})",
                                            max_pos, config.data.max_len));
  bool pairs = !config.data.text_pair_column.empty() || !config.data.text_pair_field.empty();
  if (pairs && config.task.type == "mlm")
    config_fail("data.text_pair_column",
                "mlm pretraining reads single texts (task.pack joins several into one sequence)");
  if (pairs && options.at("type_vocab_size").get<int64_t>() < 2)
    config_fail("data.text_pair_column", "sentence pairs need token type 1, but the model's type_vocab_size is 1");
}

void complete_bert(const nlohmann::json& options, const nlohmann::json& document, Config& config) {
  const std::string dir = options.at("pretrained_dir").get<std::string>();
  TokenizerConfig& tok = config.data.tokenizer;
  if (!written(document, {"data", "tokenizer", "type"}))
    tok.type = "wordpiece";
  else if (tok.type != "wordpiece")
    config_fail("data.tokenizer.type",
                "a bert model reads the WordPiece pieces of its vocab.txt; use \"wordpiece\" "
                "(or leave the key out), not '" +
                    tok.type + "'");
  if (!written(document, {"data", "tokenizer", "dict"}) && !dir.empty()) {  // no directory: "" trains one
    if (!fs::is_regular_file(dir + "/vocab.txt"))
      config_fail("model.pretrained_dir", dir + " has no vocab.txt (ltk reads BERT's WordPiece vocabulary from it)");
    tok.dict = dir + "/vocab.txt";
  }
  // Casing as the directory's tokenizer_config.json says (Hugging Face's BertTokenizer defaults
  // otherwise: lowercase, accents stripped when lowercasing, CJK ideographs split).
  nlohmann::json tc = nlohmann::json::object();
  if (!dir.empty() && fs::is_regular_file(dir + "/tokenizer_config.json"))
    tc = read_json_file(dir + "/tokenizer_config.json");
  if (!tc.is_object()) throw ConfigError(dir + "/tokenizer_config.json: expected a JSON object");
  auto flag = [&](const char* key, bool fallback) {
    auto it = tc.find(key);
    if (it == tc.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) throw ConfigError(dir + "/tokenizer_config.json: '" + key + "' must be true or false");
    return it->get<bool>();
  };
  if (!written(document, {"data", "tokenizer", "lowercase"})) tok.lowercase = flag("do_lower_case", true);
  if (!written(document, {"data", "tokenizer", "strip_accents"})) {
    tok.strip_accents = flag("strip_accents", tok.lowercase);
    if (tok.lowercase && !tok.strip_accents)
      throw ConfigError(dir +
                        "/tokenizer_config.json: do_lower_case true with strip_accents false is not supported "
                        "(ltk's WordPiece strips accents whenever it lowercases)");
  }
  if (!written(document, {"data", "tokenizer", "tokenize_chinese_chars"}))
    tok.tokenize_chinese_chars = flag("tokenize_chinese_chars", true);
  if (!written(document, {"data", "vocab", "source"}))
    config.data.vocab.source = "tokenizer";
  else if (config.data.vocab.source != "tokenizer")
    config_fail("data.vocab.source", "a bert model's ids are its vocab.txt's: use \"tokenizer\" (or leave it out)");
  if (!written(document, {"data", "special_tokens"}))
    config.data.special_tokens = true;
  else if (!config.data.special_tokens)
    config_fail("data.special_tokens", "a bert model reads [CLS] text [SEP]: leave it true (or out)");
  if (!written(document, {"data", "max_len"}))
    config.data.max_len = options.at("max_position_embeddings").get<int64_t>();
  // Fine-tuning buckets by length (docs/sweeps.md: 3.0x faster on fortunes_en, accuracy within
  // the seeds' noise); masked-LM pretraining packs its texts instead.
  if (!written(document, {"trainer", "bucket_pool"}) && config.task.type != "mlm") config.trainer.bucket_pool = 50;
}

std::shared_ptr<TextModel> build_bert(const nlohmann::json& options, const ModelContext& context) {
  BertConfig c = bert_config_from(options);
  if (c.vocab_size == 0) c.vocab_size = context.vocab_size;
  if (c.vocab_size != context.vocab_size)
    throw ConfigError(
        fmt::format("config key 'model.vocab_size': the model has {} token embeddings (config.json) but "
                    "its vocabulary ({}) has {} tokens; they must agree",
                    c.vocab_size, options.value("pretrained_dir", std::string()) + "/vocab.txt", context.vocab_size));
  if (c.pad_token_id >= c.vocab_size)
    throw ConfigError(
        fmt::format("config key 'model.pad_token_id': {} is not below vocab_size {}", c.pad_token_id, c.vocab_size));
  std::shared_ptr<TextModel> model;
  torch::nn::Embedding word_embeddings{nullptr};
  if (context.masked_lm) {
    BertMaskedLM m(c);
    word_embeddings = m->bert->word_embeddings;
    model = m.ptr();
  } else {
    BertClassifier m(c, context.num_outputs);
    word_embeddings = m->bert->word_embeddings;
    model = m.ptr();
  }
  // Hugging Face's initialisation: normal(0, initializer_range) weights and embeddings, zero
  // biases and padding row, LayerNorm 1 and 0. A pretrained directory then overwrites the encoder.
  const double range = options.at("initializer_range").get<double>();
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    if (name.size() >= 16 && name.compare(name.size() - 16, 16, "LayerNorm.weight") == 0)
      p.value().fill_(1.0);
    else if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0)
      p.value().zero_();
    else
      p.value().normal_(0.0, range);
  }
  word_embeddings->weight[c.pad_token_id].zero_();
  const int64_t frozen = options.at("freeze_layers").get<int64_t>();
  for (auto& p : model->named_parameters()) {
    const int64_t level = model->level(p.key());
    bool embeddings = level == c.num_hidden_layers + 1;
    bool low_layer = p.key().rfind("bert.encoder.layer.", 0) == 0 && c.num_hidden_layers - level < frozen;
    if ((embeddings && options.at("freeze_embeddings").get<bool>()) || low_layer) p.value().set_requires_grad(false);
  }
  return model;
}

}  // namespace ltk
