#include "ltk/models/embeddings.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/strings.h"
#include "ltk/data/reader.h"

namespace ltk {

void resolve_embedding_keys(JsonReader& r, nlohmann::json& out) {
  std::string pretrained;
  bool freeze = false;
  r.get("pretrained", pretrained);
  r.get("freeze_embeddings", freeze);
  if (freeze && pretrained.empty())
    config_fail(r.key_path("freeze_embeddings"), "freezing needs pretrained vectors (set " + r.key_path("pretrained") + ")");
  if (!pretrained.empty() && !std::filesystem::is_regular_file(pretrained))
    config_fail(r.key_path("pretrained"), "file " + pretrained + " does not exist");
  out["pretrained"] = pretrained;
  out["freeze_embeddings"] = freeze;
}

PretrainedStats load_pretrained_vectors(torch::Tensor weight, const std::string& path, const Vocabulary& vocab) {
  const int64_t D = weight.size(1);
  std::string data = read_file(path);
  std::vector<char> seen(static_cast<size_t>(vocab.size()), 0);
  torch::NoGradGuard no_grad;
  auto acc = weight.accessor<float, 2>();
  int64_t line_no = 0;
  std::vector<float> values;
  for (std::string_view line : split(data, '\n')) {
    ++line_no;
    line = trim(line);
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) throw DataError(fmt::format("{}:{}: expected 'token v1 ... v{}'", path, line_no, D));
    std::string_view token = line.substr(0, sp);
    std::string rest(line.substr(sp + 1));
    values.clear();
    const char* p = rest.c_str();
    char* end = nullptr;
    while (true) {
      float v = std::strtof(p, &end);
      if (end == p) break;
      values.push_back(v);
      p = end;
    }
    while (*p == ' ' || *p == '\r' || *p == '\t') ++p;
    if (line_no == 1 && values.size() == 1 && *p == '\0') continue;  // word2vec header "count dim"
    if (*p != '\0') throw DataError(fmt::format("{}:{}: '{}' is not a number", path, line_no, std::string(p).substr(0, 20)));
    if (static_cast<int64_t>(values.size()) != D)
      throw DataError(fmt::format("{}:{}: vector of dimension {}, but the model's embed_dim is {}; set the model's "
                                  "embed_dim to {}",
                                  path, line_no, values.size(), D, values.size()));
    if (!vocab.contains(token)) continue;
    int32_t id = vocab.id(token);
    if (id == Vocabulary::kPadId || id >= weight.size(0)) continue;
    for (int64_t k = 0; k < D; ++k) acc[id][k] = values[static_cast<size_t>(k)];
    seen[static_cast<size_t>(id)] = 1;
  }
  PretrainedStats stats;
  for (int64_t i = 2; i < vocab.size(); ++i) (seen[static_cast<size_t>(i)] ? stats.found : stats.missing)++;
  return stats;
}

void init_embeddings(torch::Tensor weight, const nlohmann::json& options, const Vocabulary* vocab) {
  std::string path = options.value("pretrained", "");
  if (!path.empty() && vocab) {
    auto stats = load_pretrained_vectors(weight, path, *vocab);
    log::info("[model] pretrained vectors {}: {} of {} vocabulary tokens found; the other {} keep their random "
              "initialisation",
              path, stats.found, stats.found + stats.missing, stats.missing);
  }
  if (options.value("freeze_embeddings", false)) weight.set_requires_grad(false);
}

bool written(const nlohmann::json& document, std::initializer_list<const char*> path) {
  const nlohmann::json* j = &document;
  for (const char* k : path) {
    if (!j->is_object() || !j->contains(k)) return false;
    j = &(*j)[k];
  }
  return !j->is_null();
}

void check_sparse_optimizer(const std::string& key, const Config& config) {
  const auto& o = config.optimizer;
  if (!(o.type == "sgd" || o.type == "adagrad") || o.weight_decay != 0 || o.momentum != 0)
    config_fail(key, "sparse gradients need optimizer.type sgd (without momentum) or adagrad, and "
                     "optimizer.weight_decay 0 (got " + o.type + ")");
}

}  // namespace ltk
