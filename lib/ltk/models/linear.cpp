#include "ltk/models/linear.h"

#include <algorithm>
#include <cmath>

#include "ltk/core/error.h"
#include "ltk/models/embeddings.h"

namespace ltk {

LinearImpl::LinearImpl(const LinearOptions& options_) : options(options_) { reset(); }

void LinearImpl::reset() {
  const int64_t V = options.vocab_size(), K = options.num_outputs();
  weight = register_module(
      "weight", torch::nn::EmbeddingBag(torch::nn::EmbeddingBagOptions(V, K).mode(torch::kSum).sparse(options.sparse())));
  torch::NoGradGuard no_grad;
  weight->weight.zero_();  // a convex problem: start where scikit-learn's solvers start
  bias = register_parameter("bias", torch::zeros({K}));
  idf = register_buffer("idf", torch::ones({V}, torch::kDouble));
  penalty_scale = register_buffer("penalty_scale", torch::zeros({V}, torch::kDouble));
  if (options.two_blocks()) block = register_buffer("block", torch::zeros({V}, torch::kLong));
}

void LinearImpl::set_statistics(const std::vector<int64_t>& df, int64_t documents, const std::vector<bool>& is_char) {
  const int64_t V = options.vocab_size();
  if (documents < 1) throw Error("the linear model's idf needs the training split's size (ModelContext::documents)");
  auto idf_cpu = torch::ones({V}, torch::kDouble);
  auto block_cpu = torch::zeros({V}, torch::kLong);
  auto* i = idf_cpu.data_ptr<double>();
  auto* b = block_cpu.data_ptr<int64_t>();
  const double n = static_cast<double>(documents);
  for (int64_t f = Vocabulary::kFirstWordId; f < V; ++f) {
    i[f] = std::log((1.0 + n) / (1.0 + static_cast<double>(df[static_cast<size_t>(f)]))) + 1.0;  // smooth_idf
    b[f] = is_char[static_cast<size_t>(f)] ? 1 : 0;
  }
  torch::NoGradGuard no_grad;
  idf.copy_(idf_cpu);
  if (block.defined()) block.copy_(block_cpu);
  set_penalty(df);
}

void LinearImpl::set_penalty(const std::vector<int64_t>& df) {
  const int64_t V = options.vocab_size();
  auto scale_cpu = torch::zeros({V}, torch::kDouble);
  auto* s = scale_cpu.data_ptr<double>();
  for (int64_t f = Vocabulary::kFirstWordId; f < V; ++f) {
    const auto d = static_cast<double>(df[static_cast<size_t>(f)]);
    s[f] = d > 0 ? 1.0 / (2.0 * options.C() * d) : 0.0;  // a feature absent from the split gets no gradient either
  }
  torch::NoGradGuard no_grad;
  penalty_scale.copy_(scale_cpu);
}

std::vector<int64_t> document_frequencies(const TextDataset& data, int64_t vocab_size) {
  std::vector<int64_t> df(static_cast<size_t>(vocab_size), 0), seen(df.size(), -1);
  for (int64_t i = 0; i < data.size(); ++i) {
    const int32_t* ids = data.tokens(i);
    for (int64_t k = 0; k < data.length(i); ++k) {
      const auto id = static_cast<size_t>(ids[k]);
      if (id < df.size() && seen[id] != i) {
        seen[id] = i;
        ++df[id];
      }
    }
  }
  return df;
}

TfIdfRows LinearImpl::features(const Batch& batch) const {
  const int64_t B = batch.size(), V = options.vocab_size();
  const auto& ids = batch.ids;
  auto valid = batch.mask & (ids >= Vocabulary::kFirstWordId);
  auto row = torch::arange(B, ids.options()).unsqueeze(1).expand_as(ids);
  auto keys = (row * V + ids).masked_select(valid);
  // Distinct (sample, feature) pairs in order, each with its count: the raw term frequencies.
  auto [unique, inverse, counts] = at::_unique2(keys, /*sorted=*/true, /*return_inverse=*/false, /*return_counts=*/true);
  TfIdfRows out;
  out.rows = unique.div(V, "floor");
  out.ids = unique - out.rows * V;
  auto tf = counts.to(torch::kDouble);
  if (options.sublinear_tf()) tf = tf.log() + 1.0;
  auto w = tf * idf.index_select(0, out.ids);
  auto group = block.defined() ? out.rows * 2 + block.index_select(0, out.ids) : out.rows;
  auto norm2 = torch::zeros({B * (block.defined() ? 2 : 1)}, w.options()).index_add_(0, group, w * w);
  out.weights = w / norm2.sqrt().index_select(0, group);  // every weight is > 0: no group has norm 0
  auto per_row = torch::bincount(out.rows, {}, B);
  out.offsets = per_row.cumsum(0) - per_row;
  return out;
}

SparseRows LinearImpl::rows_of(const TextDataset& data, double intercept) const {
  const int64_t V = options.vocab_size(), n = data.size();
  const auto idf = this->idf.to(torch::kCPU, torch::kDouble).contiguous();
  const double* idf_of = idf.data_ptr<double>();
  torch::Tensor block;
  if (this->block.defined()) block = this->block.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* block_of = block.defined() ? block.data_ptr<int64_t>() : nullptr;
  const bool sublinear = options.sublinear_tf();
  SparseRows x;
  x.num_cols = V + 1;
  x.offsets.reserve(static_cast<size_t>(n) + 1);
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* tokens = data.tokens(i);
    ids.clear();
    for (int64_t k = 0; k < data.length(i); ++k)
      if (tokens[k] >= Vocabulary::kFirstWordId && tokens[k] < V) ids.push_back(tokens[k]);
    std::sort(ids.begin(), ids.end());
    const size_t first = x.cols.size();
    double norm2[2] = {0, 0};
    for (size_t k = 0; k < ids.size();) {
      size_t end = k;
      while (end < ids.size() && ids[end] == ids[k]) ++end;
      const double tf = static_cast<double>(end - k);
      const double w = (sublinear ? std::log(tf) + 1.0 : tf) * idf_of[ids[k]];
      norm2[block_of ? block_of[ids[k]] : 0] += w * w;
      x.cols.push_back(ids[k]);
      x.values.push_back(w);
      k = end;
    }
    for (size_t e = first; e < x.cols.size(); ++e) x.values[e] /= std::sqrt(norm2[block_of ? block_of[x.cols[e]] : 0]);
    x.cols.push_back(static_cast<int32_t>(V));
    x.values.push_back(intercept);
    x.offsets.push_back(static_cast<int64_t>(x.cols.size()));
  }
  return x;
}

torch::Tensor LinearImpl::forward(const Batch& batch) {
  TfIdfRows f = features(batch);
  return weight->forward(f.ids, f.offsets, f.weights.to(weight->weight.scalar_type())) + bias;
}

torch::Tensor LinearImpl::penalty(const Batch& batch) {
  TfIdfRows f = features(batch);
  auto rows = torch::embedding(weight->weight, f.ids, /*padding_idx=*/-1, /*scale_grad_by_freq=*/false,
                               /*sparse=*/options.sparse());
  auto per_entry = rows.pow(2).sum(1) * penalty_scale.index_select(0, f.ids).to(rows.scalar_type());
  return torch::zeros({batch.size()}, per_entry.options()).index_add(0, f.rows, per_entry);
}

std::optional<LinearFeatures> linear_features(const ModelConfig& model) {
  if (model.type != "linear") return std::nullopt;
  const auto& j = model.options;
  LinearFeatures f;
  auto words = j.at("ngram_range").get<std::vector<int64_t>>(), chars = j.at("char_ngram_range").get<std::vector<int64_t>>();
  f.ranges.word_min = words[0];
  f.ranges.word_max = words[1];
  f.ranges.char_min = chars[0];
  f.ranges.char_max = chars[1];
  f.selection.min_df = j.at("min_df").get<int64_t>();
  f.selection.max_df = j.at("max_df").get<double>();
  f.selection.max_features = j.at("max_features").get<int64_t>();
  return f;
}

std::unique_ptr<Tokenizer> make_run_tokenizer(const TokenizerConfig& tokenizer, const ModelConfig& model) {
  auto words = make_tokenizer(tokenizer);
  auto features = linear_features(model);
  if (!features) return words;
  return std::make_unique<NgramTokenizer>(std::move(words),
                                          Normalizer{tokenizer.lowercase, tokenizer.nfkc, tokenizer.strip_accents},
                                          features->ranges);
}

namespace {

/// An n-gram range [min, max]: [0, 0] is none, else 1 <= min <= max <= `most`.
std::vector<int64_t> read_range(JsonReader& r, const char* key, std::vector<int64_t> range, int64_t most) {
  r.get(key, range);
  const std::string path = r.key_path(key);
  if (range.size() != 2) config_fail(path, "expected [min, max], e.g. [1, 2]");
  if (range[0] == 0 && range[1] == 0) return range;
  if (range[0] < 1 || range[1] < range[0] || range[1] > most)
    config_fail(path, "expected 1 <= min <= max <= " + std::to_string(most) + " ([0, 0] for none), got [" +
                          std::to_string(range[0]) + ", " + std::to_string(range[1]) + "]");
  return range;
}

}  // namespace

nlohmann::json resolve_linear(JsonReader& r) {
  auto words = read_range(r, "ngram_range", {1, 2}, 5);
  auto chars = read_range(r, "char_ngram_range", {0, 0}, 8);
  if (words[1] == 0 && chars[1] == 0)
    config_fail(r.key_path("ngram_range"), "the linear model needs word or character n-grams: both ranges are [0, 0]");
  int64_t min_df = 1, max_features = 0;
  double max_df = 1.0, C = 1.0;
  bool sublinear_tf = true, sparse = true;
  r.get("min_df", min_df);
  check_min(r.key_path("min_df"), static_cast<double>(min_df), 1);
  r.get("max_df", max_df);
  check_min(r.key_path("max_df"), max_df, 0, /*inclusive=*/false);
  check_max(r.key_path("max_df"), max_df, 1);
  r.get("max_features", max_features);
  check_min(r.key_path("max_features"), static_cast<double>(max_features), 0);
  r.get("sublinear_tf", sublinear_tf);
  r.get("C", C);
  check_min(r.key_path("C"), C, 0, /*inclusive=*/false);
  r.get("sparse", sparse);
  double intercept_scaling = 1.0;
  r.get("intercept_scaling", intercept_scaling);
  check_min(r.key_path("intercept_scaling"), intercept_scaling, 0, /*inclusive=*/false);
  return {{"ngram_range", words},
          {"char_ngram_range", chars},
          {"min_df", min_df},
          {"max_df", max_df},
          {"max_features", max_features},
          {"sublinear_tf", sublinear_tf},
          {"C", C},
          {"sparse", sparse},
          {"intercept_scaling", intercept_scaling}};
}

std::shared_ptr<TextModel> build_linear(const nlohmann::json& j, const ModelContext& context) {
  LinearOptions o(context.vocab_size, context.num_outputs);
  const bool words = j.at("ngram_range").at(1).get<int64_t>() > 0, chars = j.at("char_ngram_range").at(1).get<int64_t>() > 0;
  o.two_blocks(words && chars).sublinear_tf(j.at("sublinear_tf").get<bool>()).C(j.at("C").get<double>())
      .sparse(j.at("sparse").get<bool>());
  Linear model(o);
  if (context.vocab) {  // a new model: idf and penalty from the training split (a loaded one: its checkpoint's)
    const Vocabulary& v = *context.vocab;
    std::vector<int64_t> df(static_cast<size_t>(v.size()), 0);
    std::vector<bool> is_char(df.size(), false);
    for (int32_t id = Vocabulary::kFirstWordId; id < v.size(); ++id) {
      df[static_cast<size_t>(id)] = v.count(id);
      is_char[static_cast<size_t>(id)] = is_char_term(v.token(id));
    }
    model->set_statistics(df, context.documents, is_char);
  }
  return model.ptr();
}

void complete_linear(const nlohmann::json& options, const nlohmann::json& document, Config& config) {
  // Sparse gradients want adagrad; a convex problem with tf-idf rows of unit norm takes a large lr.
  if (!options.at("sparse").get<bool>()) return;
  if (!written(document, {"optimizer", "type"})) config.optimizer.type = "adagrad";
  if (!written(document, {"optimizer", "lr"}) && config.optimizer.type == "adagrad") config.optimizer.lr = 1.0;
}

void check_linear(const nlohmann::json& options, const Config& config) {
  if (config.optimizer.type == "dual_cd") {
    // The exact solver: LinearSVC's problem, solved in one go.
    if (config.task.type != "multiclass" && config.task.type != "binary")
      config_fail("optimizer.type", "\"dual_cd\" solves multiclass and binary tasks; task.type \"" + config.task.type +
                                        "\" trains with optimizer.type \"adagrad\"");
    if (config.task.loss != "squared_hinge")
      config_fail("task.loss",
                  "optimizer.type \"dual_cd\" minimises the squared hinge (scikit-learn's LinearSVC): "
                  "set task.loss \"squared_hinge\" (logistic regression trains with \"adagrad\")");
    if (config.task.reduction != "mean")
      config_fail("task.reduction", "optimizer.type \"dual_cd\" solves C * the sum of the losses; leave \"mean\"");
    const auto& cw = config.task.class_weights;
    if (config.task.type == "binary" && !(cw.is_string() && cw.get<std::string>() == "none"))
      config_fail("task.class_weights",
                  "optimizer.type \"dual_cd\" weighs the classes of multiclass tasks; for a "
                  "binary one, use task.type \"multiclass\" (its two classes) or adagrad");
  } else if (options.at("sparse").get<bool>()) {
    check_sparse_optimizer("model.sparse", config);
  }
  if (config.optimizer.weight_decay > 0)
    config_fail("optimizer.weight_decay", "the linear model's L2 regularisation is model.C; leave weight_decay 0");
  const auto& d = config.data;
  if (d.vocab.source != "corpus")
    config_fail("data.vocab.source", "the linear model builds its own vocabulary of n-gram features: use \"corpus\"");
  if (d.vocab.min_freq != 1 || d.vocab.max_size != 0)
    config_fail(d.vocab.min_freq != 1 ? "data.vocab.min_freq" : "data.vocab.max_size",
                "the linear model chooses its n-gram features with model.min_df, model.max_df and "
                "model.max_features; leave data.vocab.min_freq 1 and data.vocab.max_size 0");
  if (!d.text_pair_column.empty() || !d.text_pair_field.empty())
    config_fail(d.text_pair_column.empty() ? "data.text_pair_field" : "data.text_pair_column",
                "the linear model reads one text per sample, not sentence pairs");
  if (d.special_tokens) config_fail("data.special_tokens", "the linear model takes n-gram terms, not [CLS]/[SEP]");
  if (d.max_len != 0)
    config_fail("data.max_len", "the linear model takes every n-gram of a text; set 0 (data.max_len would count "
                                "n-gram terms, not words)");
}

}  // namespace ltk
