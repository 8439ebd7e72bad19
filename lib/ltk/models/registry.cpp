#include "ltk/models/registry.h"

#include "ltk/core/strings.h"
#include "ltk/models/bert.h"
#include "ltk/models/bow.h"
#include "ltk/models/linear.h"
#include "ltk/models/rnn.h"
#include "ltk/models/textcnn.h"
#include "ltk/models/transformer.h"

namespace ltk {

const std::vector<ModelEntry>& model_registry() {
  static const std::vector<ModelEntry> entries = {
      {"linear", "tf-idf word and character n-grams into one linear layer: the traditional baseline "
                 "(scikit-learn's TfidfVectorizer + LinearSVC or LogisticRegression)",
       resolve_linear, build_linear, check_linear, complete_linear},
      {"bow", "mean of word (and hashed n-gram) embeddings over the real tokens, then a linear layer", resolve_bow,
       build_bow, check_bow, nullptr},
      {"textcnn", "convolutions of several widths, max over time (Kim 2014)", resolve_textcnn, build_textcnn, nullptr, nullptr},
      {"rnn", "LSTM or GRU over packed sequences, last/max/mean pooling", resolve_rnn, build_rnn, nullptr, complete_rnn},
      {"transformer", "Transformer encoder from scratch, CLS or mean pooling", resolve_transformer, build_transformer,
       check_transformer, nullptr},
      {"bert", "BERT (Hugging Face's BertForSequenceClassification), pretrained from a Hugging Face directory or not",
       resolve_bert, build_bert, check_bert, complete_bert},
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

namespace {

class RegistrySchema final : public ModelSchema {
 public:
  nlohmann::json resolve(const std::string& type, JsonReader& section) const override {
    return find_entry(type, "model").resolve(section);
  }
  void check(const Config& config) const override {
    const ModelEntry& entry = find_entry(config.model.type, "model");
    if (config.task.type == "mlm" && config.model.type != "bert")
      config_fail("task.type", "\"mlm\" pretrains a bert model; model.type is '" + config.model.type + "'");
    if (config.optimizer.type == "dual_cd" && config.model.type != "linear")
      config_fail("optimizer.type", "\"dual_cd\" solves the linear model exactly; model.type '" + config.model.type +
                                        "' trains with sgd, adam, adamw or adagrad");
    if (entry.check) entry.check(config.model.options, config);
  }
  void complete(const nlohmann::json& document, Config& config) const override {
    const ModelEntry& entry = find_entry(config.model.type, "model");
    if (entry.complete) entry.complete(config.model.options, document, config);
  }
};

}  // namespace

const ModelSchema& model_schema() {
  static const RegistrySchema schema;
  return schema;
}

ModelConfig resolve_model_config(const nlohmann::json& section) { return parse_model_section(section, model_schema()); }

Config parse_config(const nlohmann::json& j, const std::string& default_name) {
  return parse_config(j, model_schema(), default_name);
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return load_config(path, overrides, model_schema());
}

std::shared_ptr<TextModel> build_model(const ModelConfig& config, const ModelContext& context) {
  return find_entry(config.type, "model").build(config.options, context);
}

}  // namespace ltk
