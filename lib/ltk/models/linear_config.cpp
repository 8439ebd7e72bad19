#include "ltk/models/linear_config.h"

#include "ltk/core/error.h"

namespace ltk {

std::optional<LinearFeatures> linear_features(const ModelConfig& model) {
  if (model.type != "linear") return std::nullopt;
  const auto& j = model.options;
  LinearFeatures f;
  auto words = j.at("ngram_range").get<std::vector<int64_t>>(),
       chars = j.at("char_ngram_range").get<std::vector<int64_t>>();
  f.ranges.word_min = words[0];
  f.ranges.word_max = words[1];
  f.ranges.char_min = chars[0];
  f.ranges.char_max = chars[1];
  f.ranges.buckets = j.at("buckets").get<int64_t>();
  f.selection.min_df = j.at("min_df").get<int64_t>();
  f.selection.max_df = j.at("max_df").get<double>();
  f.selection.max_features = j.at("max_features").get<int64_t>();
  return f;
}

std::unique_ptr<Tokenizer> make_run_tokenizer(const TokenizerConfig& tokenizer, const ModelConfig& model) {
  auto words = make_tokenizer(tokenizer);
  auto features = linear_features(model);
  if (!features) return words;
  return std::make_unique<NgramTokenizer>(
      std::move(words), Normalizer{tokenizer.lowercase, tokenizer.nfkc, tokenizer.strip_accents}, features->ranges);
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
  int64_t buckets = 0;  // hashed features (scikit-learn's HashingVectorizer); 0: a vocabulary of n-grams
  r.get("buckets", buckets);
  check_min(r.key_path("buckets"), static_cast<double>(buckets), 0);
  check_max(r.key_path("buckets"), static_cast<double>(buckets), 1 << 30);
  return {{"ngram_range", words},
          {"char_ngram_range", chars},
          {"min_df", min_df},
          {"max_df", max_df},
          {"max_features", max_features},
          {"sublinear_tf", sublinear_tf},
          {"C", C},
          {"sparse", sparse},
          {"intercept_scaling", intercept_scaling},
          {"buckets", buckets}};
}

}  // namespace ltk
