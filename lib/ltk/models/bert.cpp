#include "ltk/models/bert.h"

#include <ATen/autocast_mode.h>
#include <ATen/ops/_transformer_encoder_layer_fwd.h>
#include <fmt/format.h>
#include <torch/nn/init.h>
#include <torch/version.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/models/embeddings.h"

namespace ltk {

namespace {

namespace fs = std::filesystem;

constexpr int64_t MaskedLmIgnore = -100;  // the targets of unselected positions (MaskedLmTask::kIgnore)

torch::Tensor activate(const torch::Tensor& x, const std::string& act) {
  if (act == "gelu") return torch::gelu(x);
  if (act == "gelu_new") return torch::gelu(x, "tanh");
  return torch::relu(x);
}

/// m(x), computed in float32 and rounded once for a bf16 input in CPU inference (a bf16 artifact):
/// LibTorch 1.13's bf16 layer_norm kernel on the CPU is 2-4.5x slower than converting to float32,
/// normalising and converting back (python3-torch, rows of 128 to 768), and rounds more. Training
/// and autocast keep the module's own computation.
torch::Tensor layer_norm(torch::nn::LayerNorm m, const torch::Tensor& x) {
  if (x.scalar_type() != torch::kBFloat16 || !x.is_cpu() || torch::GradMode::is_enabled() ||
      at::autocast::is_cpu_enabled())
    return m->forward(x);
  return torch::layer_norm(x.to(torch::kFloat), m->options.normalized_shape(), m->weight.to(torch::kFloat),
                           m->bias.to(torch::kFloat), m->options.eps())
      .to(torch::kBFloat16);
}

/// One encoder layer, post-LayerNorm, with Hugging Face's module names (attention.self.query,
/// attention.output.dense, attention.output.LayerNorm, intermediate.dense, output.dense,
/// output.LayerNorm).
class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const BertConfig& c) : heads_(c.num_attention_heads), act_(c.hidden_act) {
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    auto norm = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)); };
    auto attention = register_module("attention", std::make_shared<torch::nn::Module>());
    auto self = attention->register_module("self", std::make_shared<torch::nn::Module>());
    query = self->register_module("query", torch::nn::Linear(H, H));
    key = self->register_module("key", torch::nn::Linear(H, H));
    value = self->register_module("value", torch::nn::Linear(H, H));
    auto attention_output = attention->register_module("output", std::make_shared<torch::nn::Module>());
    attention_dense = attention_output->register_module("dense", torch::nn::Linear(H, H));
    attention_norm = attention_output->register_module("LayerNorm", norm());
    auto intermediate = register_module("intermediate", std::make_shared<torch::nn::Module>());
    intermediate_dense = intermediate->register_module("dense", torch::nn::Linear(H, I));
    auto output = register_module("output", std::make_shared<torch::nn::Module>());
    output_dense = output->register_module("dense", torch::nn::Linear(I, H));
    output_norm = output->register_module("LayerNorm", norm());
    dropout = register_module("dropout", torch::nn::Dropout(c.hidden_dropout_prob));
    attention_dropout = register_module("attention_dropout", torch::nn::Dropout(c.attention_probs_dropout_prob));
  }

  /// x [B, T, H]; additive_mask [B, 1, 1, T] (0 on real keys, the dtype's lowest on padding);
  /// padding [B, T] true on padding.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& additive_mask, const torch::Tensor& padding) {
    const int64_t B = x.size(0), T = x.size(1), H = x.size(2), d = H / heads_;
    if (!is_training() && !torch::GradMode::is_enabled() && act_ != "gelu_new" && x.scalar_type() == torch::kFloat &&
        (!int8 || int8->empty())) {
      // Inference: LibTorch's fused encoder layer (the kernel nn.TransformerEncoderLayer's fast
      // path runs), the same post-LayerNorm computation with q, k, v in one projection.
      auto qkv_weight = torch::cat({query->weight, key->weight, value->weight});
      auto qkv_bias = torch::cat({query->bias, key->bias, value->bias});
      // A sample that is all padding (never one with [CLS]) attends to its first position rather
      // than to nothing, which the fused kernel would turn into NaN.
      auto keys = padding.clone();
      keys.select(1, 0).fill_(false);
      return at::_transformer_encoder_layer_fwd(
          x, H, heads_, qkv_weight, qkv_bias, attention_dense->weight, attention_dense->bias, act_ == "gelu",
          /*norm_first=*/false, attention_norm->options.eps(), attention_norm->weight, attention_norm->bias,
          output_norm->weight, output_norm->bias, intermediate_dense->weight, intermediate_dense->bias,
          output_dense->weight, output_dense->bias, keys, /*mask_type=*/1);
    }
    auto heads = [&](const torch::Tensor& t) { return t.view({B, T, heads_, d}).transpose(1, 2); };
    auto dense = [&](torch::nn::Linear& m, const torch::Tensor& in) {  // int8 in a deploy artifact
      return int8 && !int8->empty() ? int8->forward(*m, in) : m->forward(in);
    };
    torch::Tensor q, k, v;
    if (qkv_int8) {
      auto qkv = int8_linear(x, *qkv_int8).split(H, -1);
      q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
    } else {
      q = heads(dense(query, x)), k = heads(dense(key, x)), v = heads(dense(value, x));
    }
#if TORCH_VERSION_MAJOR >= 2
    // LibTorch 2.x: the fused kernel (flash / memory-efficient attention on a GPU).
    const double p = is_training() ? attention_dropout->options.p() : 0.0;
    auto context = at::scaled_dot_product_attention(q, k, v, additive_mask, p).transpose(1, 2).reshape({B, T, H});
#else
    auto scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d)) + additive_mask;
    auto probs = attention_dropout->forward(torch::softmax(scores, -1));
    auto context = torch::matmul(probs, v).transpose(1, 2).reshape({B, T, H});
#endif
    auto a = layer_norm(attention_norm, dropout->forward(dense(attention_dense, context)) + x);
    auto h = activate(dense(intermediate_dense, a), act_);
    return layer_norm(output_norm, dropout->forward(dense(output_dense, h)) + a);
  }

  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, attention_dense{nullptr}, intermediate_dense{nullptr},
      output_dense{nullptr};
  torch::nn::LayerNorm attention_norm{nullptr}, output_norm{nullptr};
  torch::nn::Dropout dropout{nullptr}, attention_dropout{nullptr};
  const Int8Layers* int8 = nullptr;            ///< the encoder's
  std::shared_ptr<const Int8Linear> qkv_int8;  ///< query, key and value in one (BertEncoderImpl::fuse_int8)

 private:
  int64_t heads_;
  std::string act_;
};
TORCH_MODULE(BertLayer);

double lowest(torch::ScalarType t) {
  switch (t) {
    case torch::kDouble: return std::numeric_limits<double>::lowest();
    case torch::kFloat: return std::numeric_limits<float>::lowest();
    case torch::kHalf: return -65504.0;
    default: return -3.38e38;  // bfloat16
  }
}

// The integer keys of the architecture, as config.json and the model section name them (the rest are numbers).
const char* const kIntKeys[] = {"vocab_size",           "hidden_size",     "num_hidden_layers",
                                "num_attention_heads",  "intermediate_size", "max_position_embeddings",
                                "type_vocab_size",      "pad_token_id"};

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

BertEncoderImpl::BertEncoderImpl(const BertConfig& c, bool with_pooler) : config(c) {
  const int64_t H = c.hidden_size;
  auto embeddings = register_module("embeddings", std::make_shared<torch::nn::Module>());
  word_embeddings = embeddings->register_module(
      "word_embeddings", torch::nn::Embedding(torch::nn::EmbeddingOptions(c.vocab_size, H).padding_idx(c.pad_token_id)));
  position_embeddings =
      embeddings->register_module("position_embeddings", torch::nn::Embedding(c.max_position_embeddings, H));
  token_type_embeddings = embeddings->register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab_size, H));
  embeddings_norm =
      embeddings->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)));
  embeddings_dropout = embeddings->register_module("dropout", torch::nn::Dropout(c.hidden_dropout_prob));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layer = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    BertLayer l(c);
    l->int8 = &int8;
    layer->push_back(l);
  }
  if (!with_pooler) return;
  auto pooler_module = register_module("pooler", std::make_shared<torch::nn::Module>());
  pooler = pooler_module->register_module("dense", torch::nn::Linear(H, H));
}

torch::Tensor BertEncoderImpl::forward(const Batch& batch) {
  const int64_t B = batch.ids.size(0), T = batch.ids.size(1);
  if (T > config.max_position_embeddings)
    throw TrainError(fmt::format("a batch of {} tokens per sample exceeds the model's max_position_embeddings {}; set "
                                 "data.max_len to at most {}",
                                 T, config.max_position_embeddings, config.max_position_embeddings));
  // The article's device-side assert, caught with a message: an id outside the embedding table.
  if (batch.ids.numel() > 0) {
    auto [lo, hi] = torch::aminmax(batch.ids);
    if (lo.item<int64_t>() < 0 || hi.item<int64_t>() >= config.vocab_size)
      throw TrainError(fmt::format("token id {} is outside the model's vocabulary of {} (data.tokenizer.dict must be "
                                   "the model's own vocab.txt)",
                                   lo.item<int64_t>() < 0 ? lo.item<int64_t>() : hi.item<int64_t>(), config.vocab_size));
  }
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(batch.ids.device());
  auto types = batch.token_types.defined() ? batch.token_types : torch::zeros({B, T}, opts);
  auto x = word_embeddings->forward(batch.ids) + token_type_embeddings->forward(types);
  x = x + position_embeddings->forward(torch::arange(T, opts)).unsqueeze(0);
  x = embeddings_dropout->forward(layer_norm(embeddings_norm, x));
  auto padding = batch.mask.logical_not();
  auto additive = torch::zeros({B, 1, 1, T}, x.options()).masked_fill(padding.view({B, 1, 1, T}), lowest(x.scalar_type()));
  for (const auto& l : *layer) x = l->as<BertLayer>()->forward(x, additive, padding);
  return x;
}

torch::Tensor BertEncoderImpl::pool(const torch::Tensor& hidden, const Batch& batch) {
  if (config.pooling == "cls") return torch::tanh(pooler->forward(hidden.select(1, 0)));
  auto w = batch.mask.unsqueeze(2).to(hidden.dtype());
  return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0);
}

BertClassifierImpl::BertClassifierImpl(const BertConfig& c, int64_t num_outputs) {
  bert = register_module("bert", BertEncoder(c));
  dropout = register_module("dropout",
                            torch::nn::Dropout(c.classifier_dropout >= 0 ? c.classifier_dropout : c.hidden_dropout_prob));
  classifier = register_module("classifier", torch::nn::Linear(c.hidden_size, num_outputs));
}

torch::Tensor BertClassifierImpl::forward(const Batch& batch) {
  auto hidden = bert->forward(batch);
  auto out = classifier->forward(dropout->forward(bert->pool(hidden, batch)));
  return out.scalar_type() == torch::kBFloat16 ? out.to(torch::kFloat) : out;  // scores and losses in float32
}

void BertEncoderImpl::fuse_int8() {
  for (const auto& m : *layer) {
    auto* l = m->as<BertLayer>();
    const Int8Linear *q = int8.find(*l->query), *k = int8.find(*l->key), *v = int8.find(*l->value);
    if (!q || !k || !v) continue;
    l->qkv_int8 = std::make_shared<const Int8Linear>(pack_linear(
        torch::cat({q->weight_int8, k->weight_int8, v->weight_int8}), torch::cat({q->scale, k->scale, v->scale}),
        torch::cat({l->query->bias, l->key->bias, l->value->bias}), "query, key and value"));
  }
}

void BertClassifierImpl::load_int8(
    const std::vector<std::pair<std::string, std::pair<torch::Tensor, torch::Tensor>>>& stored) {
  for (const auto& [name, values] : stored)
    if (name.rfind("bert.encoder.layer.", 0) != 0)
      throw CheckpointError(name +
                            ".weight_int8: only the encoder layers' Linear layers are int8 in a bert artifact; "
                            "the file is damaged, make it again with ltk-eval --quantize int8");
  bert->int8.load(*this, stored);
  bert->fuse_int8();
}

void BertClassifierImpl::quantize(const std::string& precision) {
  if (precision == "bf16") {
    to(torch::kBFloat16);
  } else if (precision == "int8") {
    bert->int8.quantize(*this, [](const std::string& name) { return name.rfind("bert.encoder.layer.", 0) == 0; });
    bert->fuse_int8();
  } else {
    throw ConfigError("deploy precision '" + precision + "': give bf16 or int8");
  }
}

BertMaskedLMImpl::BertMaskedLMImpl(const BertConfig& c) {
  bert = register_module("bert", BertEncoder(c, /*with_pooler=*/false));
  auto cls = register_module("cls", std::make_shared<torch::nn::Module>());
  auto predictions = cls->register_module("predictions", std::make_shared<torch::nn::Module>());
  auto t = predictions->register_module("transform", std::make_shared<torch::nn::Module>());
  transform = t->register_module("dense", torch::nn::Linear(c.hidden_size, c.hidden_size));
  transform_norm = t->register_module(
      "LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  bias = predictions->register_parameter("bias", torch::zeros({c.vocab_size}));
}

torch::Tensor BertMaskedLMImpl::forward(const Batch& batch) {
  if (!batch.labels.defined())
    throw TrainError("a masked-LM model predicts the positions the task selected (batch.labels); none are given");
  auto hidden = bert->forward(batch);
  auto selected = hidden.index({batch.labels != MaskedLmIgnore});  // [M, H]
  auto h = layer_norm(transform_norm, activate(transform->forward(selected), bert->config.hidden_act));
  return torch::nn::functional::linear(h, bert->word_embeddings->weight, bias);  // decoder tied to the embeddings
}

int64_t BertEncoderImpl::level(const std::string& name) const {
  const int64_t L = config.num_hidden_layers;
  if (name.rfind("bert.embeddings.", 0) == 0) return L + 1;
  static const std::string layer = "bert.encoder.layer.";
  if (name.rfind(layer, 0) == 0) return L - std::stoll(name.substr(layer.size()));
  return 0;  // the pooler and the head
}

int64_t BertMaskedLMImpl::level(const std::string& name) const { return bert->level(name); }

int64_t BertClassifierImpl::level(const std::string& name) const { return bert->level(name); }

nlohmann::json read_hf_config(const std::string& dir) {
  if (!fs::is_directory(dir))
    config_fail("model.pretrained_dir", dir + " is not a directory (a Hugging Face model directory with config.json)");
  const std::string path = dir + "/config.json";
  if (!fs::is_regular_file(path))
    config_fail("model.pretrained_dir", dir + " has no config.json: it is not a Hugging Face model directory, or its "
                                              "download is incomplete");
  nlohmann::json j = read_json_file(path);
  if (!j.is_object()) throw ConfigError(path + ": expected a JSON object");
  if (j.contains("model_type") && !j["model_type"].is_string())
    throw ConfigError(path + ": model_type must be a string, got " + json_type_name(j["model_type"]));
  std::string type = j.value("model_type", std::string("bert"));
  if (type != "bert")
    throw ConfigError(path + ": model_type '" + type + "' is not supported; ltk loads the BERT layout (model_type "
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
                          (it.value().is_string() ? "a string" : integer ? "an integer" : "a number") + ", got " +
                          (v->is_number() ? v->dump() : json_type_name(*v)));
      if (it.key() == "hidden_act" && *v != "gelu" && *v != "gelu_new" && *v != "relu")
        throw ConfigError(where + ": hidden_act " + v->dump() + " is not supported; ltk's BERT has gelu, gelu_new and relu");
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

std::shared_ptr<TextModel> build_bert(const nlohmann::json& options, const ModelContext& context) {
  BertConfig c = bert_config_from(options);
  if (c.vocab_size == 0) c.vocab_size = context.vocab_size;
  if (c.vocab_size != context.vocab_size)
    throw ConfigError(fmt::format("config key 'model.vocab_size': the model has {} token embeddings (config.json) but "
                                  "its vocabulary ({}) has {} tokens; they must agree",
                                  c.vocab_size, options.value("pretrained_dir", std::string()) + "/vocab.txt",
                                  context.vocab_size));
  if (c.pad_token_id >= c.vocab_size)
    throw ConfigError(fmt::format("config key 'model.pad_token_id': {} is not below vocab_size {}", c.pad_token_id,
                                  c.vocab_size));
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
    if (name.size() >= 16 && name.compare(name.size() - 16, 16, "LayerNorm.weight") == 0) p.value().fill_(1.0);
    else if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) p.value().zero_();
    else p.value().normal_(0.0, range);
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

void check_bert(const nlohmann::json& options, const Config& config) {
  const int64_t max_pos = options.at("max_position_embeddings").get<int64_t>();
  if (config.data.max_len == 0 || config.data.max_len > max_pos)
    config_fail("data.max_len", fmt::format("must be between 1 and the model's max_position_embeddings ({}) for a "
                                            "bert model (got {})",
                                            max_pos, config.data.max_len));
  bool pairs = !config.data.text_pair_column.empty() || !config.data.text_pair_field.empty();
  if (pairs && config.task.type == "mlm")
    config_fail("data.text_pair_column", "mlm pretraining reads single texts (task.pack joins several into one sequence)");
  if (pairs && options.at("type_vocab_size").get<int64_t>() < 2)
    config_fail("data.text_pair_column", "sentence pairs need token type 1, but the model's type_vocab_size is 1");
}


void complete_bert(const nlohmann::json& options, const nlohmann::json& document, Config& config) {
  const std::string dir = options.at("pretrained_dir").get<std::string>();
  TokenizerConfig& tok = config.data.tokenizer;
  if (!written(document, {"data", "tokenizer", "type"})) tok.type = "wordpiece";
  else if (tok.type != "wordpiece")
    config_fail("data.tokenizer.type", "a bert model reads the WordPiece pieces of its vocab.txt; use \"wordpiece\" "
                                       "(or leave the key out), not '" + tok.type + "'");
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
      throw ConfigError(dir + "/tokenizer_config.json: do_lower_case true with strip_accents false is not supported "
                              "(ltk's WordPiece strips accents whenever it lowercases)");
  }
  if (!written(document, {"data", "tokenizer", "tokenize_chinese_chars"}))
    tok.tokenize_chinese_chars = flag("tokenize_chinese_chars", true);
  if (!written(document, {"data", "vocab", "source"})) config.data.vocab.source = "tokenizer";
  else if (config.data.vocab.source != "tokenizer")
    config_fail("data.vocab.source", "a bert model's ids are its vocab.txt's: use \"tokenizer\" (or leave it out)");
  if (!written(document, {"data", "special_tokens"})) config.data.special_tokens = true;
  else if (!config.data.special_tokens)
    config_fail("data.special_tokens", "a bert model reads [CLS] text [SEP]: leave it true (or out)");
  if (!written(document, {"data", "max_len"}))
    config.data.max_len = options.at("max_position_embeddings").get<int64_t>();
  // Fine-tuning buckets by length (docs/sweeps.md: 3.0x faster on fortunes_en, accuracy within
  // the seeds' noise); masked-LM pretraining packs its texts instead.
  if (!written(document, {"trainer", "bucket_pool"}) && config.task.type != "mlm") config.trainer.bucket_pool = 50;
}

}  // namespace ltk
