#include "ltk/models/linear.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <ATen/Parallel.h>

#include "ltk/core/parallel.h"

#include "ltk/core/error.h"
#include "ltk/data/tfidf.h"
#include "ltk/models/embeddings.h"

namespace ltk {

LinearImpl::LinearImpl(const LinearOptions& options_) : options(options_) { reset(); }

void LinearImpl::reset() {
  const int64_t V = options.vocab_size(), K = options.num_outputs();
  // A convex problem: start where scikit-learn's solvers start, at zero (given as the table, which
  // spares the module's random initialisation: a tenth of a second at ltk-predict's start-up), or
  // nowhere for weights read next (tens of MB that would be written twice).
  weight = register_module("weight", torch::nn::EmbeddingBag(torch::nn::EmbeddingBagOptions(V, K)
                                                                 .mode(torch::kSum)
                                                                 .sparse(options.sparse())
                                                                 ._weight(options.zero_init() ? torch::zeros({V, K})
                                                                                              : torch::empty({V, K}))));
  torch::NoGradGuard no_grad;
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
  // (Module::to(kDouble), trainer.dtype "float64", converts the block buffer too: back to ids.)
  auto group = block.defined() ? out.rows * 2 + block.index_select(0, out.ids).to(torch::kLong) : out.rows;
  auto norm2 = torch::zeros({B * (block.defined() ? 2 : 1)}, w.options()).index_add_(0, group, w * w);
  out.weights = w / norm2.sqrt().index_select(0, group);  // every weight is > 0: no group has norm 0
  auto per_row = torch::bincount(out.rows, {}, B);
  out.offsets = per_row.cumsum(0) - per_row;
  return out;
}

namespace {

/// The CPU copies of the buffers a tf-idf row reads, as a TfIdfTable.
struct RowBuffers {
  torch::Tensor idf, block;
  TfIdfTable table;
  explicit RowBuffers(const LinearImpl& m) {
    idf = m.idf.to(torch::kCPU, torch::kDouble).contiguous();
    if (m.block.defined()) block = m.block.to(torch::kCPU, torch::kLong).contiguous();
    table = TfIdfTable{m.options.vocab_size(), m.options.sublinear_tf(), idf.data_ptr<double>(),
                       block.defined() ? block.data_ptr<int64_t>() : nullptr};
  }
};

template <typename T>
void score_rows(const LinearImpl& m, const TextDataset& data, const std::vector<int64_t>& indices, const T* W,
                const T* bias, T* out) {
  const int64_t K = m.options.num_outputs();
  const RowBuffers buffers(m);
  parallel_chunks(static_cast<int64_t>(indices.size()), at::get_num_threads(), 256, [&](int64_t begin, int64_t end) {
    FeatureCounts& counts = FeatureCounts::of_thread(m.options.vocab_size());
    std::vector<double> values;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t i = indices[static_cast<size_t>(r)];
      score_text(buffers.table, data.tokens(i), data.length(i), W, bias, K, out + r * K, counts, values);
    }
  });
}

}  // namespace

torch::Tensor LinearImpl::forward_rows(const TextDataset& data, const std::vector<int64_t>& indices) {
  const torch::Tensor& W = weight->weight;
  if (!W.device().is_cpu() || torch::GradMode::is_enabled() || !W.is_contiguous()) return {};
  auto b = bias.contiguous();
  auto out = torch::empty({static_cast<int64_t>(indices.size()), options.num_outputs()}, W.options());
  if (W.scalar_type() == torch::kFloat)
    score_rows(*this, data, indices, W.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<float>());
  else if (W.scalar_type() == torch::kDouble)
    score_rows(*this, data, indices, W.data_ptr<double>(), b.data_ptr<double>(), out.data_ptr<double>());
  else
    return {};
  return out;
}

SparseRows LinearImpl::rows_of(const TextDataset& data, double intercept, int threads) const {
  // Two passes on `threads` threads: each row's length (its distinct features and the intercept),
  // then the rows written in place, so the matrix is allocated once at its size, with no
  // temporaries (the solve's memory peak is the matrix).
  const int64_t V = options.vocab_size(), n = data.size();
  const RowBuffers buffers(*this);
  SparseRows x;
  x.num_cols = V + 1;
  x.offsets.assign(static_cast<size_t>(n) + 1, 0);
  parallel_chunks(n, threads, 1024, [&](int64_t begin, int64_t end) {
    FeatureCounts& counts = FeatureCounts::of_thread(V);
    for (int64_t i = begin; i < end; ++i) {
      counts.collect(data.tokens(i), data.length(i));
      x.offsets[static_cast<size_t>(i) + 1] = static_cast<int64_t>(counts.ids().size()) + 1;
    }
  });
  for (size_t i = 1; i < x.offsets.size(); ++i) x.offsets[i] += x.offsets[i - 1];
  x.cols.resize(static_cast<size_t>(x.offsets.back()));
  x.values.resize(x.cols.size());
  parallel_chunks(n, threads, 1024, [&](int64_t begin, int64_t end) {
    FeatureCounts& counts = FeatureCounts::of_thread(V);
    std::vector<double> values;
    for (int64_t i = begin; i < end; ++i) {
      tfidf_row(buffers.table, data.tokens(i), data.length(i), counts, values);
      const std::vector<int32_t>& cols = counts.ids();
      const auto at = static_cast<size_t>(x.offsets[static_cast<size_t>(i)]);
      std::copy(cols.begin(), cols.end(), x.cols.begin() + static_cast<std::ptrdiff_t>(at));
      std::copy(values.begin(), values.end(), x.values.begin() + static_cast<std::ptrdiff_t>(at));
      x.cols[at + cols.size()] = static_cast<int32_t>(V);
      x.values[at + cols.size()] = intercept;
    }
  });
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

std::shared_ptr<TextModel> build_linear(const nlohmann::json& j, const ModelContext& context) {
  LinearOptions o(context.vocab_size, context.num_outputs);
  const bool words = j.at("ngram_range").at(1).get<int64_t>() > 0, chars = j.at("char_ngram_range").at(1).get<int64_t>() > 0;
  o.two_blocks(words && chars)
      .sublinear_tf(j.at("sublinear_tf").get<bool>())
      .C(j.at("C").get<double>())
      .sparse(j.at("sparse").get<bool>())
      .zero_init(!context.weights_follow);
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

namespace {

/// Why optimizer.type "dual_cd" cannot train `config` (the key at fault and what to do), or "".
std::pair<std::string, std::string> dual_cd_refusal(const Config& config) {
  const auto& t = config.task;
  if (t.type != "multiclass" && t.type != "binary" && t.type != "multilabel" && t.type != "regression")
    return {"optimizer.type", "\"dual_cd\" solves multiclass, binary, multilabel and regression tasks; task.type \"" +
                                  t.type + "\" trains with optimizer.type \"adagrad\""};
  if (t.type == "regression" && t.loss != "mse" && t.loss != "auto")
    return {"task.loss",
            "optimizer.type \"dual_cd\" solves a regression's squared error (ridge regression, "
            "scikit-learn's LinearSVR with epsilon 0); task.loss \"" +
                t.loss + "\" trains with optimizer.type \"adagrad\""};
  if (t.type == "multiclass" && t.loss != "squared_hinge")
    return {"task.loss",
            "optimizer.type \"dual_cd\" solves a multiclass task's task.loss \"squared_hinge\" (scikit-learn's "
            "LinearSVC, one-vs-rest); the softmax cross-entropy trains with optimizer.type \"adagrad\" (a binary "
            "task's cross-entropy, logistic regression, is solved by dual_cd too)"};
  if (t.reduction != "mean")
    return {"task.reduction", "optimizer.type \"dual_cd\" solves C * the sum of the losses; leave \"mean\""};
  if (t.type == "binary" && !(t.class_weights.is_string() && t.class_weights.get<std::string>() == "none"))
    return {"task.class_weights",
            "optimizer.type \"dual_cd\" weighs the classes of multiclass tasks; for a binary one, use task.type "
            "\"multiclass\" (its two classes) or optimizer.type \"adagrad\""};
  if (!config.model.init_from.empty())
    return {"model.init_from",
            "optimizer.type \"dual_cd\" solves from scratch (the optimum does not depend on a "
            "start); start from another run's weights with optimizer.type \"adagrad\""};
  if (!config.model.freeze.empty())
    return {"model.freeze",
            "optimizer.type \"dual_cd\" solves every weight; freeze some with optimizer.type \"adagrad\""};
  if (config.trainer.sampler != "random")
    return {"trainer.sampler",
            "optimizer.type \"dual_cd\" reads every sample once per pass (weigh classes with "
            "task.class_weights); the \"" +
                config.trainer.sampler + "\" sampler trains with optimizer.type \"adagrad\""};
  return {};
}

}  // namespace

void complete_linear(const nlohmann::json& options, const nlohmann::json& document, Config& config) {
  // The exact solver where it solves the task and loss (optimizer.type "dual_cd"), else sparse
  // gradients, which want adagrad (a convex problem with tf-idf rows of unit norm takes a large lr).
  if (!options.at("sparse").get<bool>()) return;
  if (!written(document, {"optimizer", "type"}))
    config.optimizer.type = dual_cd_refusal(config).first.empty() ? "dual_cd" : "adagrad";
  if (!written(document, {"optimizer", "lr"}) && config.optimizer.type == "adagrad") config.optimizer.lr = 1.0;
}

void check_linear(const nlohmann::json& options, const Config& config) {
  if (config.optimizer.type == "dual_cd") {
    // The exact solver: LinearSVC's or LogisticRegression's problem, solved in one go.
    auto [key, why] = dual_cd_refusal(config);
    if (!key.empty()) config_fail(key, why);
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
