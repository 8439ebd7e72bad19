#include <ATen/Parallel.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <catch2/catch.hpp>

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "ltk/config/config.h"
#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/data/dataset.h"
#include "ltk/data/utf8.h"
#include "ltk/data/wordpiece.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/checkpoint.h"
#include "ltk/models/bert.h"
#include "ltk/models/bow.h"
#include "ltk/models/linear.h"
#include "ltk/models/quantize.h"
#include "ltk/models/registry.h"
#include "ltk/models/textcnn.h"
#include "ltk/task/task.h"
#include "ltk/task/task_util.h"
#include "ltk/train/optim.h"
#include "test_util.h"

using Catch::Matchers::Contains;

namespace {

ltk::Batch batch_of(const std::vector<std::vector<int64_t>>& rows, int64_t pad_to = 0) {
  int64_t T = pad_to;
  for (const auto& r : rows) T = std::max<int64_t>(T, static_cast<int64_t>(r.size()));
  auto B = static_cast<int64_t>(rows.size());
  ltk::Batch b;
  b.ids = torch::zeros({B, T}, torch::kLong);
  b.lengths = torch::zeros({B}, torch::kLong);
  for (int64_t i = 0; i < B; ++i) {
    for (size_t t = 0; t < rows[i].size(); ++t) b.ids[i][static_cast<int64_t>(t)] = rows[i][t];
    b.lengths[i] = static_cast<int64_t>(rows[i].size());
  }
  b.mask = torch::arange(T).unsqueeze(0) < b.lengths.unsqueeze(1);
  b.labels = torch::zeros({B}, torch::kLong);
  b.indices = torch::arange(B);
  return b;
}

std::shared_ptr<ltk::TextModel> make_bow(int64_t hidden = 0, double dropout = 0.0) {
  nlohmann::json section = {{"type", "bow"}, {"embed_dim", 8}, {"hidden_dim", hidden}, {"dropout", dropout}};
  return ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{20, 3, 0});
}

}  // namespace

TEST_CASE("bow: forward gives [B, C] logits and backward reaches every parameter", "[models][bow]") {
  torch::manual_seed(0);
  auto model = make_bow(/*hidden=*/6);
  auto batch = batch_of({{2, 3, 4}, {5}, {6, 7}});
  auto logits = model->forward(batch);
  REQUIRE(logits.sizes() == torch::IntArrayRef({3, 3}));
  logits.sum().backward();
  for (const auto& p : model->named_parameters()) {
    INFO(p.key());
    REQUIRE(p.value().grad().defined());
    CHECK(p.value().grad().abs().sum().item<double>() > 0);
  }
}

TEST_CASE("pitfall P2: bow gives a sample the same output alone and inside a padded batch", "[models][bow]") {
  torch::manual_seed(1);
  auto model = make_bow(4);
  model->eval();
  torch::NoGradGuard no_grad;
  auto alone = model->forward(batch_of({{2, 3}}));
  auto padded = model->forward(batch_of({{9, 8, 7, 6, 5, 4}, {2, 3}}));
  auto wide = model->forward(batch_of({{2, 3}}, /*pad_to=*/12));
  CHECK(torch::allclose(alone[0], padded[1], 1e-5, 1e-6));
  CHECK(torch::allclose(alone[0], wide[0], 1e-5, 1e-6));
}

namespace {
/// Whitespace-tokenised examples labelled a, b or c, encoded with their own vocabulary.
ltk::TextDataset abc_dataset(const std::vector<ltk::Example>& ex) {
  ltk::WhitespaceTokenizer tok(true);
  auto vocab = ltk::Vocabulary::build(ltk::count_tokens(ex, tok), 1, 0);
  auto labels = ltk::LabelMap::from_labels({"a", "b", "c"});
  auto targets = ltk::class_targets(labels);
  return ltk::encode_examples(ex, "mem", tok, vocab, &targets, {});
}
}  // namespace

TEST_CASE("pitfall P5: evaluation runs in eval mode and restores the mode - outputs repeat", "[models][eval]") {
  torch::manual_seed(2);
  auto model = make_bow(16, /*dropout=*/0.5);
  model->train();
  std::vector<ltk::Example> ex = {{"a", "x y", 1}, {"b", "y z", 2}, {"a", "x", 3}};
  auto data = abc_dataset(ex);
  ltk::MulticlassTask task(3, "mean");
  auto p1 = ltk::predict(*model, task, data, 2, torch::kCPU, 20);
  CHECK(model->is_training());
  auto p2 = ltk::predict(*model, task, data, 2, torch::kCPU, 20);
  CHECK(p1.scores.equal(p2.scores));
  CHECK_FALSE(p1.scores.requires_grad());  // P6: no graph kept
  CHECK(p1.scores.device().is_cpu());
}

TEST_CASE("evaluation batches samples by length and answers in the data's order", "[models][eval]") {
  torch::manual_seed(4);
  auto model = make_bow(16, /*dropout=*/0.0);
  std::vector<ltk::Example> ex;
  const char* texts[] = {"x y z x y z x", "y", "z x", "x y z x y", "y y", "z", "x x x x x x x x x", "y z"};
  for (int i = 0; i < 8; ++i) ex.push_back({i % 2 ? "a" : "b", texts[i], i + 1});
  auto data = abc_dataset(ex);
  ltk::MulticlassTask task(3, "mean");
  auto one = ltk::predict(*model, task, data, 1, torch::kCPU, 20);
  auto three = ltk::predict(*model, task, data, 3, torch::kCPU, 20);
  CHECK(torch::allclose(one.scores, three.scores, 1e-5, 1e-6));
  CHECK(three.targets.equal(data.targets({0, 1, 2, 3, 4, 5, 6, 7})));
  CHECK(one.loss_sum == Approx(three.loss_sum).epsilon(1e-5));
}

TEST_CASE("pitfall P8: a token id past the vocabulary is caught before the embedding", "[models][eval]") {
  std::vector<ltk::Example> ex = {{"a", "x y", 1}};
  ltk::WhitespaceTokenizer tok(true);
  auto vocab = ltk::Vocabulary::build(ltk::count_tokens(ex, tok), 1, 0);
  auto labels = ltk::LabelMap::from_labels({"a", "b"});
  auto targets = ltk::class_targets(labels);
  auto data = ltk::encode_examples(ex, "data.tsv", tok, vocab, &targets, {});
  auto batch = ltk::PadCollate()(data, {0});
  CHECK_NOTHROW(ltk::check_token_ids(batch, vocab.size(), data));
  REQUIRE_THROWS_WITH(ltk::check_token_ids(batch, 3, data), Contains("data.tsv:1") && Contains("token id 3"));
}

TEST_CASE("task: multiclass targets (pitfalls P4, P7, P8, P10)", "[models][task]") {
  ltk::MulticlassTask task(3, "mean");
  auto logits = torch::randn({4, 3}, torch::requires_grad());
  auto targets = torch::tensor({0, 2, 1, 2}, torch::kLong);
  auto loss = task.loss(logits, targets);
  CHECK(loss.dim() == 0);
  // P10: an [N, 1] column is accepted and equals the 1-D targets.
  CHECK(task.loss(logits, targets.unsqueeze(1)).item<double>() == Approx(loss.item<double>()));
  // P10: one-hot targets are an error naming the shape expected.
  auto one_hot = torch::one_hot(targets, 3);
  REQUIRE_THROWS_AS(task.loss(logits, one_hot), ltk::TrainError);
  REQUIRE_THROWS_WITH(task.loss(logits, one_hot), Contains("[4]") && Contains("one-hot"));
  // P8: labels 1..C instead of 0..C-1.
  REQUIRE_THROWS_WITH(task.loss(logits, torch::tensor({1, 2, 3, 1}, torch::kLong)),
                      Contains("target 3 is out of range [0, 3)"));
  REQUIRE_THROWS_WITH(task.loss(logits, torch::tensor({-1, 0, 0, 0}, torch::kLong)), Contains("target -1"));
  // P7: float targets are refused for class ids.
  REQUIRE_THROWS_WITH(task.loss(logits, targets.to(torch::kFloat)), Contains("int64"));
  // Reductions: sum = mean * N.
  ltk::MulticlassTask sum_task(3, "sum");
  CHECK(sum_task.loss(logits, targets).item<double>() == Approx(loss.item<double>() * 4));
  // P4: a non-scalar loss is refused before backward.
  REQUIRE_THROWS_WITH(ltk::check_scalar_loss(task.per_sample_loss(logits, targets)),
                      Contains("scalar") && Contains("[4]"));
  CHECK_NOTHROW(ltk::check_scalar_loss(loss));
  REQUIRE_THROWS_WITH(ltk::MulticlassTask(1, "mean"), Contains("at least 2 labels"));
}

TEST_CASE("pitfall P13: weights round-trip - another structure is refused with the names that differ",
          "[models][checkpoint]") {
  ltk::test::TempDir dir;
  torch::manual_seed(3);
  auto a = make_bow(4);
  ltk::save_weights(*a, dir.file("w.pt"));
  torch::manual_seed(4);
  auto b = make_bow(4);
  ltk::load_weights(*b, dir.file("w.pt"));
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& p : pa) CHECK(p.value().equal(pb[p.key()]));
  // The file is a plain name -> tensor dict that torch.load in Python reads.
  auto raw = ltk::test::read_text(dir.file("w.pt"));
  auto ivalue = torch::pickle_load(std::vector<char>(raw.begin(), raw.end()));
  CHECK(ivalue.toGenericDict().contains("embedding.weight"));

  auto other = make_bow(/*hidden=*/0);
  REQUIRE_THROWS_AS(ltk::load_weights(*other, dir.file("w.pt")), ltk::CheckpointError);
  REQUIRE_THROWS_WITH(ltk::load_weights(*other, dir.file("w.pt")),
                      Contains("unexpected hidden.weight") && Contains("output.weight"));
  ltk::test::write_file(dir.file("trunc.pt"), raw.substr(0, raw.size() / 2));
  REQUIRE_THROWS_WITH(ltk::load_weights(*b, dir.file("trunc.pt")), Contains("trunc.pt") && Contains("truncated"));
  REQUIRE_THROWS_WITH(ltk::load_weights(*b, dir.file("none.pt")), Contains("does not exist"));
}

namespace {

std::shared_ptr<ltk::TextModel> model_from(const nlohmann::json& section, int64_t outputs = 3,
                                           const ltk::Vocabulary* vocab = nullptr, int64_t V = 20) {
  return ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{V, outputs, 0, vocab});
}

}  // namespace

TEST_CASE("padding invariance: every model gives a sample the same output alone and in a padded batch",
          "[models][padding]") {
  std::vector<nlohmann::json> sections = {
      {{"type", "bow"}, {"embed_dim", 8}, {"ngrams", 2}, {"buckets", 13}, {"hidden_dim", 4}},
      {{"type", "textcnn"}, {"embed_dim", 8}, {"kernel_sizes", {2, 3}}, {"channels", 4}},
      {{"type", "textcnn"}, {"embed_dim", 8}, {"kernel_sizes", {5}}, {"channels", 4}},  // wider than the sample
      {{"type", "rnn"}, {"embed_dim", 8}, {"hidden_dim", 6}, {"pooling", "last"}},
      {{"type", "rnn"}, {"cell", "gru"}, {"embed_dim", 8}, {"hidden_dim", 6}, {"pooling", "max"}, {"layers", 2}},
      {{"type", "rnn"}, {"embed_dim", 8}, {"hidden_dim", 6}, {"pooling", "mean"}, {"bidirectional", false}},
      {{"type", "transformer"}, {"embed_dim", 8}, {"heads", 2}, {"layers", 2}, {"ff_dim", 16}, {"max_positions", 16}},
      {{"type", "transformer"}, {"embed_dim", 8}, {"heads", 2}, {"ff_dim", 16}, {"norm", "pre"}, {"pooling", "mean"},
       {"max_positions", 16}},
      {{"type", "bert"}, {"hidden_size", 8}, {"num_hidden_layers", 2}, {"num_attention_heads", 2},
       {"intermediate_size", 16}, {"max_position_embeddings", 16}},
      {{"type", "bert"}, {"hidden_size", 8}, {"num_hidden_layers", 1}, {"num_attention_heads", 4},
       {"intermediate_size", 16}, {"max_position_embeddings", 16}, {"pooling", "mean"}, {"hidden_act", "gelu_new"}},
      {{"type", "linear"}},
      {{"type", "linear"}, {"ngram_range", {1, 1}}, {"char_ngram_range", {2, 3}}},
  };
  for (const auto& section : sections) {
    INFO(section.dump());
    torch::manual_seed(5);
    auto model = model_from(section);
    if (section["type"] == "linear") {  // starts at zero: give it weights
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.normal_();
    }
    model->eval();
    torch::NoGradGuard no_grad;
    auto alone = model->forward(batch_of({{4, 7, 9}}));
    auto padded = model->forward(batch_of({{9, 8, 7, 6, 5, 4, 3, 2}, {4, 7, 9}, {11}}));
    auto wide = model->forward(batch_of({{4, 7, 9}, {2}}, /*pad_to=*/10));
    CHECK(torch::allclose(alone[0], padded[1], 1e-5, 1e-6));
    CHECK(torch::allclose(alone[0], wide[0], 1e-5, 1e-6));
    CHECK(torch::isfinite(model->forward(batch_of({{}, {3}}))).all().item<bool>());  // an empty sample
  }
}

TEST_CASE("textcnn: inference convolves by one GEMM over every tap - LibTorch's conv1d's features, new weights too",
          "[models][textcnn]") {
  auto model = model_from({{"type", "textcnn"}, {"embed_dim", 6}, {"kernel_sizes", {1, 2, 5}}, {"channels", 4}});
  auto* cnn = dynamic_cast<ltk::TextCnnImpl*>(model.get());
  REQUIRE(cnn);
  model->eval();
  for (auto dtype : {torch::kDouble, torch::kFloat})
    // 60 x 9 rows: three slices of the GEMM's rows; 37 x 7 = 259: a last slice without a whole
    // window of width 5; length 5: the widest kernel's width.
    for (int64_t batch : {1, 2, 7, 37, 60})
      for (int64_t length : {5, 7, 9}) {
        INFO(c10::toString(dtype) << " batch " << batch << " length " << length);
        model->to(dtype);
        torch::manual_seed(batch * 10 + length);
        auto lengths = torch::randint(1, length + 1, {batch}, torch::kLong);
        auto x = torch::randn({batch, length, 6}, torch::TensorOptions().dtype(dtype)) *
                 (torch::arange(length).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2).to(dtype);
        torch::NoGradGuard no_grad;
        auto reference = cnn->pooled_by_conv(x, lengths);
        auto pooled = cnn->pooled_by_gemm(x, lengths);
        REQUIRE(pooled.sizes() == reference.sizes());
        // Sums of 6 x 5 products at most: float64 to 1e-12, float32 within its rounding of such sums.
        const double tol = dtype == torch::kDouble ? 1e-12 : 1e-5;
        CHECK(torch::allclose(pooled, reference, tol, tol));
        // Weights changed in place are the ones the next call uses (the stacked taps are rebuilt).
        cnn->convs[1]->as<torch::nn::Conv1d>()->weight.neg_();
        CHECK(torch::allclose(cnn->pooled_by_gemm(x, lengths), cnn->pooled_by_conv(x, lengths), tol, tol));
      }
  // The whole model: inference (the GEMM) gives training's forward pass (LibTorch's conv1d), float64.
  model->to(torch::kDouble);
  auto batch = batch_of({{9, 8, 7, 6, 5, 4, 3, 2}, {4, 7, 9}, {11}});
  auto trained = model->forward(batch).detach();
  torch::NoGradGuard no_grad;
  CHECK(torch::allclose(model->forward(batch), trained, 1e-12, 1e-12));
}

TEST_CASE("models: config errors name the key", "[models][config]") {
  using nlohmann::json;
  json base = {{"data", {{"train", "x.tsv"}, {"max_len", 64}}}};
  auto with = [&](json model, json extra = json::object()) {
    json j = base;
    j["model"] = model;
    j.update(extra);
    return j;
  };
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "transformer"}, {"embed_dim", 10}, {"heads", 4}})),
                      Contains("'model.heads'") && Contains("divide"));
  json long_input = with({{"type", "transformer"}, {"max_positions", 32}});
  REQUIRE_THROWS_WITH(ltk::parse_config(long_input), Contains("'data.max_len'") && Contains("32"));
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "bow"}, {"sparse", true}})),
                      Contains("'model.sparse'") && Contains("adagrad"));
  CHECK_NOTHROW(ltk::parse_config(with({{"type", "bow"}, {"sparse", true}}, {{"optimizer", {{"type", "sgd"}}}})));
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "rnn"}, {"cell", "lstn"}})),
                      Contains("'model.cell'") && Contains("did you mean 'lstm'"));
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "textcnn"}, {"kernel_sizes", json::array()}})),
                      Contains("'model.kernel_sizes'"));
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "bow"}, {"freeze_embeddings", true}})),
                      Contains("'model.freeze_embeddings'") && Contains("pretrained"));
}

TEST_CASE("pretrained vectors: rows copied by token, the rest keep their init, frozen on request",
          "[models][pretrained]") {
  ltk::test::TempDir dir;
  ltk::test::write_file(dir.file("vec.txt"), "3 4\nhello 1 2 3 4\nunknownword 9 9 9 9\nworld 0.5 0.5 0.5 0.5\n");
  ltk::TokenCounter counter;
  for (auto t : {"hello", "world", "other"}) counter.add(t);
  auto vocab = ltk::Vocabulary::build(counter, 1, 0);
  nlohmann::json section = {{"type", "textcnn"}, {"embed_dim", 4}, {"kernel_sizes", {1}}, {"channels", 2},
                            {"pretrained", dir.file("vec.txt")}, {"freeze_embeddings", true}};
  torch::manual_seed(6);
  auto model = model_from(section, 2, &vocab, vocab.size());
  auto weight = model->named_parameters()["embedding.weight"];
  CHECK(weight[vocab.id("hello")].equal(torch::tensor({1.f, 2.f, 3.f, 4.f})));
  CHECK(weight[vocab.id("world")].equal(torch::full({4}, 0.5f)));
  CHECK(weight[vocab.id("other")].abs().sum().item<float>() > 0);  // random init kept
  CHECK_FALSE(weight.requires_grad());
  // Frozen rows stay out of the optimiser.
  ltk::OptimizerConfig oc;
  auto opt = ltk::make_optimizer(oc, model->parameters());
  size_t in_optimizer = 0;
  for (const auto& g : opt->param_groups()) in_optimizer += g.params().size();
  CHECK(in_optimizer == model->parameters().size() - 1);

  ltk::test::write_file(dir.file("bad.txt"), "hello 1 2 3\n");
  section["pretrained"] = dir.file("bad.txt");
  REQUIRE_THROWS_WITH(model_from(section, 2, &vocab, vocab.size()),
                      Contains("bad.txt:1") && Contains("dimension 3") && Contains("embed_dim"));
}

TEST_CASE("tasks: binary, multilabel and regression targets (pitfall P7)", "[models][task]") {
  ltk::TaskConfig tc;
  tc.type = "binary";
  auto labels = ltk::LabelMap::from_labels({"neg", "pos"});
  ltk::BinaryTask binary(tc, labels);
  auto out = torch::randn({3, 1});
  CHECK(binary.loss(out, torch::tensor({0.f, 1.f, 1.f})).dim() == 0);
  CHECK(binary.loss(out, torch::tensor({0.f, 1.f, 1.f}).unsqueeze(1)).dim() == 0);
  // The article's example: targets 1, 2, 3 give a negative BCE.
  REQUIRE_THROWS_WITH(binary.loss(out, torch::tensor({1.f, 2.f, 3.f})), Contains("[0, 1]") && Contains("3"));
  REQUIRE_THROWS_WITH(binary.loss(out, torch::tensor({0, 1, 1}, torch::kLong)), Contains("float"));
  auto pred = binary.prediction(std::vector<float>{0.8f}.data());
  CHECK(pred["label"] == "pos");
  CHECK(pred["scores"]["neg"].get<double>() == Approx(0.2));
  REQUIRE_THROWS_WITH(ltk::BinaryTask(tc, ltk::LabelMap::from_labels({"a", "b", "c"})), Contains("exactly 2 labels"));

  tc.type = "multilabel";
  auto three = ltk::LabelMap::from_labels({"a", "b", "c"});
  ltk::MultilabelTask multi(tc, three);
  auto logits = torch::randn({2, 3});
  CHECK(multi.loss(logits, torch::tensor({{1.f, 0.f, 1.f}, {0.f, 0.f, 0.f}})).dim() == 0);
  REQUIRE_THROWS_WITH(multi.loss(logits, torch::tensor({0, 2}, torch::kLong)), Contains("[2, 3]"));
  auto mp = multi.prediction(std::vector<float>{0.9f, 0.1f, 0.6f}.data());
  CHECK(mp["labels"].dump() == R"(["a","c"])");

  tc.type = "regression";
  ltk::RegressionTask reg(tc);
  ltk::Predictions p;
  p.scores = torch::tensor({1.f, 2.f, 4.f}).unsqueeze(1);
  p.targets = torch::tensor({1.f, 3.f, 2.f});
  p.samples = 3;
  auto report = reg.evaluate(p);
  CHECK(report.get("mae") == Approx(1.0));
  CHECK(report.get("rmse") == Approx(std::sqrt(5.0 / 3)));
  REQUIRE_THROWS_WITH(report.get("accuracy"), Contains("no 'accuracy'"));
}

TEST_CASE("tasks: multilabel metrics and label encoding", "[models][task]") {
  ltk::TaskConfig tc;
  tc.type = "multilabel";
  std::vector<ltk::Example> ex = {{"a,c", "x", 1}, {"b", "y", 2}, {"c, a", "z", 3}};
  auto labels = ltk::labels_from_examples(tc, ex);
  REQUIRE(labels.names() == std::vector<std::string>{"a", "b", "c"});
  ltk::MultilabelTask task(tc, labels);
  ltk::WhitespaceTokenizer tok(true);
  ltk::Vocabulary vocab;
  auto enc = task.target_encoder();
  auto data = ltk::encode_examples(ex, "m.tsv", tok, vocab, &enc, {});
  auto t = data.targets({0, 1, 2});
  CHECK(t.equal(torch::tensor({{1.f, 0.f, 1.f}, {0.f, 1.f, 0.f}, {1.f, 0.f, 1.f}})));
  ltk::Predictions p;
  p.scores = torch::tensor({{0.9f, 0.1f, 0.8f}, {0.2f, 0.1f, 0.7f}, {0.9f, 0.2f, 0.9f}});
  p.targets = t;
  p.samples = 3;
  auto r = task.evaluate(p);
  CHECK(r.get("subset_accuracy") == Approx(2.0 / 3));
  CHECK(r.get("hamming_loss") == Approx(2.0 / 9));
  CHECK(r.get("micro_f1") == Approx(2 * 4.0 / (2 * 4 + 1 + 1)));
  std::vector<ltk::Example> bad = {{"a,zz", "x", 7}};
  REQUIRE_THROWS_WITH(ltk::encode_examples(bad, "m.tsv", tok, vocab, &enc, {}), Contains("m.tsv:7") && Contains("'zz'"));
  ltk::TaskConfig rc;
  rc.type = "regression";
  ltk::RegressionTask reg(rc);
  auto renc = reg.target_encoder();
  std::vector<ltk::Example> nan = {{"1.5", "x", 1}, {"abc", "y", 2}};
  REQUIRE_THROWS_WITH(ltk::encode_examples(nan, "r.tsv", tok, vocab, &renc, {}), Contains("r.tsv:2") && Contains("'abc'"));
}

TEST_CASE("optimiser: ltk's Adam and AdamW give LibTorch's numbers exactly, step after step", "[models][optim]") {
  for (std::string type : {"adam", "adamw"}) {
    for (double wd : {0.0, 0.01}) {
      torch::manual_seed(11);
      auto a = torch::randn({50, 7}).requires_grad_(true);
      auto b = a.detach().clone().requires_grad_(true);
      ltk::OptimizerConfig oc;
      oc.type = type;
      oc.lr = 0.01;
      oc.weight_decay = wd;
      auto ours = ltk::make_optimizer(oc, {a});
      std::unique_ptr<torch::optim::Optimizer> theirs;
      if (type == "adam")
        theirs = std::make_unique<torch::optim::Adam>(
            std::vector<torch::Tensor>{b}, torch::optim::AdamOptions(0.01).betas({oc.beta1, oc.beta2}).eps(oc.eps).weight_decay(wd));
      else
        theirs = std::make_unique<torch::optim::AdamW>(
            std::vector<torch::Tensor>{b}, torch::optim::AdamWOptions(0.01).betas({oc.beta1, oc.beta2}).eps(oc.eps).weight_decay(wd));
      for (int step = 0; step < 6; ++step) {
        auto g = torch::randn({50, 7});
        a.mutable_grad() = g.clone();
        b.mutable_grad() = g.clone();
        ours->step();
        theirs->step();
        INFO(type << " weight_decay " << wd << " step " << step);
        REQUIRE(a.equal(b));
      }
      // Resume: ltk's state saved and loaded into a fresh ltk optimiser goes on exactly as
      // LibTorch's, so the state is keyed as LibTorch keys it (a changed key format would start
      // the moments from zero here and differ).
      auto a2 = a.detach().clone().requires_grad_(true);
      auto resumed = ltk::make_optimizer(oc, {a2});
      {
        torch::serialize::OutputArchive out;
        ours->save(out);
        std::ostringstream bytes;
        out.save_to(bytes);
        torch::serialize::InputArchive in;
        std::istringstream read(bytes.str());
        in.load_from(read);
        resumed->load(in);
      }
      auto g = torch::randn({50, 7});
      a2.mutable_grad() = g.clone();
      b.mutable_grad() = g.clone();
      resumed->step();
      theirs->step();
      REQUIRE(a2.equal(b));
    }
  }
  // Bit-exactness holds within one machine (both sides run the same kernels here); across CPUs
  // only the float64 parity test's tolerance is promised.
}

TEST_CASE("fine-tuning: head_lr and layer_decay give each layer its own learning rate", "[models][optim]") {
  nlohmann::json section = {{"type", "bert"}, {"hidden_size", 8}, {"num_hidden_layers", 3}, {"num_attention_heads", 2},
                            {"intermediate_size", 16}, {"max_position_embeddings", 16}, {"freeze_layers", 1}};
  auto model = ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{30, 2, 0, nullptr});
  ltk::OptimizerConfig oc;
  oc.type = "adamw";
  oc.lr = 1e-4;
  oc.head_lr = 1e-3;
  oc.layer_decay = 0.5;
  oc.no_decay_bias_norm = true;
  auto scales = ltk::lr_scales(oc, *model);
  auto named = model->named_parameters();
  std::map<std::string, double> by_name;
  for (size_t i = 0; i < named.size(); ++i) by_name[named[i].key()] = scales[i];
  CHECK(by_name.at("classifier.weight") == Approx(10.0));
  CHECK(by_name.at("bert.pooler.dense.weight") == Approx(1.0));
  CHECK(by_name.at("bert.encoder.layer.2.output.dense.weight") == Approx(0.5));
  CHECK(by_name.at("bert.encoder.layer.1.attention.self.query.bias") == Approx(0.25));
  CHECK(by_name.at("bert.embeddings.word_embeddings.weight") == Approx(0.0625));
  // The lowest layer is frozen: it stays out of the optimiser.
  CHECK_FALSE(named["bert.encoder.layer.0.output.dense.weight"].requires_grad());
  CHECK(named["bert.encoder.layer.1.output.dense.weight"].requires_grad());
  auto opt = ltk::make_optimizer(oc, model->parameters(), scales);
  std::map<int64_t, int> groups;  // by lr in units of 1e-9
  int64_t in_groups = 0;
  for (const auto& g : opt->param_groups()) {
    groups[std::llround(g.options().get_lr() * 1e9)]++;
    in_groups += static_cast<int64_t>(g.params().size());
  }
  int64_t trainable = 0;
  for (const auto& p : model->parameters()) trainable += p.requires_grad();
  CHECK(in_groups == trainable);
  // lr x {10 (head), 1 (pooler), 0.5, 0.25 (layers 2, 1), 0.0625 (embeddings)}, decayed and not.
  CHECK(groups.size() == 5);
  CHECK(groups.at(1000000) == 2);
  CHECK(groups.at(6250) == 2);
  auto group_scales = ltk::group_lr_scales(*opt, oc.lr);
  ltk::set_lr(*opt, 2e-4, group_scales);  // a schedule moves every group, the ratios kept
  for (size_t g = 0; g < group_scales.size(); ++g)
    CHECK(opt->param_groups()[g].options().get_lr() == Approx(2e-4 * group_scales[g]));
}

TEST_CASE("mlm: the masking follows the recipe - share selected, 80/10/10, no specials, whole words", "[models][task][mlm]") {
  ltk::test::TempDir dir;
  std::string vocab_text = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (int i = 0; i < 195; ++i) vocab_text += (i % 3 ? "##p" : "w") + std::to_string(i) + "\n";
  ltk::test::write_file(dir.file("vocab.txt"), vocab_text);
  auto vocab = ltk::Vocabulary::load_wordpiece(dir.file("vocab.txt"));
  ltk::TaskConfig tc;
  tc.type = "mlm";
  // Samples of random ids, [CLS] ... [SEP], the pieces grouped into words at random.
  std::mt19937 rng(4);
  auto make = [&](bool whole) {
    ltk::TextDataset data;
    data.set_source("gen", ltk::TargetKind::none, 0);
    for (int s = 0; s < 64; ++s) {
      int n = 3 + static_cast<int>(rng() % 30);
      std::vector<int32_t> ids = {2};
      std::vector<uint8_t> flags = {0};
      for (int k = 0; k < n; ++k) {
        ids.push_back(5 + static_cast<int32_t>(rng() % 195));
        flags.push_back(k > 0 && rng() % 2);  // words of one, two, three ... pieces
      }
      ids.push_back(3);
      flags.push_back(0);
      data.add(ids, static_cast<int64_t>(ids.size()), {}, 0.0f, s + 1);
      if (whole) data.set_word_flags(flags);
    }
    return data;
  };
  for (bool whole : {false, true}) {
    INFO("whole_word " << whole);
    tc.whole_word = whole;
    ltk::MaskedLmTask task(tc);
    task.set_vocabulary(vocab);
    auto data = make(whole);
    std::vector<int64_t> all(64);
    std::iota(all.begin(), all.end(), 0);
    double candidates = 0, selected = 0, masked = 0, random = 0, kept = 0, hf_target = 0;
    for (uint64_t seed = 0; seed < 200; ++seed) {
      ltk::Batch batch = ltk::PadCollate()(data, all);
      auto original = batch.ids.clone();
      task.prepare_batch(batch, seed);
      auto sel = batch.labels != -100;
      auto special = original.eq(2) | original.eq(3) | original.eq(0);
      REQUIRE_FALSE((sel & special).any().item<bool>());  // specials never selected
      REQUIRE(torch::equal(batch.labels.masked_select(sel), original.masked_select(sel)));  // targets are the originals
      REQUIRE(torch::equal(batch.ids.masked_select(~sel), original.masked_select(~sel)));   // the rest untouched
      candidates += (batch.mask & ~special).sum().item<double>();
      for (int64_t b = 0; b < 64; ++b)  // Hugging Face's whole-word count: round(p x length with specials)
        hf_target += std::max(1.0, std::nearbyint(0.15 * static_cast<double>(batch.lengths[b].item<int64_t>())));
      selected += sel.sum().item<double>();
      auto now = batch.ids.masked_select(sel), was = original.masked_select(sel);
      masked += now.eq(4).sum().item<double>();
      kept += now.eq(was).sum().item<double>();
      random += (now.ne(4) & now.ne(was)).sum().item<double>();
      if (whole) {  // a word is selected whole or not at all
        auto cont = batch.continues;
        auto prev = torch::cat({torch::zeros({64, 1}, torch::kBool), sel.slice(1, 0, -1)}, 1);
        REQUIRE(torch::equal((cont & sel), (cont & prev)));
      }
      ltk::Batch again = ltk::PadCollate()(data, all);
      task.prepare_batch(again, seed);
      REQUIRE(torch::equal(again.ids, batch.ids));  // the seed alone decides
      // ... with each sample's index: the same masks in another batch (evaluation at any batch size).
      ltk::Batch alone = ltk::PadCollate()(data, {5});
      task.prepare_batch(alone, seed);
      REQUIRE(torch::equal(alone.ids[0].slice(0, 0, alone.lengths[0].item<int64_t>()),
                           batch.ids[5].slice(0, 0, alone.lengths[0].item<int64_t>())));
      ltk::Batch other = ltk::PadCollate()(data, all);
      task.prepare_batch(other, seed + 1000);  // another epoch or batch: other masks
      REQUIRE_FALSE(torch::equal(other.ids, batch.ids));
    }
    // Within 5 standard deviations of the recipe (binomial), over ~200k candidates.
    const double share = selected / candidates;
    if (whole) {  // at most Hugging Face's count per sample, less only when no whole word fits the rest
      CHECK(selected <= hf_target);
      CHECK(selected >= 0.9 * hf_target);
    } else
      CHECK(std::abs(share - 0.15) < 5 * std::sqrt(0.15 * 0.85 / candidates));
    auto near = [&](double count, double p) { return std::abs(count / selected - p) < 5 * std::sqrt(p * (1 - p) / selected); };
    CHECK(near(masked, 0.8));
    CHECK(near(random, 0.1 * 199.0 / 200.0));  // a random piece equal to the original counts as kept
    CHECK(near(kept, 0.1 + 0.1 / 200.0));
  }
}

TEST_CASE("wordpiece vocabulary: learnt from texts, specials first, continuations with ##, CJK whole", "[data][wordpiece]") {
  ltk::test::TempDir dir;
  std::vector<std::string> texts;
  for (const auto& line : ltk::test::generated_corpus(300, 5, 0.3)) texts.push_back(line);
  ltk::WordPieceTrainOptions o;
  o.size = 250;
  auto vocab = ltk::train_wordpiece(texts, o);
  REQUIRE(vocab.size() == 250);
  CHECK(std::vector<std::string>(vocab.begin(), vocab.begin() + 5) ==
        std::vector<std::string>{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"});
  CHECK(std::set<std::string>(vocab.begin(), vocab.end()).size() == vocab.size());
  bool continuation = false, cjk_joined = false;
  for (const auto& v : vocab) {
    continuation |= v.rfind("##", 0) == 0 && v.size() > 3;
    auto cps = 0;
    for (size_t i = 0; i < v.size();) {
      char32_t c = ltk::utf8::next(v, i);
      cps += ltk::is_cjk_ideograph(c);
    }
    cjk_joined |= cps > 1;  // every ideograph is a word of its own: none is merged with another
  }
  CHECK(continuation);
  CHECK_FALSE(cjk_joined);
  // Every character is in: the texts it was learnt from tokenise without [UNK].
  std::string joined;
  for (const auto& v : vocab) joined += v + "\n";
  ltk::test::write_file(dir.file("vocab.txt"), joined);
  ltk::WordPieceTokenizer tok(dir.file("vocab.txt"), true);
  for (const auto& t : texts)
    for (const auto& piece : tok.tokenize(t)) REQUIRE(piece != "[UNK]");
  // The same texts give the same vocabulary.
  CHECK(ltk::train_wordpiece(texts, o) == vocab);
  REQUIRE_THROWS_WITH(ltk::train_wordpiece(texts, ltk::WordPieceTrainOptions{5}), Contains("special"));
}

namespace {

/// BERT's hidden states [B, T, H] computed the plain way from a model's parameters (every position,
/// an additive mask on padded keys, no dropout): the reference of ltk's BERT paths.
torch::Tensor reference_bert_hidden(ltk::TextModel& model, const ltk::Batch& batch, const std::string& act,
                                    int64_t heads) {
  std::map<std::string, torch::Tensor> w;
  for (const auto& p : model.named_parameters()) w[p.key()] = p.value().detach();
  auto get = [&](const std::string& name) {
    REQUIRE(w.count(name));
    return w.at(name);
  };
  const int64_t B = batch.ids.size(0), T = batch.ids.size(1), H = get("bert.embeddings.word_embeddings.weight").size(1);
  auto ln = [&](const torch::Tensor& x, const std::string& name) {
    return torch::layer_norm(x, {H}, get(name + ".weight"), get(name + ".bias"), 1e-12);
  };
  auto linear = [&](const torch::Tensor& x, const std::string& name) {
    return torch::matmul(x, get(name + ".weight").t()) + get(name + ".bias");
  };
  auto types = batch.token_types.defined() ? batch.token_types : torch::zeros({B, T}, torch::kLong);
  auto x = get("bert.embeddings.word_embeddings.weight").index_select(0, batch.ids.flatten()).view({B, T, H}) +
           get("bert.embeddings.token_type_embeddings.weight").index_select(0, types.flatten()).view({B, T, H}) +
           get("bert.embeddings.position_embeddings.weight").narrow(0, 0, T).unsqueeze(0);
  x = ln(x, "bert.embeddings.LayerNorm");
  auto additive = batch.mask.logical_not().view({B, 1, 1, T}).to(x.dtype()) * -1e30;
  const int64_t d = H / heads;
  for (int64_t l = 0; w.count("bert.encoder.layer." + std::to_string(l) + ".attention.self.query.weight"); ++l) {
    const std::string n = "bert.encoder.layer." + std::to_string(l);
    auto split = [&](const torch::Tensor& t) { return t.view({B, T, heads, d}).transpose(1, 2); };
    auto q = split(linear(x, n + ".attention.self.query")), k = split(linear(x, n + ".attention.self.key")),
         v = split(linear(x, n + ".attention.self.value"));
    auto probs = torch::softmax(torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(d)) + additive, -1);
    auto context = torch::matmul(probs, v).transpose(1, 2).reshape({B, T, H});
    auto a = ln(linear(context, n + ".attention.output.dense") + x, n + ".attention.output.LayerNorm");
    auto h = linear(a, n + ".intermediate.dense");
    h = act == "relu" ? torch::relu(h) : act == "gelu" ? torch::gelu(h) : torch::gelu(h, "tanh");
    x = ln(linear(h, n + ".output.dense") + a, n + ".output.LayerNorm");
  }
  return x;
}

}  // namespace

TEST_CASE(
    "bert: the forward pass (the fused layer, real tokens alone, the last layer at [CLS] alone), with grad mode on "
    "and off, gives the plain computation's outputs",
    "[models][bert]") {
  // ltk computes the dense layers on a padded batch's real tokens alone, the last layer at [CLS]
  // alone under a [CLS] pooler, and in float32 inference without padding LibTorch's fused layer.
  // Each, with grad mode on (the path training takes; its gradients are test_parity's, against
  // PyTorch) and off, must give a plain padded computation's outputs: float64 to rounding (the
  // fused layer is float32 only), float32 within float32's rounding.
  const std::vector<std::vector<int64_t>> padded = {{2, 9, 8, 7, 3}, {2, 5, 3}, {2, 11, 12, 13, 14, 15, 3}};
  const std::vector<std::vector<int64_t>> full = {{2, 9, 8, 7, 3}, {2, 5, 3, 4, 4}};
  for (const char* act : {"gelu", "relu", "gelu_new"})
    for (const char* pooling : {"cls", "mean"})
      for (auto dtype : {torch::kFloat, torch::kDouble})
        for (const auto* rows : {&padded, &full})
          for (bool grad : {true, false}) {
            INFO(act << " " << pooling << " " << c10::toString(dtype) << " rows " << rows->size() << " grad " << grad);
            nlohmann::json section = {{"type", "bert"},          {"hidden_size", 16},
                                      {"num_hidden_layers", 3},  {"num_attention_heads", 4},
                                      {"intermediate_size", 32}, {"max_position_embeddings", 16},
                                      {"hidden_act", act},       {"pooling", pooling}};
            torch::manual_seed(9);
            auto model = ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{30, 3, 0, nullptr});
            model->to(dtype);
            model->eval();  // no dropout
            auto* bert = dynamic_cast<ltk::BertClassifierImpl*>(model.get());
            REQUIRE(bert);
            auto batch = batch_of(*rows);
            if (rows == &padded) {  // a sentence pair's token types: 1 from the middle of each text on
              batch.token_types =
                  (torch::arange(batch.ids.size(1)).unsqueeze(0) >= batch.lengths.unsqueeze(1) / 2).to(torch::kLong) *
                  batch.mask.to(torch::kLong);
            }
            auto hidden_reference = reference_bert_hidden(*model, batch, act, 4);
            auto pooled = std::string(pooling) == "cls"
                              ? torch::tanh(torch::matmul(hidden_reference.select(1, 0),
                                                          bert->bert->pooler->weight.detach().t()) +
                                            bert->bert->pooler->bias.detach())
                              : bert->bert->pool(hidden_reference, batch);
            auto reference =
                torch::matmul(pooled, bert->classifier->weight.detach().t()) + bert->classifier->bias.detach();
            torch::AutoGradMode mode(grad);
            auto out = model->forward(batch).detach();
            auto hidden = bert->bert->forward(batch).detach();
            const double rtol = dtype == torch::kDouble ? 1e-12 : 1e-5, atol = dtype == torch::kDouble ? 1e-12 : 1e-5;
            CHECK(torch::allclose(out, reference, rtol, atol));
            // Inference: the direct path on plain arrays (bert_direct.h) takes these batches; LibTorch's
            // operators must give the same outputs when it is turned off.
            auto direct = ltk::try_bert_direct(bert->direct_weights(), batch, bert->direct_max_tokens());
            CHECK(direct.defined() == (!grad && ltk::bert_direct_enabled() && ltk::blas_has_gemm()));
            if (direct.defined()) {
              CHECK(torch::allclose(direct, reference, rtol, atol));
              bert->bert->direct_max_tokens = 0;
              CHECK(torch::allclose(model->forward(batch).detach(), reference, rtol, atol));
              bert->bert->direct_max_tokens = ltk::BertEncoderImpl::kDirectMaxTokens;
            }
            // Every real position's hidden state, and [CLS]'s from first_token.
            auto real = batch.mask.unsqueeze(2).to(dtype);
            CHECK(torch::allclose(hidden * real, hidden_reference * real, rtol, atol));
            CHECK(torch::allclose(bert->bert->first_token(batch).detach(), hidden_reference.select(1, 0), rtol, atol));
          }
}

TEST_CASE("bert: weights changed in place, loaded or converted after a forward pass are the ones the next one uses",
          "[models][bert]") {
  // Inference keeps query, key and value as one matrix (and a bf16 model's LayerNorm weights in
  // float32) between calls: a step, a load or a conversion of the weights must not leave it stale.
  nlohmann::json section = {{"type", "bert"},           {"hidden_size", 16},       {"num_hidden_layers", 2},
                            {"num_attention_heads", 4}, {"intermediate_size", 32}, {"max_position_embeddings", 16}};
  torch::manual_seed(5);
  auto model = ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{30, 3, 0, nullptr});
  model->eval();
  auto* bert = dynamic_cast<ltk::BertClassifierImpl*>(model.get());
  REQUIRE(bert);
  auto batch = batch_of({{2, 9, 8, 7, 3}, {2, 5, 3}});
  auto full = batch_of({{2, 9, 8, 7, 3}, {2, 5, 3, 4, 4}});  // no padding: the fused layer in float32
  auto check = [&](const std::string& when, torch::Dtype dtype) {
    INFO(when);
    torch::NoGradGuard no_grad;
    for (const auto* b : {&batch, &full}) {
      auto reference = reference_bert_hidden(*model, *b, "gelu", 4);
      auto real = b->mask.unsqueeze(2).to(dtype);
      const double tol = dtype == torch::kFloat ? 1e-5 : 1e-12;
      CHECK(torch::allclose(bert->bert->forward(*b).to(dtype) * real, reference.to(dtype) * real, tol, tol));
    }
  };
  check("first call", torch::kFloat);
  {
    torch::NoGradGuard no_grad;
    auto layer0 = bert->bert->layer[0];
    for (auto& p : layer0->named_parameters()) p.value().add_(0.05);  // an optimiser step: the version moves
  }
  check("after an in-place step", torch::kFloat);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) p.value().set_data(p.value().detach().clone().mul_(0.9));
  }
  check("after the storages are replaced", torch::kFloat);
  model->to(torch::kDouble);
  check("after a conversion to float64", torch::kDouble);
}

TEST_CASE("bert: the direct path declines what it cannot take, and LibTorch's operators answer it", "[models][bert]") {
  nlohmann::json section = {{"type", "bert"},           {"hidden_size", 16},       {"num_hidden_layers", 2},
                            {"num_attention_heads", 4}, {"intermediate_size", 32}, {"max_position_embeddings", 16}};
  torch::manual_seed(6);
  auto model = ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{30, 3, 0, nullptr});
  model->to(torch::kDouble);
  model->eval();
  auto* bert = dynamic_cast<ltk::BertClassifierImpl*>(model.get());
  REQUIRE(bert);
  if (!ltk::bert_direct_enabled()) LTK_SKIP("LTK_BERT_DIRECT=0 in the environment");
  if (!ltk::blas_has_gemm()) LTK_SKIP("the loaded BLAS has no cblas_sgemm and cblas_dgemm");
  const auto batch = batch_of({{2, 9, 8, 7, 3}, {2, 5, 3}});  // 8 real tokens
  auto taken = [&](const ltk::Batch& b, int64_t max_tokens) {
    return ltk::try_bert_direct(bert->direct_weights(), b, max_tokens).defined();
  };
  torch::NoGradGuard no_grad;
  REQUIRE(taken(batch, 8));
  CHECK(bert->padding_free(8));
  CHECK_FALSE(taken(batch, 7));  // more tokens than it may take
  {
    torch::AutoGradMode grad(true);  // a graph to record: training's path
    CHECK_FALSE(taken(batch, 8));
  }
  auto first_padded = batch;  // a sample whose first position is padding: no [CLS] row to pool
  first_padded.mask = first_padded.mask.clone();
  first_padded.mask[1][0] = false;
  CHECK_FALSE(taken(first_padded, 100));
  CHECK(torch::isfinite(model->forward(first_padded)).all().item<bool>());
  auto outside = batch;  // an id outside the vocabulary: LibTorch's path says so
  outside.ids = outside.ids.clone();
  outside.ids[0][2] = 30;
  CHECK_FALSE(taken(outside, 100));
  CHECK_THROWS_WITH(model->forward(outside), Contains("outside the model's vocabulary of 30"));
  auto outside_padding = batch;  // even at a padded position, as LibTorch's path checks every id
  outside_padding.ids = outside_padding.ids.clone();
  outside_padding.ids[1][4] = 30;
  CHECK_FALSE(taken(outside_padding, 100));
  CHECK_THROWS_WITH(model->forward(outside_padding), Contains("outside the model's vocabulary of 30"));
  CHECK_FALSE(taken(batch_of({{}, {}}), 100));  // no position at all
  // Several intra-op threads: LibTorch's operators beyond kDirectMaxTokensThreaded tokens.
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  CHECK(bert->direct_max_tokens() == ltk::BertEncoderImpl::kDirectMaxTokensThreaded);
  CHECK_FALSE(bert->padding_free(ltk::BertEncoderImpl::kDirectMaxTokensThreaded + 1));
  at::set_num_threads(1);
  CHECK(bert->padding_free(ltk::BertEncoderImpl::kDirectMaxTokensThreaded + 1));
  at::set_num_threads(threads);
  // A bf16 or int8 deploy artifact runs LibTorch's (and oneDNN's) kernels.
  model->to(torch::kFloat);
  CHECK(bert->padding_free(8));
  auto bf16 = ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{30, 3, 0, nullptr});
  dynamic_cast<ltk::Quantizable&>(*bf16).quantize("bf16");
  auto* bf16_bert = dynamic_cast<ltk::BertClassifierImpl*>(bf16.get());
  CHECK_FALSE(bf16_bert->padding_free(8));
  CHECK_FALSE(ltk::try_bert_direct(bf16_bert->direct_weights(), batch, 100).defined());
  if (!ltk::int8_unavailable().empty()) LTK_SKIP(ltk::int8_unavailable());
  bert->quantize("int8");
  CHECK_FALSE(bert->padding_free(8));
}

TEST_CASE(
    "bert: the direct path on weights far from their init, masks with holes, and one large batch between small "
    "ones gives LibTorch's outputs",
    "[models][bert]") {
  // At the init's spread (0.02) attention is nearly uniform and a logit is about 0.01: a wrong scale
  // or position would hide under float32's rounding. Weights of spread 0.5 make every step count.
  if (!ltk::bert_direct_enabled()) LTK_SKIP("LTK_BERT_DIRECT=0 in the environment");
  if (!ltk::blas_has_gemm()) LTK_SKIP("the loaded BLAS has no cblas_sgemm and cblas_dgemm");
  for (const char* pooling : {"cls", "mean"}) {
    INFO(pooling);
    nlohmann::json section = {{"type", "bert"},           {"hidden_size", 16},       {"num_hidden_layers", 2},
                              {"num_attention_heads", 2}, {"intermediate_size", 32}, {"max_position_embeddings", 64},
                              {"pooling", pooling}};
    torch::manual_seed(8);
    auto model = ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{40, 3, 0, nullptr});
    auto* bert = dynamic_cast<ltk::BertClassifierImpl*>(model.get());
    REQUIRE(bert);
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.normal_(0.0, 0.5);
    model->to(torch::kDouble);
    model->eval();
    auto small = batch_of({{2, 9, 8, 7, 3}, {2, 5, 3}, {2, 30, 31, 32, 33, 34, 35, 3}});
    auto holes = small;  // real tokens at positions 0, 2, 3: positions are columns, not ranks
    holes.mask = holes.mask.clone();
    holes.mask[0][1] = false;
    holes.mask[2][4] = false;
    std::vector<std::vector<int64_t>> rows;  // 120 texts of 40 tokens: past the 4 MB a thread keeps
    for (int64_t i = 0; i < 120; ++i) {
      std::vector<int64_t> r(40);
      for (int64_t t = 0; t < 40; ++t) r[static_cast<size_t>(t)] = 1 + (i * 7 + t * 3) % 39;
      rows.push_back(r);
    }
    auto large = batch_of(rows);
    auto libtorch = [&](const ltk::Batch& b) {
      bert->bert->direct_max_tokens = 0;
      auto out = model->forward(b);
      bert->bert->direct_max_tokens = ltk::BertEncoderImpl::kDirectMaxTokens;
      return out;
    };
    for (const auto* b : {&small, &holes, &large, &small, &holes}) {
      auto reference = libtorch(*b);
      REQUIRE(reference.abs().max().item<double>() > 0.5);  // logits far from zero: the spread took
      auto direct = ltk::try_bert_direct(bert->direct_weights(), *b, bert->direct_max_tokens());
      REQUIRE(direct.defined());
      // float64: the same sums in other orders, with LayerNorm's and softmax's few operations a value.
      CHECK(torch::allclose(direct, reference, 1e-10, 1e-10));
    }
    // float32 against float64: the dot products (at most 32 terms) and normalisations of two layers
    // each round at float32's 6e-8 relative; 1e-4 of the logits' scale is over 100 times that.
    model->to(torch::kFloat);
    for (const auto* b : {&small, &holes, &large}) {
      auto direct32 = ltk::try_bert_direct(bert->direct_weights(), *b, bert->direct_max_tokens());
      REQUIRE(direct32.defined());
      model->to(torch::kDouble);
      auto reference = libtorch(*b);
      model->to(torch::kFloat);
      const double scale = reference.abs().max().item<double>();
      CHECK((direct32.to(torch::kDouble) - reference).abs().max().item<double>() <= 1e-4 * scale);
    }
  }
}

TEST_CASE("bert: a sample without a real token leaves the others' inference outputs as they are", "[models][bert]") {
  nlohmann::json section = {{"type", "bert"},           {"hidden_size", 16},       {"num_hidden_layers", 2},
                            {"num_attention_heads", 4}, {"intermediate_size", 32}, {"max_position_embeddings", 16}};
  torch::manual_seed(4);
  auto model = ltk::build_model(ltk::resolve_model_config(section), ltk::ModelContext{30, 3, 0, nullptr});
  model->to(torch::kDouble);
  model->eval();
  auto with_empty = batch_of({{2, 9, 8, 7, 3}, {}, {2, 5, 3}});
  auto without = batch_of({{2, 9, 8, 7, 3}, {2, 5, 3}});
  torch::NoGradGuard no_grad;
  auto a = model->forward(with_empty);
  auto b = model->forward(without);
  CHECK(torch::isfinite(a).all().item<bool>());
  CHECK(torch::allclose(a.index_select(0, torch::tensor({0, 2})), b, 1e-12, 1e-13));
}

namespace {

struct LinearSetup {
  ltk::Vocabulary vocab;
  ltk::TextDataset data;
  std::shared_ptr<ltk::TextModel> model;
  ltk::Batch batch;  // every text
};

LinearSetup linear_setup(const nlohmann::json& section, const std::vector<ltk::Example>& examples) {
  ltk::TokenizerConfig tc;
  tc.type = "whitespace";
  auto mc = ltk::resolve_model_config(section);
  auto tokenizer = ltk::make_run_tokenizer(tc, mc);
  auto features = ltk::linear_features(mc);
  REQUIRE(features);
  LinearSetup s;
  std::tie(s.vocab, s.data) =
      ltk::build_features_and_encode(examples, "mem", *tokenizer, features->selection, nullptr, ltk::EncodeOptions{});
  s.model = ltk::build_model(mc, ltk::ModelContext{s.vocab.size(), 3, 0, &s.vocab, false, s.data.size()});
  std::vector<int64_t> all(static_cast<size_t>(s.data.size()));
  std::iota(all.begin(), all.end(), 0);
  s.batch = ltk::PadCollate()(s.data, all);
  return s;
}

std::vector<ltk::Example> tfidf_corpus() {
  const std::vector<std::string> words = {"the", "The", "cat", "sat", "on", "mat", "end.", "\xC3\x89t\xC3\xA9",
                                          "\xE4\xB8\xAD\xE6\x96\x87", "a", "dog", "RAN", "x"};
  std::mt19937 rng(11);
  std::vector<ltk::Example> out;
  for (int i = 0; i < 60; ++i) {
    std::string text;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) {
      // Zipf-like: early words much more often; tabs and double spaces between some words.
      const size_t w = std::min<size_t>(rng() % words.size(), rng() % words.size());
      text += (k ? (rng() % 7 == 0 ? "\t" : rng() % 5 == 0 ? "  " : " ") : "") + words[w];
    }
    out.push_back(ltk::Example("x", text, i + 1));
  }
  out.push_back(ltk::Example("x", "   ", 61));  // no term at all
  return out;
}

/// One task of each type an answer head takes: multiclass and multilabel over x, y and z, binary
/// over n and p, regression.
struct EveryTask {
  static ltk::TaskConfig of(const char* type) {
    ltk::TaskConfig c;
    c.type = type;
    return c;
  }
  const ltk::LabelMap labels = ltk::LabelMap::from_labels({"x", "y", "z"});
  const ltk::LabelMap binary_labels = ltk::LabelMap::from_labels({"n", "p"});
  ltk::MulticlassTask multiclass{of("multiclass"), labels};
  ltk::BinaryTask binary{of("binary"), binary_labels};
  ltk::MultilabelTask multilabel{of("multilabel"), labels};
  ltk::RegressionTask regression{of("regression")};
  std::vector<const ltk::Task*> all() const { return {&multiclass, &binary, &multilabel, &regression}; }
};

}  // namespace

TEST_CASE("linear: tf-idf features equal scikit-learn's TfidfVectorizer to 1e-6", "[models][linear][parity]") {
  auto corpus = tfidf_corpus();
  // max_features: a cut that falls between two different totals (scikit-learn breaks ties by an
  // unstable sort): the largest k <= 40 with total(k) > total(k + 1) over the [1, 3]-gram terms.
  auto full = linear_setup({{"type", "linear"}, {"ngram_range", {1, 3}}, {"min_df", 2}, {"max_df", 0.8}}, corpus);
  std::vector<int64_t> totals(static_cast<size_t>(full.vocab.size()), 0);
  for (int64_t i = 0; i < full.data.size(); ++i)
    for (int64_t k = 0; k < full.data.length(i); ++k) ++totals[static_cast<size_t>(full.data.tokens(i)[k])];
  std::vector<int64_t> sorted(totals.begin() + 2, totals.end());
  std::sort(sorted.rbegin(), sorted.rend());
  REQUIRE(sorted.size() > 41);
  int64_t cut = 40;
  while (cut > 1 && sorted[static_cast<size_t>(cut - 1)] == sorted[static_cast<size_t>(cut)]) --cut;
  REQUIRE(cut > 5);

  const std::vector<nlohmann::json> sections = {
      {{"type", "linear"}},
      {{"type", "linear"},
       {"ngram_range", {1, 3}},
       {"sublinear_tf", false},
       {"min_df", 2},
       {"max_df", 0.8},
       {"max_features", cut}},
      {{"type", "linear"}, {"ngram_range", {0, 0}}, {"char_ngram_range", {2, 4}}},
      {{"type", "linear"}, {"ngram_range", {1, 1}}, {"char_ngram_range", {1, 3}}, {"min_df", 2}},
      // Hashed: few buckets, so that terms collide; both kinds, each with its own buckets.
      {{"type", "linear"}, {"ngram_range", {1, 2}}, {"buckets", 16}},
      {{"type", "linear"}, {"ngram_range", {1, 2}}, {"char_ngram_range", {2, 4}}, {"buckets", 64}},
  };
  nlohmann::json cases = nlohmann::json::array();
  for (const auto& section : sections) {
    auto s = linear_setup(section, corpus);
    auto& linear = dynamic_cast<ltk::LinearImpl&>(*s.model);
    auto f = linear.features(s.batch);
    nlohmann::json docs = nlohmann::json::array(), ours = nlohmann::json::array();
    for (const auto& ex : corpus) {
      docs.push_back(ex.text);
      ours.push_back(nlohmann::json::object());
    }
    for (int64_t m = 0; m < f.ids.size(0); ++m)
      ours[f.rows[m].item<int64_t>()][s.vocab.token(static_cast<int32_t>(f.ids[m].item<int64_t>()))] =
          f.weights[m].item<double>();
    auto options = ltk::resolve_model_config(section).options;
    cases.push_back({{"options", options}, {"docs", docs}, {"ltk", ours}});
  }
  ltk::test::TempDir dir;
  ltk::test::write_file(dir.file("cases.json"), cases.dump());
  std::string cmd = "/usr/bin/python3 '" LTK_SOURCE_DIR "/tests/metrics/check_tfidf.py' '" + dir.file("cases.json") +
                    "' > '" + dir.file("out.txt") + "' 2>&1";
  int status = std::system(cmd.c_str());
  std::string out = ltk::test::read_text(dir.file("out.txt"));
  INFO(out);
  CHECK(status == 0);
  CHECK_THAT(out, Contains("tfidf: 0 mismatches"));
}

TEST_CASE("linear: the per-sample penalty sums to ||W||^2 / 2C over the training split", "[models][linear]") {
  auto s = linear_setup({{"type", "linear"}, {"char_ngram_range", {2, 3}}, {"C", 0.25}}, tfidf_corpus());
  torch::manual_seed(3);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : s.model->parameters()) p.normal_();
  }
  auto& linear = dynamic_cast<ltk::LinearImpl&>(*s.model);
  auto W = linear.weight->weight.to(torch::kDouble);
  const double want = W.narrow(0, 2, W.size(0) - 2).pow(2).sum().item<double>() / (2 * 0.25);
  auto per_sample = s.model->penalty(s.batch);
  REQUIRE(per_sample.sizes() == torch::IntArrayRef({s.data.size()}));
  // float32 rows: a sum of ~10^3 positive terms, each to a relative 1e-7.
  CHECK(per_sample.to(torch::kDouble).sum().item<double>() == Approx(want).epsilon(1e-5));
  // Its gradient is sparse: only the rows the batch uses, as the EmbeddingBag's.
  per_sample.sum().backward();
  CHECK(linear.weight->weight.grad().is_sparse());
  // Padding and unknown ids are no features: a text of them alone has no penalty and zero logits.
  auto empty = batch_of({{0, 1, 1}});
  CHECK(s.model->penalty(empty).item<float>() == 0.0f);
  CHECK(torch::equal(s.model->forward(empty)[0], linear.bias.detach()));
}

TEST_CASE("task.loss squared_hinge: LinearSVC's one-vs-rest loss, and task.loss errors name the key", "[models][task]") {
  ltk::TaskConfig tc;
  tc.loss = "squared_hinge";
  auto labels = ltk::LabelMap::from_labels({"a", "b", "c"});
  ltk::MulticlassTask multi(tc, labels);
  auto logits = torch::tensor({{2.0f, -0.5f, 0.5f}, {0.0f, 0.0f, 0.0f}});
  auto targets = torch::tensor({0, 2}, torch::kLong);
  // Sample 0: class a (+1): max(0, 1-2)^2 = 0; b (-1): max(0, 1-0.5)^2 = 0.25; c: (1.5)^2 = 2.25.
  // Sample 1: every term 1.
  auto per = multi.per_sample_loss(logits, targets);
  CHECK(per[0].item<float>() == Approx(2.5));
  CHECK(per[1].item<float>() == Approx(3.0));
  CHECK(multi.loss(logits, targets).item<float>() == Approx(2.75));
  // Class weights multiply each class's positive term (liblinear's weighted C): sample 1's class c term.
  ltk::MulticlassTask weighted(tc, labels, {1.0, 1.0, 3.0});
  CHECK(weighted.loss(logits, targets).item<float>() == Approx((2.5 + 5.0) / 2));
  tc.type = "binary";
  ltk::BinaryTask binary(tc, ltk::LabelMap::from_labels({"neg", "pos"}));
  auto b = binary.per_sample_loss(torch::tensor({{0.5f}, {0.5f}}), torch::tensor({1.0f, 0.0f}));
  CHECK(b[0].item<float>() == Approx(0.25));
  CHECK(b[1].item<float>() == Approx(2.25));

  using nlohmann::json;
  auto config = [](json task) { return json{{"data", {{"train", "x.tsv"}}}, {"task", task}}; };
  REQUIRE_THROWS_WITH(ltk::parse_config(config({{"type", "regression"}, {"loss", "squared_hinge"}})),
                      Contains("'task.loss'") && Contains("mse, l1 or huber"));
  REQUIRE_THROWS_WITH(ltk::parse_config(config({{"loss", "huber"}})), Contains("'task.loss'") && Contains("squared_hinge"));
  REQUIRE_THROWS_WITH(ltk::parse_config(config({{"loss", "squared_hinge"}, {"label_smoothing", 0.1}})),
                      Contains("'task.label_smoothing'"));
  // Runs made before class tasks had a loss hold "mse" for every task: read as auto.
  CHECK(ltk::parse_config(config({{"loss", "mse"}})).task.loss == "auto");
}

TEST_CASE("linear: config errors name the key", "[models][linear][config]") {
  using nlohmann::json;
  auto with = [](json model, json extra = json::object()) {
    json j = {{"data", {{"train", "x.tsv"}}}, {"model", model}};
    j.update(extra);
    return j;
  };
  auto defaults = ltk::parse_config(with({{"type", "linear"}}));  // sparse: adagrad unless the config says
  CHECK(defaults.optimizer.type == "adagrad");
  CHECK(defaults.optimizer.lr == 1.0);
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "linear"}, {"ngram_range", {2, 1}}})),
                      Contains("'model.ngram_range'") && Contains("min <= max"));
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "linear"}, {"ngram_range", {0, 0}}})),
                      Contains("'model.ngram_range'") && Contains("both ranges"));
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "linear"}, {"C", 0}})), Contains("'model.C'"));
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "linear"}}, {{"optimizer", {{"type", "adam"}}}})),
                      Contains("'model.sparse'") && Contains("adagrad"));
  CHECK_NOTHROW(ltk::parse_config(with({{"type", "linear"}, {"sparse", false}}, {{"optimizer", {{"type", "adam"}}}})));
  REQUIRE_THROWS_WITH(ltk::parse_config(with({{"type", "linear"}}, {{"data", {{"train", "x.tsv"}, {"max_len", 64}}}})),
                      Contains("'data.max_len'"));
  REQUIRE_THROWS_WITH(
      ltk::parse_config(with({{"type", "linear"}}, {{"data", {{"train", "x.tsv"}, {"vocab", {{"max_size", 100}}}}}})),
      Contains("'data.vocab.max_size'") && Contains("model.max_features"));
}

TEST_CASE("linear: rows_of builds every text's tf-idf row as features() does, the intercept column last",
          "[models][linear]") {
  for (const nlohmann::json& section :
       {nlohmann::json{{"type", "linear"}, {"ngram_range", {1, 2}}},
        nlohmann::json{
            {"type", "linear"}, {"ngram_range", {1, 1}}, {"char_ngram_range", {2, 3}}, {"sublinear_tf", false}}}) {
    INFO(section.dump());
    auto s = linear_setup(section, tfidf_corpus());
    const auto& linear = dynamic_cast<const ltk::LinearImpl&>(*s.model);
    const ltk::SparseRows x = linear.rows_of(s.data, 2.5);
    const ltk::TfIdfRows f = linear.features(s.batch);
    REQUIRE(x.rows() == s.data.size());
    REQUIRE(x.num_cols == s.vocab.size() + 1);
    const auto rows = f.rows.contiguous(), ids = f.ids.contiguous(), weights = f.weights.contiguous();
    int64_t e = 0, empty = 0;
    for (int64_t i = 0; i < x.rows(); ++i) {
      const int64_t last = x.offsets[i + 1] - 1;
      empty += last == x.offsets[i];
      for (int64_t k = x.offsets[i]; k < last; ++k, ++e) {
        REQUIRE(e < rows.numel());
        CHECK(rows[e].item<int64_t>() == i);
        CHECK(ids[e].item<int64_t>() == x.cols[k]);
        // Both float64; only the order of the norm's sum may differ: ~1e-16 relative, weights <= 1.
        CHECK(std::abs(weights[e].item<double>() - x.values[k]) < 1e-12);
      }
      CHECK(x.cols[last] == s.vocab.size());  // the intercept column
      CHECK(x.values[last] == 2.5);
    }
    CHECK(e == rows.numel());
    // On several threads, in slices of 2048 texts: the same matrix.
    std::vector<ltk::Example> many;
    for (int r = 0; r < 90; ++r)
      for (const auto& ex : tfidf_corpus()) many.push_back(ex);
    auto big = linear_setup(section, many);
    const auto& big_linear = dynamic_cast<const ltk::LinearImpl&>(*big.model);
    const ltk::SparseRows one = big_linear.rows_of(big.data, 1.0, 1), four = big_linear.rows_of(big.data, 1.0, 4);
    CHECK(one.offsets == four.offsets);
    CHECK(one.cols == four.cols);
    CHECK(one.values == four.values);
    CHECK(one.rows() == static_cast<int64_t>(many.size()));
    CHECK(many.size() > 2 * 2048);
    // Texts without a term (the one of spaces, those of no word) have the intercept alone.
    std::set<int64_t> with_terms;
    for (int64_t k = 0; k < rows.numel(); ++k) with_terms.insert(rows[k].item<int64_t>());
    CHECK(empty == s.data.size() - static_cast<int64_t>(with_terms.size()));
    CHECK(empty >= 1);
  }
}

TEST_CASE("tasks: write_prediction writes prediction(scores, top_k).dump()'s bytes, numbers as nlohmann writes them",
          "[models][task]") {
  // Every score ltk prints is a multiple of 1e-6: all of [0, 1] and a sample beyond, both signs.
  std::string out;
  for (int64_t k = -2000; k <= 1000000; ++k) {
    const double x = static_cast<double>(k) / 1e6;
    out.clear();
    ltk::task_detail::append_round6(out, x);
    if (out != nlohmann::json(ltk::task_detail::round6(x)).dump()) FAIL("k = " << k << ": " << out);
  }
  std::mt19937_64 rng(5);
  // Probabilities between the multiples (ltk-predict writes them from their 6-digit rounding), the
  // ends and -0.0.
  std::uniform_real_distribution<double> near_unit(-2e-6, 1 + 2e-6);
  for (int i = 0; i < 200000; ++i) {
    const double x =
        i < 4 ? std::vector<double>{-0.0, -4e-7, 0.9999996, 1e-300}[static_cast<size_t>(i)] : near_unit(rng);
    out.clear();
    ltk::task_detail::append_round6(out, x);
    REQUIRE(out == nlohmann::json(ltk::task_detail::round6(x)).dump());
  }
  std::uniform_real_distribution<double> wide(-1e12, 1e12);
  for (int i = 0; i < 20000; ++i) {
    const double x = i % 2 ? wide(rng) : wide(rng) * 1e-12;
    out.clear();
    ltk::task_detail::append_round6(out, x);
    REQUIRE(out == nlohmann::json(ltk::task_detail::round6(x)).dump());
  }
  out.clear();
  ltk::task_detail::append_round6(out, std::numeric_limits<double>::quiet_NaN());
  CHECK(out == "null");

  // Labels that need escaping, ties (top keeps label order), every task.
  auto labels = ltk::LabelMap::from_labels({"a\"q", "b\\s", "c\tt", "\xE4\xB8\xAD", "e"});
  auto two = ltk::LabelMap::from_labels({"neg", "pos\n"});
  ltk::TaskConfig mc, bc, ml, rc;
  mc.type = "multiclass";
  bc.type = "binary";
  bc.positive_label = "neg";
  ml.type = "multilabel";
  ml.threshold = 0.4;
  rc.type = "regression";
  const ltk::MulticlassTask multiclass(mc, labels);
  const ltk::BinaryTask binary(bc, two);
  const ltk::MultilabelTask multilabel(ml, labels);
  const ltk::RegressionTask regression(rc);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  for (int i = 0; i < 2000; ++i) {
    std::vector<float> scores(5);
    for (auto& s : scores) s = i % 3 ? unit(rng) : std::round(unit(rng) * 4) / 4;  // some ties
    for (int64_t top_k : {0, 1, 3, 9})
      for (const ltk::Task* task :
           std::initializer_list<const ltk::Task*>{&multiclass, &binary, &multilabel, &regression}) {
        out.clear();
        task->write_prediction(scores.data(), top_k, out);
        REQUIRE(out == task->prediction(scores.data(), top_k).dump());
      }
  }
}

TEST_CASE("linear: a tf-idf row holds a sample's distinct features in order, whatever their number and range",
          "[models][linear]") {
  // Samples of 0 to 600 ids over 300,000 then 70,000 features (ordered on three or two byte
  // digits past 47 distinct features, by comparisons below; the thread's count table resized
  // between), with repeats, the padding and unknown ids and ids past the vocabulary, in several
  // chunks on 2 threads; each row against a count made here, to the bit: one block and two,
  // sublinear tf and plain.
  struct Case {
    int64_t V;
    bool two_blocks, sublinear;
  };
  for (const Case c : {Case{300000, false, true}, Case{300000, true, true}, Case{70000, false, false}}) {
    const int64_t V = c.V;
    INFO("V " << V << ", two blocks " << c.two_blocks << ", sublinear tf " << c.sublinear);
    ltk::Linear linear(ltk::LinearOptions(V, 2).two_blocks(c.two_blocks).sublinear_tf(c.sublinear));
    std::mt19937 rng(3);
    std::vector<int64_t> df(static_cast<size_t>(V));
    std::vector<bool> is_char(df.size());
    for (size_t f = 0; f < df.size(); ++f) {
      df[f] = 1 + static_cast<int64_t>(rng() % 50);
      is_char[f] = c.two_blocks && rng() % 2;
    }
    linear->set_statistics(df, 100, is_char);
    ltk::TextDataset data;
    data.set_source("mem", ltk::TargetKind::none, 0);
    for (int i = 0; i < 2600; ++i) {
      const int n = i < 120 ? i : static_cast<int>(rng() % 600);
      std::vector<int32_t> ids;
      for (int k = 0; k < n; ++k) {
        const auto r = rng() % 10;
        ids.push_back(r == 0   ? 0
                      : r == 1 ? 1
                      : r == 2 ? static_cast<int32_t>(V + rng() % 5)
                      : r < 6  ? static_cast<int32_t>(2 + rng() % 40)
                               : static_cast<int32_t>(2 + rng() % (V - 2)));
      }
      data.add(ids, n, {}, 0.f, i + 1);
    }
    const ltk::SparseRows x = linear->rows_of(data, 0.5, 2);
    REQUIRE(x.rows() == data.size());
    const auto idf = linear->idf.contiguous();
    const double* idf_of = idf.data_ptr<double>();
    auto weight = [&](int64_t count, int32_t f) {
      const auto tf = static_cast<double>(count);
      return (c.sublinear && count > 1 ? std::log(tf) + 1.0 : tf) * idf_of[f];
    };
    for (int64_t i = 0; i < data.size(); ++i) {
      std::map<int32_t, int64_t> counts;
      for (int64_t k = 0; k < data.length(i); ++k)
        if (data.tokens(i)[k] >= 2 && data.tokens(i)[k] < V) ++counts[data.tokens(i)[k]];
      REQUIRE(x.offsets[i + 1] - x.offsets[i] == static_cast<int64_t>(counts.size()) + 1);
      double norm2[2] = {0, 0};
      for (auto [f, n] : counts) norm2[is_char[static_cast<size_t>(f)]] += weight(n, f) * weight(n, f);
      int64_t at = x.offsets[i];
      for (auto [f, n] : counts) {
        REQUIRE(x.cols[at] == f);
        REQUIRE(x.values[at] == weight(n, f) / std::sqrt(norm2[is_char[static_cast<size_t>(f)]]));
        ++at;
      }
      CHECK(x.cols[at] == V);  // the intercept's column
      CHECK(x.values[at] == 0.5);
    }
  }
}

TEST_CASE("linear: forward_rows scores every text as forward() does, on every task", "[models][linear]") {
  for (const nlohmann::json& section :
       {nlohmann::json{{"type", "linear"}, {"ngram_range", {1, 2}}},
        nlohmann::json{{"type", "linear"}, {"ngram_range", {1, 1}}, {"char_ngram_range", {2, 3}}}}) {
    for (auto dtype : {torch::kFloat, torch::kDouble}) {
      INFO(section.dump() << " " << dtype);
      auto s = linear_setup(section, tfidf_corpus());
      auto& linear = dynamic_cast<ltk::LinearImpl&>(*s.model);
      linear.to(dtype);
      {
        torch::NoGradGuard no_grad;
        linear.weight->weight.normal_(0, 1);
        linear.bias.normal_(0, 1);
      }
      std::vector<int64_t> order(static_cast<size_t>(s.data.size()));
      std::iota(order.rbegin(), order.rend(), 0);  // any order of samples
      // With gradients on, there is no sparse path: evaluation runs forward().
      CHECK_FALSE(linear.forward_rows(s.data, order).defined());
      torch::NoGradGuard no_grad;
      auto reference = linear.forward(s.batch).index_select(0, torch::tensor(order));
      auto rows = linear.forward_rows(s.data, order);
      REQUIRE(rows.defined());
      REQUIRE(rows.sizes() == reference.sizes());
      REQUIRE(rows.scalar_type() == dtype);
      // The same products summed in the same order, one fused multiply-add each as LibTorch's
      // embedding_bag kernel does; where a CPU's kernel sums otherwise, the difference stays within
      // the sum's rounding: (terms + 2) * epsilon * (sum of |w_f W_fk| + |b_k|), row by row.
      const double eps = dtype == torch::kFloat ? 1.2e-7 : 2.3e-16;
      const ltk::SparseRows x = linear.rows_of(s.data, 0.0);
      auto W = linear.weight->weight.to(torch::kDouble).abs().amax(1).contiguous();
      const double b = linear.bias.abs().max().item<double>();
      auto diff = (rows - reference).abs().amax(1).to(torch::kDouble).contiguous();
      for (size_t r = 0; r < order.size(); ++r) {
        const int64_t i = order[r];
        double sum = b;
        for (int64_t k = x.offsets[i]; k + 1 < x.offsets[i + 1]; ++k) sum += x.values[k] * W[x.cols[k]].item<double>();
        const double terms = static_cast<double>(x.offsets[i + 1] - x.offsets[i]) + 1;
        CHECK(diff[static_cast<int64_t>(r)].item<double>() <= terms * eps * sum);
      }
      // Every task's answers from either, as ltk-predict prints them (binary and regression read
      // the first output). Their scores differ by at most twice the logits' difference (neither
      // softmax nor sigmoid moves faster; a regression's value is its logit; float32 adds its
      // rounding), so each number printed, rounded to 6 decimals, by at most 1e-6 more; a label may
      // differ only where two of the row's scores, or a score and the 0.5 threshold, are that close.
      const EveryTask tasks;
      int64_t compared = 0;
      for (const ltk::Task* task : tasks.all()) {
        const int64_t width = task->num_outputs();
        auto a = task->scores(rows.narrow(1, 0, width)).to(torch::kFloat).contiguous();
        auto b = task->scores(reference.narrow(1, 0, width)).to(torch::kFloat).contiguous();
        for (int64_t i = 0; i < a.size(0); ++i) {
          const double tol = 2 * diff[i].item<double>() + 1e-7 * (1 + a[i].abs().max().item<double>());
          CHECK((a[i] - b[i]).abs().max().item<double>() <= tol);
          const float* s = a[i].data_ptr<float>();
          bool near_tie = false;
          for (int64_t j = 0; j < width; ++j) {
            near_tie |= std::abs(s[j] - 0.5) <= 2 * tol + 2e-6;
            for (int64_t k = j + 1; k < width; ++k) near_tie |= std::abs(s[j] - s[k]) <= 2 * tol + 2e-6;
          }
          const double bound = (near_tie ? 3 : 1) * tol + 1e-6 + 1e-12;
          std::function<void(const nlohmann::ordered_json&, const nlohmann::ordered_json&)> close =
              [&](const nlohmann::ordered_json& x, const nlohmann::ordered_json& y) {
                if (x.is_number() && y.is_number()) {
                  CHECK(std::abs(x.get<double>() - y.get<double>()) <= bound);
                } else if (x.is_object() && y.is_object()) {
                  REQUIRE(x.size() == y.size());
                  for (auto it = x.begin(), jt = y.begin(); it != x.end(); ++it, ++jt) {
                    CHECK((it.key() == jt.key() || near_tie));
                    close(it.value(), jt.value());
                  }
                } else if (x.is_array() && y.is_array()) {
                  CHECK((x.size() == y.size() || near_tie));
                  for (size_t e = 0; e < std::min(x.size(), y.size()); ++e) close(x[e], y[e]);
                } else {
                  CHECK((x == y || near_tie));
                }
              };
          INFO(task->prediction(s, 2).dump() << " against " << task->prediction(b[i].data_ptr<float>(), 2).dump());
          close(task->prediction(s, 2), task->prediction(b[i].data_ptr<float>(), 2));
          ++compared;
        }
      }
      CHECK(compared == 4 * rows.size(0));
    }
  }
}

TEST_CASE("linear: evaluation scores a linear run as ltk-predict does - the same float bits on every task",
          "[models][linear][eval]") {
  // ltk-eval's figures (badcases.tsv's scores) come from predict(); ltk-predict's from the answer
  // head's float64 scores of forward_rows' logits. LibTorch's float32 softmax and sigmoid round
  // otherwise, which moved printed scores in the 6th decimal.
  auto s = linear_setup({{"type", "linear"}, {"ngram_range", {1, 2}}}, tfidf_corpus());
  auto& linear = dynamic_cast<ltk::LinearImpl&>(*s.model);
  torch::manual_seed(17);
  {
    torch::NoGradGuard no_grad;
    linear.weight->weight.normal_(0, 3);
    linear.bias.normal_(0, 1);
  }
  EveryTask tasks;
  tasks.multiclass.set_temperature({1.7});
  tasks.multilabel.set_temperature({0.8, 1.3, 2.1});
  std::vector<int64_t> all(static_cast<size_t>(s.data.size()));
  std::iota(all.begin(), all.end(), 0);
  int64_t differ_from_libtorch = 0;
  for (const ltk::Task* task : tasks.all()) {
    INFO(task->type());
    const int64_t width = task->num_outputs();
    const ltk::AnswerHead head = ltk::answer_head(*task, task->type() == "binary" ? tasks.binary_labels : tasks.labels);
    torch::Tensor logits;
    {
      torch::NoGradGuard no_grad;
      logits = linear.forward_rows(s.data, all).narrow(1, 0, width).contiguous();
    }
    // The model has 3 outputs: binary and regression read the first (predict() scores them all).
    auto scored = ltk::predict(linear, *task, s.data, 7, torch::kCPU, s.vocab.size());
    REQUIRE(scored.scores.defined());
    auto scores = task->type() == "multiclass" || task->type() == "multilabel" ? scored.scores
                                                                               : scored.scores.narrow(1, 0, width);
    scores = scores.contiguous();
    REQUIRE(scores.size(0) == s.data.size());
    std::vector<float> want(static_cast<size_t>(width));
    const auto libtorch = task->scores(logits).contiguous();
    for (int64_t i = 0; i < s.data.size(); ++i) {
      head.scores(logits.data_ptr<float>() + i * width, want.data());
      for (int64_t k = 0; k < width; ++k) {
        CHECK(scores[i][k].item<float>() == want[static_cast<size_t>(k)]);
        differ_from_libtorch += libtorch[i][k].item<float>() != want[static_cast<size_t>(k)];
      }
    }
  }
  // The case this test is for: LibTorch's float32 scores differ from them somewhere.
  CHECK(differ_from_libtorch > 0);
}

TEST_CASE("int8: each weight row quantized to -127..127 within half its scale, an all-zero row keeps scale 1",
          "[models][quantize]") {
  if (!ltk::int8_unavailable().empty()) LTK_SKIP(ltk::int8_unavailable());  // (the layer is packed too)
  torch::manual_seed(5);
  auto w = torch::randn({6, 40});
  w[2].zero_();
  w[4] *= 1e-3;  // a row far smaller than the others keeps its own scale
  auto l = ltk::quantize_linear(w, torch::Tensor());
  REQUIRE(l.weight_int8.scalar_type() == torch::kChar);
  auto q = l.weight_int8.to(torch::kFloat), s = l.scale.unsqueeze(1);
  CHECK(q.abs().max().item<float>() == 127);
  CHECK(l.scale[2].item<float>() == 1.0f);
  CHECK(q[2].abs().sum().item<float>() == 0);
  for (int64_t r : {0, 1, 3, 4, 5}) CHECK(q[r].abs().max().item<float>() == 127);  // each row's largest is +-127
  // |w - q s| <= s / 2, with the float rounding of w / s (relative 2^-24 of |w|) allowed.
  auto excess = (w - q * s).abs() - (s / 2 + w.abs() * std::ldexp(1.0, -22));
  CHECK(excess.max().item<float>() <= 0);
}

TEST_CASE(
    "int8: a Linear layer's output stays within the bound its weight and activation scales give, with 8-bit "
    "and 7-bit activations",
    "[models][quantize]") {
  if (!ltk::int8_unavailable().empty()) LTK_SKIP(ltk::int8_unavailable());
  torch::manual_seed(7);
  // 8-bit activations only where the CPU sums int8 products in int32 (VNNI): elsewhere the kernel's
  // int16 pair sums may saturate, which is why int8_reduce_range() is on there.
  const auto cpu = ltk::detect_cpu_features();
  const bool vnni = cpu.avx512_vnni || cpu.avx_vnni || cpu.amx_int8;
  // 2 x 3 rows (one call, padded to 64) and 2 x 700 (two calls of 1,024 and 376 padded to 512).
  for (int64_t rows : {3, 700}) {
    INFO("rows " << rows);
    auto x = torch::randn({2, rows, 33}) * 2 + 0.5, w = torch::randn({19, 33}) * 0.2, b = torch::randn({19});
    auto layer = ltk::quantize_linear(w, b);
    auto exact = torch::nn::functional::linear(x.to(torch::kDouble), w.to(torch::kDouble), b.to(torch::kDouble));
    auto wq = layer.weight_int8.to(torch::kDouble) * layer.scale.to(torch::kDouble).unsqueeze(1);
    // Activations are quantized per call over the whole tensor, to `levels` steps of the range
    // [min(x, 0), max(x, 0)]: a step sx <= 2 max|x| / levels, each value off by at most one step
    // (half a step of rounding, half of the zero point's). Weights are off by half their row's
    // scale. |x w - x' w'| <= sx |w'| + |x| s / 2 summed over the inputs; int32 sums are exact.
    auto xd = x.to(torch::kDouble).reshape({-1, 33});
    for (bool reduce_range : {false, true}) {
      if (!reduce_range && !vnni) continue;
      INFO("reduce_range " << reduce_range);
      const double levels = reduce_range ? 127 : 255, sx = 2 * xd.abs().max().item<double>() / levels;
      auto bound = sx * wq.abs().sum(1).unsqueeze(0) +
                   torch::matmul(xd.abs(), (layer.scale.to(torch::kDouble) / 2).unsqueeze(0).expand({33, 19})) +
                   1e-5 * torch::matmul(xd.abs(), w.to(torch::kDouble).abs().t());  // float32 rounding
      auto y = ltk::int8_linear(x, layer, reduce_range);
      REQUIRE(y.sizes().vec() == std::vector<int64_t>{2, rows, 19});
      REQUIRE(y.scalar_type() == torch::kFloat);
      auto err = (y.to(torch::kDouble).reshape({-1, 19}) - exact.reshape({-1, 19})).abs();
      CHECK((err - bound).max().item<double>() <= 0);
      CHECK(err.max().item<double>() > 0);  // it did run in int8
    }
  }
}

TEST_CASE(
    "int8: a calibrated layer clamps its inputs to the range its calibration saw and quantizes every call alike - "
    "a row's result no longer depends on the rows beside it",
    "[models][quantize]") {
  if (!ltk::int8_unavailable().empty()) LTK_SKIP(ltk::int8_unavailable());
  torch::manual_seed(11);
  auto w = torch::randn({19, 33}) * 0.2, b = torch::randn({19});
  auto layer = ltk::quantize_linear(w, b);
  CHECK(!layer.fixed_range());
  auto calibrating = torch::randn({40, 33}) * 1.5 + 0.3;
  {
    ltk::Int8Calibration calibration;
    CHECK_THROWS_WITH(ltk::Int8Calibration(), Contains("one calibration at a time"));
    CHECK(calibration.range(layer) == std::pair<float, float>{0, 0});  // never ran
    ltk::int8_linear(calibrating.narrow(0, 0, 25), layer);
    ltk::int8_linear(calibrating.narrow(0, 25, 15), layer);
    auto [lo, hi] = calibration.range(layer);
    CHECK(lo == calibrating.min().item<float>());  // over every call
    CHECK(hi == calibrating.max().item<float>());
    layer.lo = lo;
    layer.hi = hi;
  }
  REQUIRE(layer.fixed_range());
  // 8-bit activations with VNNI, 7-bit without (int8_reduce_range()): the bound and identities hold with either.
  const bool reduce_range = ltk::int8_reduce_range();
  const double levels = reduce_range ? 127 : 255, sx = (layer.hi - layer.lo) / levels;
  // Inputs inside the range: off by at most a step of the fixed range, whatever their own range.
  auto inside = torch::rand({30, 33}) * (layer.hi - layer.lo) * 0.5 + layer.lo * 0.5;
  auto exact = torch::nn::functional::linear(inside.to(torch::kDouble), w.to(torch::kDouble), b.to(torch::kDouble));
  auto wq = layer.weight_int8.to(torch::kDouble) * layer.scale.to(torch::kDouble).unsqueeze(1);
  auto xd = inside.to(torch::kDouble);
  auto bound = sx * wq.abs().sum(1).unsqueeze(0) +
               torch::matmul(xd.abs(), (layer.scale.to(torch::kDouble) / 2).unsqueeze(0).expand({33, 19})) +
               1e-5 * torch::matmul(xd.abs(), w.to(torch::kDouble).abs().t());
  auto y = ltk::int8_linear(inside, layer, reduce_range);
  CHECK(((y.to(torch::kDouble) - exact).abs() - bound).max().item<double>() <= 0);
  // Each row alone gives its row of the batch, bit for bit: the scale is the range's, not the batch's.
  for (int64_t r : {0, 7, 29})
    CHECK(torch::equal(ltk::int8_linear(inside.narrow(0, r, 1), layer, reduce_range), y[r].unsqueeze(0)));
  // A layer with its own range per call gives a lone row another result (the test would pass unfixed otherwise).
  auto dynamic = layer;
  dynamic.lo = dynamic.hi = 0;
  CHECK(!torch::equal(ltk::int8_linear(inside.narrow(0, 7, 1), dynamic, reduce_range),
                      ltk::int8_linear(inside, dynamic, reduce_range)[7].unsqueeze(0)));
  // Inputs outside the range are clamped to it; 1,500 rows go in two calls, each row as it would alone.
  auto wide = torch::randn({1500, 33}) * 4;
  auto clamped = wide.clamp(layer.lo, layer.hi);
  auto y_wide = ltk::int8_linear(wide, layer, reduce_range);
  CHECK(torch::equal(y_wide, ltk::int8_linear(clamped, layer, reduce_range)));
  // (Calls of other row counts run other kernels, whose float32 dequantization of the same int32
  // sums may round otherwise: a few roundings of 2^-24 each, against 1.5e-2 here for a range per call.)
  auto alone = ltk::int8_linear(clamped.narrow(0, 1400, 5), layer, reduce_range);
  auto magnitude = torch::matmul(clamped.narrow(0, 1400, 5).abs(), wq.abs().t().to(torch::kFloat)) + b.abs();
  CHECK(((y_wide.narrow(0, 1400, 5) - alone).abs() - std::ldexp(1.0, -20) * magnitude).max().item<float>() <= 0);
}

TEST_CASE("int8: stored values and scales are checked, an unpaired or mistyped entry names the tensor",
          "[models][quantize]") {
  auto bias = torch::zeros({2});
  auto values = torch::ones({2, 3}, torch::kChar), scale = torch::ones({2});
  CHECK_THROWS_WITH(ltk::pack_linear(values.clone().fill_(-128), scale, bias, "l"),
                    Contains("l.weight_int8") && Contains("-128"));
  CHECK_THROWS_WITH(ltk::pack_linear(values, torch::zeros({2}), bias, "l"), Contains("a scale is not finite and > 0"));
  CHECK_THROWS_WITH(ltk::pack_linear(values.to(torch::kFloat), scale, bias, "l"), Contains("should be int8"));
  CHECK_THROWS_WITH(ltk::pack_linear(values, torch::ones({3}), bias, "l"), Contains("one per row"));
  std::vector<std::pair<std::string, torch::Tensor>> stored = {{"a.weight_int8", values}, {"a.bias", bias}};
  CHECK_THROWS_WITH(ltk::take_int8(stored, "w.pt"), Contains("w.pt: a.weight_int8 has no a.weight_scale"));
  stored = {{"a.weight_int8", values}, {"a.weight_scale", scale.to(torch::kDouble)}};
  CHECK_THROWS_AS(ltk::take_int8(stored, "w.pt"), ltk::CheckpointError);
  stored = {{"a.input_range", torch::tensor({-1.0f, 1.0f})}, {"a.bias", bias}};
  CHECK_THROWS_WITH(ltk::take_int8(stored, "w.pt"), Contains("w.pt: a.input_range has no a.weight_int8"));
  stored = {
      {"a.weight_int8", values}, {"a.weight_scale", scale}, {"a.input_range", torch::tensor({-1.0f, 0.0f, 1.0f})}};
  CHECK_THROWS_WITH(ltk::take_int8(stored, "w.pt"), Contains("a.input_range should be float32 [2]"));
  stored = {{"a.weight_int8", values}, {"a.weight_scale", scale * 2}, {"a.bias", bias}};
  auto taken = ltk::take_int8(stored, "w.pt");
  REQUIRE(taken.size() == 1);
  CHECK(taken[0].first == "a");
  CHECK(!taken[0].second.range.defined());  // an artifact of run format 2: each call's own range
  REQUIRE(stored.size() == 2);
  CHECK(stored[1].first == "a.weight");
  CHECK(torch::equal(stored[1].second, torch::full({2, 3}, 2.0)));
}

TEST_CASE(
    "deploy precision: a bert model in int8 or bf16 saved and loaded answers exactly as before it was saved - "
    "bow has none",
    "[models][quantize]") {
  if (!ltk::int8_unavailable().empty()) LTK_SKIP(ltk::int8_unavailable());
  nlohmann::json section = {{"type", "bert"},           {"hidden_size", 16},       {"num_hidden_layers", 2},
                            {"num_attention_heads", 2}, {"intermediate_size", 32}, {"max_position_embeddings", 16}};
  auto config = ltk::resolve_model_config(section);
  auto batch = batch_of({{2, 7, 9, 11, 3}, {2, 5, 3}, {2, 12, 13, 14, 15, 16, 17, 18, 19, 3}});
  ltk::test::TempDir dir;
  for (const std::string precision : {"int8", "bf16"}) {
    INFO(precision);
    torch::manual_seed(3);
    auto model = ltk::build_model(config, ltk::ModelContext{20, 3, 0, nullptr});
    model->eval();
    torch::NoGradGuard no_grad;
    auto reference = model->forward(batch);
    ltk::quantizable(*model, "bert").quantize(precision);
    if (precision == "int8") {  // calibrated, as ltk-eval --quantize does, on the batch itself
      ltk::Int8Calibration calibration;
      model->forward(batch);
      ltk::quantizable(*model, "bert").fix_int8_ranges(calibration);
    }
    auto out = model->forward(batch);
    CHECK(out.scalar_type() == torch::kFloat);
    CHECK(!torch::equal(out, reference));
    CHECK((out - reference).abs().max().item<double>() < 0.1 * reference.abs().max().item<double>() + 0.05);
    auto tensors = ltk::deploy_tensors(*model, precision);
    std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
    if (precision == "int8") {
      // Six Linear layers per encoder layer; their float weights are released, the pooler's and the head's kept.
      CHECK(by_name.count("bert.encoder.layer.0.intermediate.dense.weight_int8"));
      CHECK(!by_name.count("bert.encoder.layer.0.intermediate.dense.weight"));
      CHECK(by_name.at("bert.pooler.dense.weight").scalar_type() == torch::kFloat);
      CHECK(ltk::quantizable(*model, "bert").int8_layers().replaced_weights().size() == 12);
      // Each has its range; query, key and value, one input, the same one.
      int64_t ranges = 0;
      for (const auto& [name, t] : tensors)
        ranges += name.size() > 12 && name.substr(name.size() - 12) == ".input_range";
      CHECK(ranges == 12);
      const std::string self = "bert.encoder.layer.1.attention.self.";
      const auto& range = by_name.at(self + "query.input_range");
      CHECK(range[0].item<float>() < 0);
      CHECK(range[1].item<float>() > 0);
      CHECK(torch::equal(by_name.at(self + "key.input_range"), range));
      CHECK(torch::equal(by_name.at(self + "value.input_range"), range));
    } else {
      for (const auto& [name, t] : tensors) CHECK(t.scalar_type() == torch::kBFloat16);
    }
    ltk::save_tensors(tensors, dir.file(precision + ".pt"));
    // Loaded as ltk/io/run.cpp loads an artifact, into a model of other (random) weights.
    torch::manual_seed(99);
    auto loaded = ltk::build_model(config, ltk::ModelContext{20, 3, 0, nullptr});
    loaded->eval();
    auto stored = ltk::read_weights(dir.file(precision + ".pt"));
    if (precision == "bf16") {
      ltk::quantizable(*loaded, "bert").quantize("bf16");
      ltk::load_weights(*loaded, dir.file("bf16.pt"), stored);
    } else {
      auto int8 = ltk::take_int8(stored, dir.file("int8.pt"));
      ltk::load_weights(*loaded, dir.file("int8.pt"), stored);
      ltk::quantizable(*loaded, "bert").load_int8(int8);
    }
    CHECK(torch::equal(loaded->forward(batch), out));
    if (precision == "int8") {  // a damaged artifact: the head stored as int8, which no bert artifact holds
      auto head = ltk::quantize_linear(torch::ones({3, 16}), torch::Tensor());
      CHECK_THROWS_WITH(
          ltk::quantizable(*loaded, "bert").load_int8({{"classifier", {head.weight_int8, head.scale, {}}}}),
          Contains("classifier.weight_int8: only the encoder layers"));
      auto query = ltk::quantize_linear(torch::ones({16, 16}), torch::Tensor());
      const std::string name = "bert.encoder.layer.0.attention.self.query";
      auto fresh = ltk::build_model(config, ltk::ModelContext{20, 3, 0, nullptr});
      CHECK_THROWS_WITH(ltk::quantizable(*fresh, "bert")
                            .load_int8({{name, {query.weight_int8, query.scale, torch::tensor({0.5f, 1.0f})}}}),
                        Contains(name + ".input_range: [0.5, 1] is no range"));
      // What it loaded is what it stores: the ranges too.
      auto again = ltk::deploy_tensors(*loaded, "int8");
      CHECK(std::count_if(again.begin(), again.end(),
                          [](const auto& t) { return t.first.find(".input_range") != std::string::npos; }) == 12);
    }
  }
  auto bow = ltk::build_model(ltk::resolve_model_config({{"type", "bow"}}), ltk::ModelContext{20, 3, 0, nullptr});
  CHECK_THROWS_WITH(ltk::quantizable(*bow, "bow"), Contains("model type 'bow' has no deploy precision"));
}

TEST_CASE(
    "deploy precision: a textcnn, rnn or transformer model in bf16 answers in float32 near its float32 answers, and "
    "saved and loaded exactly as before - int8 is refused",
    "[models][quantize]") {
  auto batch = batch_of({{2, 7, 9, 11, 3}, {2, 5, 3}, {2, 12, 13, 14, 15, 16, 17, 18, 19, 3}});
  ltk::test::TempDir dir;
  for (const nlohmann::json& section :
       {nlohmann::json{{"type", "textcnn"}, {"embed_dim", 16}, {"channels", 8}},
        nlohmann::json{{"type", "rnn"}, {"embed_dim", 16}, {"hidden_dim", 8}, {"layers", 2}},
        nlohmann::json{{"type", "rnn"}, {"cell", "gru"}, {"embed_dim", 16}, {"hidden_dim", 8}, {"pooling", "max"}},
        nlohmann::json{{"type", "transformer"},
                       {"embed_dim", 16},
                       {"heads", 2},
                       {"layers", 2},
                       {"ff_dim", 32},
                       {"max_positions", 16}},
        nlohmann::json{{"type", "transformer"},
                       {"embed_dim", 16},
                       {"heads", 2},
                       {"layers", 1},
                       {"ff_dim", 32},
                       {"pooling", "mean"},
                       {"max_positions", 12}}}) {
    INFO(section.dump());
    auto config = ltk::resolve_model_config(section);
    torch::manual_seed(3);
    auto model = ltk::build_model(config, ltk::ModelContext{20, 3, 0, nullptr});
    model->eval();
    torch::NoGradGuard no_grad;
    auto reference = model->forward(batch);
    // The batch as bf16 inference rounds it (below): 3 samples to 4 by an empty one, length 10 to 16
    // (12 where max_positions caps it). In float32 that padding changes no real sample's answer
    // beyond the summation order (the models mask it).
    const int64_t rounded =
        std::min<int64_t>(16, section["max_positions"].is_number() ? section["max_positions"].get<int64_t>() : 16);
    auto rounded_by_hand = batch_of({{2, 7, 9, 11, 3}, {2, 5, 3}, {2, 12, 13, 14, 15, 16, 17, 18, 19, 3}, {}}, rounded);
    CHECK(torch::allclose(model->forward(rounded_by_hand).narrow(0, 0, 3), reference, 1e-5, 1e-6));
    auto& q = ltk::quantizable(*model, section["type"]);
    CHECK_THROWS_WITH(q.quantize("int8"), Contains("this model type takes --quantize bf16"));
    q.quantize("bf16");
    auto out = model->forward(batch);
    CHECK(out.scalar_type() == torch::kFloat);
    CHECK(!torch::equal(out, reference));
    // bf16 keeps 8 bits of mantissa: each weight and activation off by up to 2^-9 of itself, a few
    // layers deep; far below the outputs' spread, not a bound.
    CHECK((out - reference).abs().max().item<double>() < 0.1 * reference.abs().max().item<double>() + 0.05);
    // Padding changes nothing: a sample alone answers as in the padded batch (within bf16's rounding).
    auto alone = model->forward(batch_of({{2, 5, 3}}));
    // (Another matrix shape may round otherwise: 0.010 of outputs up to 0.375 for the transformer here;
    // its padded keys left unmasked change them by 0.28, tried.)
    CHECK((alone[0] - out[1]).abs().max().item<double>() <= 0.1 * out.abs().max().item<double>() + 0.01);
    // In bf16 inference the batch's shape is rounded so that oneDNN keeps a few kernels instead of
    // one per (samples, length): the batch rounded by hand answers the same, bit for bit (the same
    // computation); a batch of 9 samples (rounded to 16) answers 9 rows.
    CHECK(torch::equal(model->forward(rounded_by_hand).narrow(0, 0, 3), out));
    if (section["max_positions"].is_number()) {  // too long for the model: refused as in float32
      const auto too_long = section["max_positions"].get<size_t>() + 1;
      CHECK_THROWS_WITH(model->forward(batch_of({std::vector<int64_t>(too_long, 4), {2, 3}})),
                        Contains("exceeds model.max_positions"));
    }
    auto nine = model->forward(batch_of(std::vector<std::vector<int64_t>>(9, {2, 5, 3})));
    REQUIRE(nine.size(0) == 9);
    CHECK(torch::equal(nine[8], nine[0]));
    auto tensors = ltk::deploy_tensors(*model, "bf16");
    for (const auto& [name, t] : tensors) CHECK(t.scalar_type() == torch::kBFloat16);
    ltk::save_tensors(tensors, dir.file("bf16.pt"));
    torch::manual_seed(99);  // other (random) weights, replaced by the stored ones
    auto loaded = ltk::build_model(config, ltk::ModelContext{20, 3, 0, nullptr});
    loaded->eval();
    ltk::quantizable(*loaded, section["type"]).quantize("bf16");
    ltk::load_weights(*loaded, dir.file("bf16.pt"), ltk::read_weights(dir.file("bf16.pt")));
    CHECK(torch::equal(loaded->forward(batch), out));
  }
}

TEST_CASE("deploy precision: a bf16 batch's shape is rounded to few sizes, by less than an eighth past 128",
          "[models][quantize]") {
  using Shape = std::pair<int64_t, int64_t>;
  CHECK(ltk::bf16_batch_shape(0, 5) == Shape{0, 8});
  for (auto [samples, rounded] :
       std::vector<Shape>{{1, 1}, {3, 4}, {5, 8}, {8, 8}, {9, 16}, {17, 24}, {64, 64}, {65, 72}})
    CHECK(ltk::bf16_batch_shape(samples, 1).first == rounded);
  for (auto [length, rounded] :
       std::vector<Shape>{{1, 8}, {8, 8}, {9, 16}, {64, 64}, {65, 72}, {128, 128}, {129, 144}, {300, 320}})
    CHECK(ltk::bf16_batch_shape(1, length).second == rounded);
  // max_length: never past it; a length already past it is left for the model to refuse.
  CHECK(ltk::bf16_batch_shape(3, 10, 12) == Shape{4, 12});
  CHECK(ltk::bf16_batch_shape(3, 5, 12) == Shape{4, 8});
  CHECK(ltk::bf16_batch_shape(3, 13, 12) == Shape{4, 13});
  std::set<int64_t> lengths;
  for (int64_t length = 1; length <= 1024; ++length) {
    const auto [b, t] = ltk::bf16_batch_shape(3, length);
    REQUIRE(t >= length);
    if (length > 128) REQUIRE(t - length < length / 8);
    REQUIRE(ltk::bf16_batch_shape(b, t) == Shape{b, t});  // a rounded batch is left as it is
    lengths.insert(t);
  }
  CHECK(lengths.size() == 16 + 8 * 3);  // up to 128 by 8, then 8 sizes per doubling
}

TEST_CASE("tasks: the LibTorch-free answer head scores as the task does - temperature - thresholds - positive label",
          "[models][task]") {
  auto labels = ltk::LabelMap::from_labels({"a", "b", "c", "d"});
  auto two = ltk::LabelMap::from_labels({"neg", "pos"});
  torch::manual_seed(11);
  for (const std::string type : {"multiclass", "binary", "multilabel", "regression"}) {
    INFO(type);
    ltk::TaskConfig config;
    config.type = type;
    if (type == "binary") config.positive_label = "neg";
    if (type == "multilabel") config.threshold = nlohmann::json{{"b", 0.25}};
    const ltk::LabelMap& names = type == "binary" ? two : labels;
    auto task = ltk::make_task(config, names, {});
    for (bool calibrated : {false, true}) {
      if (calibrated && type != "regression")
        task->set_temperature(type == "multiclass"
                                  ? std::vector<double>{1.7}
                                  : std::vector<double>(static_cast<size_t>(task->num_outputs()), 0.6));
      const ltk::AnswerHead head = ltk::answer_head(*task, names);
      REQUIRE(head.width() == task->num_outputs());
      CHECK(head.thresholds == task->thresholds());
      if (type == "binary") CHECK(head.positive == 0);
      auto logits = torch::randn({64, task->num_outputs()}) * 4;
      auto expected = task->scores(logits).contiguous();
      std::vector<float> got(static_cast<size_t>(head.width()));
      for (int64_t r = 0; r < logits.size(0); ++r) {
        head.scores(logits[r].data_ptr<float>(), got.data());
        for (int64_t k = 0; k < head.width(); ++k) {
          // float32 softmax and sigmoid against float64 ones rounded to float32: a few units in the last place
          const float e = expected[r][k].item<float>();
          REQUIRE(std::abs(got[static_cast<size_t>(k)] - e) <=
                  8 * std::numeric_limits<float>::epsilon() * std::max(1.0f, std::abs(e)));
        }
        // and the answer is the task's own JSON, byte for byte
        std::string from_head;
        head.write(got.data(), 2, from_head);
        REQUIRE(from_head == task->prediction(got.data(), 2).dump());
      }
    }
  }
  // The config's positive label and per-label thresholds resolve as the task resolves them.
  ltk::TaskConfig bad;
  bad.type = "binary";
  bad.positive_label = "maybe";
  CHECK_THROWS_WITH(ltk::positive_label_index(bad, two), Contains("task.positive_label"));
  ltk::TaskConfig ml;
  ml.type = "multilabel";
  ml.threshold = nlohmann::json{{"z", 0.2}};
  CHECK_THROWS_WITH(ltk::configured_thresholds(ml, labels.names()), Contains("task.threshold.z"));
}
