#include <catch2/catch.hpp>
#include <torch/serialize.h>

#include "ltk/core/error.h"
#include "ltk/data/dataset.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/checkpoint.h"
#include "ltk/models/bow.h"
#include "ltk/models/registry.h"
#include "ltk/train/task.h"
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

TEST_CASE("pitfall P5: evaluation runs in eval mode and restores the mode - outputs repeat", "[models][eval]") {
  torch::manual_seed(2);
  auto model = make_bow(16, /*dropout=*/0.5);
  model->train();
  std::vector<ltk::Example> ex = {{"a", "x y", 1}, {"b", "y z", 2}, {"a", "x", 3}};
  ltk::WhitespaceTokenizer tok(true);
  auto vocab = ltk::Vocabulary::build(ltk::count_tokens(ex, tok), 1, 0);
  auto labels = ltk::LabelMap::from_labels({"a", "b", "c"});
  auto targets = ltk::class_targets(labels);
  auto data = ltk::encode_examples(ex, "mem", tok, vocab, &targets, {});
  ltk::MulticlassTask task(3, "mean");
  auto p1 = ltk::predict(*model, task, data, 2, torch::kCPU, 20);
  CHECK(model->is_training());
  auto p2 = ltk::predict(*model, task, data, 2, torch::kCPU, 20);
  CHECK(p1.scores.equal(p2.scores));
  CHECK_FALSE(p1.scores.requires_grad());  // P6: no graph kept
  CHECK(p1.scores.device().is_cpu());
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
