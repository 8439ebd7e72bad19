#include "ltk/io/hf.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/serialize.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/io/checkpoint.h"
#include "ltk/io/safetensors.h"
#include "ltk/models/bert.h"

namespace ltk {

namespace fs = std::filesystem;

namespace {

std::string shape_str(torch::IntArrayRef s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// A stored name as ltk's BERT calls it; "" for what no ltk model has (the tied decoder, the
/// next-sentence head, position-id buffers).
std::string ltk_name(std::string n) {
  if (starts_with(n, "cls.predictions.decoder.") || starts_with(n, "cls.seq_relationship.")) return "";
  if (ends_with(n, "LayerNorm.gamma")) n = n.substr(0, n.size() - 5) + "weight";
  else if (ends_with(n, "LayerNorm.beta")) n = n.substr(0, n.size() - 4) + "bias";
  if (starts_with(n, "embeddings.") || starts_with(n, "encoder.") || starts_with(n, "pooler.")) n = "bert." + n;
  if (n == "bert.embeddings.position_ids" || n == "bert.embeddings.token_type_ids") return "";
  return n;
}

}  // namespace

std::string hf_weights_file(const std::string& dir) {
  for (const char* f : {"model.safetensors", "pytorch_model.bin"})
    if (fs::is_regular_file(dir + "/" + f)) return dir + "/" + f;
  if (fs::exists(dir + "/model.safetensors.index.json") || fs::exists(dir + "/pytorch_model.bin.index.json"))
    throw CheckpointError(dir + ": the weights are sharded (an *.index.json); ltk reads one model.safetensors or "
                                "pytorch_model.bin");
  throw CheckpointError(dir + " has no model.safetensors or pytorch_model.bin: the weights are missing (an "
                              "incomplete download?)");
}

std::vector<std::pair<std::string, torch::Tensor>> read_weights_file(const std::string& path,
                                                                     torch::ScalarType dtype) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  if (ends_with(path, ".safetensors")) {
    SafeTensorsFile file(path);
    for (const auto& name : file.names()) out.emplace_back(name, file.get(name, dtype));
    return out;
  }
  char magic[4] = {};
  std::ifstream(path, std::ios::binary).read(magic, 4);
  if (std::string(magic, 4) != std::string("PK\x03\x04", 4))
    throw CheckpointError(path + ": not the zip archive torch.save writes since PyTorch 1.6 (a legacy or truncated "
                                 "file); convert it once in Python: torch.save(torch.load(f), f), or use "
                                 "model.safetensors");
  for (auto& [name, tensor] : read_tensor_dict(path, "a state dict (name -> tensor)"))
    out.emplace_back(name, tensor.to(dtype));
  return out;
}

PretrainedLoad load_hf_bert(torch::nn::Module& model, const std::string& dir) {
  PretrainedLoad result;
  result.file = hf_weights_file(dir);
  std::map<std::string, torch::Tensor> expected;
  for (const auto& p : model.named_parameters()) expected[p.key()] = p.value();
  torch::ScalarType dtype = expected.empty() ? torch::kFloat : expected.begin()->second.scalar_type();
  std::map<std::string, torch::Tensor> stored;
  std::vector<std::string> problems;
  for (auto& [name, tensor] : read_weights_file(result.file, dtype)) {
    std::string n = ltk_name(name);
    if (n.empty() || (starts_with(n, "cls.") && !expected.count(n))) {  // pre-training heads a classifier ignores
      result.ignored.push_back(name);
      continue;
    }
    if (!expected.count(n)) {
      problems.push_back(fmt::format("unexpected tensor {} {}", name, shape_str(tensor.sizes())));
      continue;
    }
    stored[n] = tensor;
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, param] : expected) {
    const bool optional = starts_with(name, "classifier.") || starts_with(name, "bert.pooler.") || starts_with(name, "cls.");
    auto it = stored.find(name);
    if (it == stored.end()) {
      if (optional) result.initialised.push_back(name);
      else problems.push_back(fmt::format("missing tensor {} {}", name, shape_str(param.sizes())));
    } else if (it->second.sizes() != param.sizes()) {
      if (starts_with(name, "classifier.")) result.initialised.push_back(name + " (another number of labels)");
      else
        problems.push_back(fmt::format("{}: the file has {}, the model {}", name, shape_str(it->second.sizes()),
                                       shape_str(param.sizes())));
    } else {
      param.copy_(it->second);
      ++result.loaded;
    }
  }
  if (!problems.empty())
    throw CheckpointError(fmt::format("{} does not match the BERT its config.json describes: {}", result.file,
                                      fmt::join(problems, "; ")));
  return result;
}

void export_hf(const LoadedRun& run, const std::string& given) {
  check_float_run(run, "--export-hf");
  const Config& c = run.config;
  if (c.model.type != "bert")
    throw ConfigError("--export-hf writes a Hugging Face BERT directory; this run's model is '" + c.model.type +
                      "' (use --export for a Python export)");
  const nlohmann::json& m = c.model.options;
  const bool mlm = c.task.type == "mlm";
  if (!mlm && m.at("pooling") != "cls")
    throw ConfigError("--export-hf: the run pools by the mean of its tokens (model.pooling \"mean\"), which Hugging "
                      "Face's BertForSequenceClassification cannot compute (it pools [CLS]); train with pooling \"cls\" "
                      "to export");
  // Written beside, then swapped in whole: a crash leaves the old directory or the new one, never
  // a config.json without its weights (which would read as an incomplete download).
  const std::string final_dir =
      check_export_dir(given, {"config.json", "vocab.txt", "tokenizer_config.json", "model.safetensors"}, "--export-hf");
  const std::string tmp = final_dir + ".ltk-tmp";
  remove_tree(tmp);
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) throw Error("cannot create " + tmp + ": " + ec.message());
  try {  // (a full disk: the partial export goes, the old one stays)
    nlohmann::ordered_json config = {
        {"architectures", {mlm ? "BertForMaskedLM" : "BertForSequenceClassification"}}, {"model_type", "bert"}};
    for (const char* k : {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                          "hidden_act", "layer_norm_eps", "max_position_embeddings", "type_vocab_size", "pad_token_id",
                          "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range"})
      config[k] = m.at(k);
    config["vocab_size"] = run.vocab.size();
    config["classifier_dropout"] = m.at("classifier_dropout").get<double>() < 0 ? nlohmann::json() : m.at("classifier_dropout");
    config["position_embedding_type"] = "absolute";
    // The labels as transformers names them. Binary keeps ltk's single logit (BCE, as in the
    // article): one label, the positive one, with sigmoid semantics (multi_label_classification).
    nlohmann::ordered_json id2label = nlohmann::ordered_json::object(), label2id = nlohmann::ordered_json::object();
    const std::string& task = c.task.type;
    if (!mlm) {
      std::vector<std::string> names;
      if (task == "binary") names = {run.labels.name(run.task->target_encoder().positive)};
      else if (task == "regression") names = {"LABEL_0"};
      else names = run.labels.names();
      for (size_t i = 0; i < names.size(); ++i) {
        id2label[std::to_string(i)] = names[i];
        label2id[names[i]] = i;
    }
      config["id2label"] = id2label;
      config["label2id"] = label2id;
      config["problem_type"] = task == "regression" ? "regression"
                               : task == "multiclass" ? "single_label_classification"
                                                      : "multi_label_classification";
    }
    config["torch_dtype"] = "float32";
    write_file_atomic(tmp + "/config.json", config.dump(2) + "\n");
    run.vocab.save(tmp + "/vocab.txt");
    const TokenizerConfig& t = c.data.tokenizer;
    nlohmann::ordered_json tok = {{"tokenizer_class", "BertTokenizer"},
                                  {"do_lower_case", t.lowercase},
                                  {"strip_accents", t.lowercase ? nlohmann::json() : nlohmann::json(t.strip_accents)},
                                  {"tokenize_chinese_chars", t.tokenize_chinese_chars},
                                  {"model_max_length", c.data.max_len},
                                  {"unk_token", "[UNK]"},
                                  {"sep_token", "[SEP]"},
                                  {"pad_token", "[PAD]"},
                                  {"cls_token", "[CLS]"},
                                  {"mask_token", "[MASK]"}};
    write_file_atomic(tmp + "/tokenizer_config.json", tok.dump(2) + "\n");
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& p : run.model->named_parameters()) tensors.emplace_back(p.key(), p.value().to(torch::kFloat));
    write_safetensors(tmp + "/model.safetensors", tensors, {{"format", "pt"}});
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  replace_directory_durable(tmp, final_dir);
}

}  // namespace ltk
