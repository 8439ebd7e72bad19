// Parity with PyTorch: every model and task runs one training step here and in Python
// (python3-torch, tests/parity/check_parity.py with bench/ltk_torch.py) from the same initial
// weights and batch; outputs, loss, every gradient and every parameter after the step of each
// optimiser must agree.
//
// The cases run in float64 on both sides. LibTorch and OpenBLAS pick their kernels by CPU (AVX2,
// AVX-512, ...), and two kernels sum in different orders: in float32 that alone moves results by
// ~1e-6, which Adam's g / (sqrt(v) + eps) turns into differences as large as the step itself for
// a gradient that is zero in exact arithmetic. In float64 the same reordering is ~1e-16, so
// agreement to 1e-9 holds on any x86-64 CPU by construction and still catches any real
// difference (a wrong formula is off by far more). One float32 smoke case checks the model in the
// dtype it trains in, with a tolerance derived from the operations (see kFloat32Tolerance).
#include <torch/optim/sgd.h>
#include <torch/serialize.h>
#include <catch2/catch.hpp>

#include <filesystem>

#include "ltk/config/config.h"
#include "ltk/core/files.h"
#include "ltk/io/checkpoint.h"
#include "ltk/models/registry.h"
#include "ltk/task/task.h"
#include "ltk/train/grad_scaler.h"
#include "ltk/train/optim.h"
#include "test_util.h"

using nlohmann::json;

namespace {

struct Case {
  std::string name;
  json model, task, optimizer;
  int64_t num_labels;
  std::vector<double> class_weights;
  torch::Dtype dtype = torch::kDouble;
  bool pairs = false;  ///< bert: the batch carries token types (a sentence pair)
};

// float32 tolerance of the smoke case (bow, SGD, no Adam normalisation to amplify residue): its
// longest accumulation is a sum of k <= 64 terms (embed_dim 8 x at most 6 tokens, or 8 inputs of
// the linear layer, in forward and in backward), whose rounding error is bounded by
// k * u * sum|x_i| with u = 2^-24 = 6e-8, i.e. 3.8e-6 relative to the summed magnitudes; the
// forward, backward and SGD step chain four such operations: 1.5e-5. 1e-4 leaves a margin of
// 6x for the magnitudes summed being larger than the result. Any kernel order stays within it.
constexpr double kFloat32Tolerance = 1e-4;
constexpr double kFloat64Tolerance = 1e-9;

constexpr int64_t kVocab = 30;

void save_dict(const std::string& path, const std::map<std::string, torch::Tensor>& tensors) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [k, v] : tensors) dict.insert(k, v.detach().to(torch::kCPU).contiguous());
  auto bytes = torch::pickle_save(dict);
  ltk::write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

void write_case(const Case& c, const std::string& dir, uint64_t seed) {
  std::filesystem::create_directories(dir);
  const bool bert = c.model.at("type") == "bert";
  json data = {{"train", "unused.tsv"}, {"max_len", 16}};
  if (bert) data["tokenizer"] = {{"dict", "unused_vocab.txt"}};  // not read: the ids below are made here
  json doc = {{"data", data},
              {"model", c.model},
              {"task", c.task},
              {"optimizer", c.optimizer}};
  ltk::Config config = ltk::parse_config(doc);
  std::vector<std::string> names;
  for (int64_t i = 0; i < c.num_labels; ++i) names.push_back("label" + std::to_string(i));
  ltk::LabelMap labels = ltk::LabelMap::from_labels(names);
  auto task = ltk::make_task(config.task, labels, c.class_weights);
  torch::manual_seed(seed);
  auto model = ltk::build_model(config.model, ltk::ModelContext{kVocab, task->num_outputs(), 0, nullptr,
                                                                config.task.type == "mlm"});
  model->to(c.dtype);
  model->train();
  ltk::save_weights(*model, dir + "/weights.pt");

  // A batch with a long sample, a one-token sample, an empty one and padding everywhere.
  // (BERT's samples always hold [CLS] and [SEP]: no empty one.)
  std::vector<int64_t> lengths = bert ? std::vector<int64_t>{6, 1, 3, 2, 4} : std::vector<int64_t>{6, 1, 3, 0, 4};
  const int64_t B = static_cast<int64_t>(lengths.size()), T = 6;
  ltk::Batch batch;
  batch.lengths = torch::tensor(lengths, torch::kLong);
  batch.mask = torch::arange(T).unsqueeze(0) < batch.lengths.unsqueeze(1);
  batch.ids = torch::randint(2, kVocab, {B, T}, torch::kLong).masked_fill(batch.mask.logical_not(), 0);
  batch.indices = torch::arange(B);
  if (c.pairs) {  // the second text from position 2 of each sample on
    batch.token_types = (torch::arange(T).unsqueeze(0) >= 2).logical_and(batch.mask).to(torch::kLong);
  }
  const std::string& type = config.task.type;
  if (type == "multiclass") {
    batch.labels = torch::randint(0, c.num_labels, {B}, torch::kLong);
  } else if (type == "binary") {
    batch.labels = torch::randint(0, 2, {B}, torch::kLong).to(torch::kFloat);
  } else if (type == "multilabel") {
    batch.labels = torch::randint(0, 2, {B, c.num_labels}, torch::kLong).to(torch::kFloat);
  } else if (type == "mlm") {  // about a third of the real pieces predicted, [CLS] never
    auto chosen = (torch::rand({B, T}) < 0.35) & batch.mask & (torch::arange(T).unsqueeze(0) > 0);
    chosen[0][1] = true;
    batch.labels = torch::where(chosen, batch.ids, torch::full_like(batch.ids, -100));
  } else {
    batch.labels = torch::randn({B});
  }
  if (batch.labels.is_floating_point()) batch.labels = batch.labels.to(c.dtype);
  std::map<std::string, torch::Tensor> saved = {
      {"ids", batch.ids}, {"lengths", batch.lengths}, {"mask", batch.mask}, {"targets", batch.labels}};
  if (batch.token_types.defined()) saved["token_types"] = batch.token_types;
  save_dict(dir + "/batch.pt", saved);

  std::map<std::string, torch::Tensor> out;
  auto outputs = model->forward(batch);
  auto loss = task->loss(outputs, batch.labels);
  out["outputs"] = outputs;
  out["loss"] = loss;
  auto optimizer = ltk::make_optimizer(config.optimizer, model->parameters());
  optimizer->zero_grad();
  loss.backward();
  for (const auto& p : model->named_parameters()) {
    auto g = p.value().grad();
    if (g.defined()) out["grad." + p.key()] = g.is_sparse() ? g.to_dense() : g;
  }
  optimizer->step();
  for (const auto& p : model->named_parameters()) out["after." + p.key()] = p.value();
  save_dict(dir + "/ltk.pt", out);
  json resolved = ltk::to_json(config);
  json spec = {{"model", config.model.options},   {"vocab_size", kVocab},
               {"num_outputs", task->num_outputs()}, {"task", resolved["task"]},
               {"class_weights", c.class_weights}, {"optimizer", resolved["optimizer"]},
               {"dtype", c.dtype == torch::kDouble ? "float64" : "float32"},
               {"tolerance", c.dtype == torch::kDouble ? kFloat64Tolerance : kFloat32Tolerance}};
  ltk::test::write_file(dir + "/spec.json", spec.dump(2));
}

std::vector<Case> cases() {
  json mc = {{"type", "multiclass"}};
  json adam = {{"type", "adam"}, {"lr", 0.01}};
  return {
      {"bow_multiclass_adam", {{"type", "bow"}, {"embed_dim", 8}}, mc,
       {{"type", "adam"}, {"lr", 0.01}, {"weight_decay", 0.01}, {"no_decay_bias_norm", true}}, 4, {}},
      {"bow_ngrams_hidden_weighted_smoothed_sgd",
       {{"type", "bow"}, {"embed_dim", 8}, {"ngrams", 3}, {"buckets", 50}, {"hidden_dim", 6}},
       {{"type", "multiclass"}, {"label_smoothing", 0.1}},
       {{"type", "sgd"}, {"lr", 0.1}, {"momentum", 0.9}, {"nesterov", true}, {"weight_decay", 0.001}}, 3,
       {0.5, 2.0, 1.0}},
      {"bow_sparse_adagrad", {{"type", "bow"}, {"embed_dim", 8}, {"sparse", true}}, mc,
       {{"type", "adagrad"}, {"lr", 0.1}, {"lr_decay", 0.01}}, 3, {}},
      {"bow_sparse_sgd_sum", {{"type", "bow"}, {"embed_dim", 8}, {"sparse", true}},
       {{"type", "multiclass"}, {"reduction", "sum"}}, {{"type", "sgd"}, {"lr", 0.1}}, 3, {}},
      {"bow_binary_pos_weight_adam", {{"type", "bow"}, {"embed_dim", 8}}, {{"type", "binary"}}, adam, 2, {3.0}},
      {"bow_multilabel_adamw", {{"type", "bow"}, {"embed_dim", 8}, {"hidden_dim", 5}}, {{"type", "multilabel"}},
       {{"type", "adamw"}, {"lr", 0.01}, {"weight_decay", 0.1}}, 4, {1.0, 2.0, 0.5, 1.5}},
      {"bow_regression_mse_sgd", {{"type", "bow"}, {"embed_dim", 8}}, {{"type", "regression"}},
       {{"type", "sgd"}, {"lr", 0.05}}, 0, {}},
      {"textcnn_multiclass_adamw",
       {{"type", "textcnn"}, {"embed_dim", 8}, {"kernel_sizes", {2, 3, 5}}, {"channels", 4}, {"dropout", 0.0}}, mc,
       {{"type", "adamw"}, {"lr", 0.01}, {"weight_decay", 0.01}}, 3, {}},
      {"textcnn_regression_huber_adam",
       {{"type", "textcnn"}, {"embed_dim", 6}, {"kernel_sizes", {4}}, {"channels", 3}, {"dropout", 0.0}},
       {{"type", "regression"}, {"loss", "huber"}, {"huber_delta", 0.5}}, adam, 0, {}},
      {"rnn_lstm_bi_last_sgd", {{"type", "rnn"}, {"embed_dim", 8}, {"hidden_dim", 5}}, mc,
       {{"type", "sgd"}, {"lr", 0.1}, {"momentum", 0.5}}, 3, {}},
      {"rnn_gru_2layers_max_adam",
       {{"type", "rnn"}, {"cell", "gru"}, {"embed_dim", 8}, {"hidden_dim", 5}, {"layers", 2}, {"pooling", "max"}}, mc,
       adam, 3, {}},
      {"rnn_lstm_uni_mean_binary_sum",
       {{"type", "rnn"}, {"embed_dim", 8}, {"hidden_dim", 5}, {"bidirectional", false}, {"pooling", "mean"}},
       {{"type", "binary"}, {"reduction", "sum"}}, adam, 2, {}},
      {"transformer_post_cls_adam",
       {{"type", "transformer"}, {"embed_dim", 8}, {"heads", 2}, {"layers", 2}, {"ff_dim", 16}, {"dropout", 0.0},
        {"max_positions", 16}},
       mc, adam, 3, {}},
      {"transformer_pre_mean_gelu_adamw",
       {{"type", "transformer"}, {"embed_dim", 8}, {"heads", 4}, {"layers", 1}, {"ff_dim", 12}, {"dropout", 0.0},
        {"norm", "pre"}, {"pooling", "mean"}, {"activation", "gelu"}, {"max_positions", 16}},
       // The attention's key bias has a gradient that is exactly zero in exact arithmetic (softmax
       // ignores a constant shift): in float32 its rounding residue (~1e-10), through Adam's
       // g / (|g| + eps), moved that bias by up to lr * 1e-2, differently on each CPU. In float64
       // the residue is ~1e-19 and the step it causes ~1e-13, so the default eps is kept.
       {{"type", "multilabel"}},
       {{"type", "adamw"}, {"lr", 0.01}, {"no_decay_bias_norm", true}, {"weight_decay", 0.1}}, 3, {}},
      {"transformer_regression_l1_sgd",
       {{"type", "transformer"}, {"embed_dim", 8}, {"heads", 2}, {"layers", 1}, {"ff_dim", 8}, {"dropout", 0.0},
        {"max_positions", 16}},
       {{"type", "regression"}, {"loss", "l1"}}, {{"type", "sgd"}, {"lr", 0.1}}, 0, {}},
      // BERT + Linear (the article's model): BCE on one logit as the article trains it, every
      // task, cls and mean pooling, each activation, a sentence pair; against nn.TransformerEncoderLayer.
      {"bert_cls_binary_adamw",
       {{"type", "bert"}, {"hidden_size", 8}, {"num_hidden_layers", 2}, {"num_attention_heads", 2},
        {"intermediate_size", 16}, {"max_position_embeddings", 16}, {"hidden_dropout_prob", 0.0},
        {"attention_probs_dropout_prob", 0.0}},
       {{"type", "binary"}}, {{"type", "adamw"}, {"lr", 0.01}, {"no_decay_bias_norm", true}, {"weight_decay", 0.01}},
       2, {}},
      {"bert_mean_gelu_new_multiclass_adam",
       {{"type", "bert"}, {"hidden_size", 8}, {"num_hidden_layers", 1}, {"num_attention_heads", 4},
        {"intermediate_size", 12}, {"max_position_embeddings", 20}, {"hidden_dropout_prob", 0.0},
        {"attention_probs_dropout_prob", 0.0}, {"hidden_act", "gelu_new"}, {"pooling", "mean"},
        {"layer_norm_eps", 1e-5}},
       mc, adam, 3, {}},
      {"bert_cls_pair_multilabel_adamw",
       {{"type", "bert"}, {"hidden_size", 8}, {"num_hidden_layers", 2}, {"num_attention_heads", 2},
        {"intermediate_size", 16}, {"max_position_embeddings", 16}, {"type_vocab_size", 2},
        {"hidden_dropout_prob", 0.0}, {"attention_probs_dropout_prob", 0.0}},
       {{"type", "multilabel"}}, {{"type", "adamw"}, {"lr", 0.01}, {"weight_decay", 0.1}}, 3, {},
       torch::kDouble, true},
      {"bert_relu_regression_sgd",
       {{"type", "bert"}, {"hidden_size", 8}, {"num_hidden_layers", 1}, {"num_attention_heads", 2},
        {"intermediate_size", 8}, {"max_position_embeddings", 16}, {"hidden_dropout_prob", 0.0},
        {"attention_probs_dropout_prob", 0.0}, {"hidden_act", "relu"}},
       {{"type", "regression"}}, {{"type", "sgd"}, {"lr", 0.1}}, 0, {}},
      // BertForMaskedLM's head (transform, decoder tied to the word embeddings): the loss on the
      // selected positions, every gradient (the embeddings get both uses), one AdamW step.
      {"bert_mlm_adamw",
       {{"type", "bert"}, {"hidden_size", 8}, {"num_hidden_layers", 2}, {"num_attention_heads", 2},
        {"intermediate_size", 16}, {"max_position_embeddings", 16}, {"hidden_dropout_prob", 0.0},
        {"attention_probs_dropout_prob", 0.0}},
       {{"type", "mlm"}}, {{"type", "adamw"}, {"lr", 0.01}, {"weight_decay", 0.01}, {"no_decay_bias_norm", true}},
       0, {}},
      {"float32_smoke_bow_ngrams_sgd", {{"type", "bow"}, {"embed_dim", 8}, {"ngrams", 2}, {"buckets", 20}}, mc,
       {{"type", "sgd"}, {"lr", 0.1}}, 3, {}, torch::kFloat},
  };
}

}  // namespace

TEST_CASE("parity: every model, task and optimiser matches PyTorch in Python", "[parity]") {
  ltk::test::TempDir dir;
  uint64_t seed = 100;
  auto all = cases();
  for (const auto& c : all) write_case(c, dir.file(c.name), seed++);
  auto log = dir.file("parity.log");
  std::string cmd = "/usr/bin/python3 '" LTK_SOURCE_DIR "/tests/parity/check_parity.py' '" + dir.path().string() +
                    "' >'" + log + "' 2>&1";
  int status = std::system(cmd.c_str());
  std::string output = ltk::test::read_text(log);
  INFO(output);
  CHECK(status == 0);
  CHECK_THAT(output, Catch::Matchers::Contains(std::to_string(all.size()) + " of " + std::to_string(all.size()) +
                                               " cases agree"));
}

namespace {

// One loss-scaling scenario of the check against PyTorch's GradScaler: weights, the initial scale
// and growth interval, each step's inputs, and ltk's trajectory. The loss (w1 . x1 + w2 . x2) is
// linear in the weights, so each gradient is its input times the scale, exactly, and the update
// (SGD, lr 1/8, momentum 1/2) is exact too: agreement is equality.
json loss_scale_scenario(const std::string& name, double init_scale, int64_t growth_interval,
                         const std::vector<std::pair<std::vector<double>, std::vector<double>>>& steps) {
  auto encode = [](const std::vector<double>& xs) {
    json out = json::array();
    for (double x : xs)
      out.push_back(std::isnan(x) ? json("nan") : std::isinf(x) ? json(x > 0 ? "inf" : "-inf") : json(x));
    return out;
  };
  auto list = [](const torch::Tensor& t) {
    json out = json::array();
    for (int64_t i = 0; i < t.numel(); ++i) out.push_back(static_cast<double>(t[i].item<float>()));
    return out;
  };
  json scenario = {{"name", name},      {"init_scale", init_scale}, {"growth_interval", growth_interval},
                   {"lr", 0.125},       {"momentum", 0.5},          {"w1", {0.5, -0.25, 1.0, 2.0}},
                   {"w2", {1.5, -3.0}}, {"steps", json::array()},   {"ltk", json::array()}};
  auto w1 = torch::tensor({0.5f, -0.25f, 1.f, 2.f}).requires_grad_();
  auto w2 = torch::tensor({1.5f, -3.f}).requires_grad_();
  torch::optim::SGD opt({w1, w2}, torch::optim::SGDOptions(0.125).momentum(0.5));
  ltk::GradScaler scaler(ltk::GradScalerOptions{init_scale, 2.0, 0.5, growth_interval});
  for (const auto& [x1, x2] : steps) {
    scenario["steps"].push_back({{"x1", encode(x1)}, {"x2", encode(x2)}});
    opt.zero_grad();
    auto loss = (w1 * torch::tensor(std::vector<float>(x1.begin(), x1.end()))).sum() +
                (w2 * torch::tensor(std::vector<float>(x2.begin(), x2.end()))).sum();
    scaler.scale(loss).backward();
    const bool finite = scaler.unscale({w1, w2});
    if (finite) opt.step();
    scaler.update(!finite);
    scenario["ltk"].push_back({{"scale", static_cast<double>(scaler.current())},
                               {"growth", scaler.growth_tracker()},
                               {"stepped", finite},
                               {"w1", list(w1.detach())},
                               {"w2", list(w2.detach())}});
  }
  return scenario;
}

}  // namespace

TEST_CASE("parity: the fp16 loss scaler matches PyTorch's GradScaler step for step", "[parity][precision]") {
  const double big = std::ldexp(1.0, 107), nan = std::nan(""), inf = INFINITY;
  auto normal = [](int k) {
    return std::pair<std::vector<double>, std::vector<double>>{{1.0 + k, -2.0, 3.0 - k, 0.5}, {-1.0, 2.0 * k}};
  };
  // 2^20, growing every 3 good steps: at 2^21 an input of 2^107 overflows float32 (2^128) and the
  // step is skipped; at 2^20 it does not; a NaN or an inf in either gradient is skipped too.
  std::vector<std::pair<std::vector<double>, std::vector<double>>> a;
  for (int k = 1; k <= 13; ++k) a.push_back(normal(k));
  a[3].first[1] = big;
  a[4].first[1] = big;
  a[5].second[0] = nan;
  a[9].first[2] = inf;
  a[11].second[1] = -inf;
  // From 2^126, growing at every step: 2^127, then never to inf (inputs below 1: nothing overflows).
  std::vector<std::pair<std::vector<double>, std::vector<double>>> b(4, {{0.5, -0.25, 0.5, 0.125}, {0.25, -0.5}});
  json spec = {{"scenarios",
                {loss_scale_scenario("overflow and non-finite gradients", std::ldexp(1.0, 20), 3, a),
                 loss_scale_scenario("growth capped below inf", std::ldexp(1.0, 126), 1, b)}}};
  ltk::test::TempDir dir;
  ltk::write_file_atomic(dir.file("scaler.json"), spec.dump());
  const std::string log = dir.file("scaler.log");
  const std::string cmd = "/usr/bin/python3 -O '" LTK_SOURCE_DIR "/tests/parity/check_grad_scaler.py' '" +
                          dir.file("scaler.json") + "' >'" + log + "' 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string output = ltk::test::read_text(log);
  INFO(output);
  CHECK(status == 0);
  CHECK_THAT(output, Catch::Matchers::Contains("17 of 17 steps agree"));
  // The scenario does what it says: skips at the overflow, the NaN and both infs; 2^127 at the end.
  CHECK_THAT(output, Catch::Matchers::Contains("13 steps, 4 skipped"));
  CHECK_THAT(output, Catch::Matchers::Contains("4 steps, 0 skipped, final scale 1.70141e+38"));
}
