#include "ltk/models/registry.h"

#include "ltk/core/strings.h"
#include "ltk/models/bow.h"
#include "ltk/models/rnn.h"
#include "ltk/models/textcnn.h"
#include "ltk/models/transformer.h"

namespace ltk {

const std::vector<ModelEntry>& model_registry() {
  static const std::vector<ModelEntry> entries = {
      {"bow", "mean of word (and hashed n-gram) embeddings over the real tokens, then a linear layer", resolve_bow,
       build_bow},
      {"textcnn", "convolutions of several widths, max over time (Kim 2014)", resolve_textcnn, build_textcnn},
      {"rnn", "LSTM or GRU over packed sequences, last/max/mean pooling", resolve_rnn, build_rnn},
      {"transformer", "Transformer encoder from scratch, CLS or mean pooling", resolve_transformer, build_transformer},
  };
  return entries;
}

static const ModelEntry& find_entry(const std::string& type, const std::string& path) {
  std::vector<std::string> names;
  for (const auto& e : model_registry()) {
    if (e.name == type) return e;
    names.push_back(e.name);
  }
  config_fail(path + ".type", "unknown model '" + type + "'" + did_you_mean(type, names) +
                                  "; models: " + quoted_list(names));
}

ModelConfig resolve_model_config(const nlohmann::json& section, const std::string& path) {
  JsonReader r(section, path);
  ModelConfig config;
  r.get("type", config.type);
  const ModelEntry& entry = find_entry(config.type, path);
  // Keys every model has: where its weights start from and which stay fixed.
  r.get("init_from", config.init_from);
  r.get("init_strict", config.init_strict);
  const nlohmann::json& freeze = r.raw("freeze");
  if (!freeze.is_null()) {
    if (!freeze.is_array()) config_fail(path + ".freeze", "expected an array of parameter name prefixes");
    for (const auto& f : freeze) {
      if (!f.is_string()) config_fail(path + ".freeze", "expected strings, found " + json_type_name(f));
      config.freeze.push_back(f.get<std::string>());
    }
  }
  config.options = entry.resolve(r);
  r.finish();
  config.options["type"] = config.type;
  config.options["init_from"] = config.init_from;
  config.options["init_strict"] = config.init_strict;
  config.options["freeze"] = config.freeze;
  return config;
}

std::shared_ptr<TextModel> build_model(const ModelConfig& config, const ModelContext& context) {
  return find_entry(config.type, "model").build(config.options, context);
}

}  // namespace ltk
