// The feature vocabulary of a tf-idf n-gram model, chosen by document frequency
// (build_features_and_encode, ltk/data/dataset.h).
#include <algorithm>

#include "ltk/data/dataset.h"

namespace ltk {

std::pair<Vocabulary, TextDataset> build_features_and_encode(const std::vector<Example>& examples,
                                                             const std::string& source, const Tokenizer& tokenizer,
                                                             const FeatureSelection& selection,
                                                             const TargetEncoder* targets,
                                                             const EncodeOptions& options) {
  // Every term, counted; then each term's document frequency from the encoded split.
  auto [all, data] = build_vocab_and_encode(examples, source, tokenizer, 1, 0, targets, options);
  std::vector<int64_t> df(static_cast<size_t>(all.size()), 0), seen(df.size(), -1);
  for (int64_t i = 0; i < data.size(); ++i) {
    const int32_t* ids = data.tokens(i);
    for (int64_t k = 0; k < data.length(i); ++k) {
      const auto id = static_cast<size_t>(ids[k]);
      if (seen[id] != i) {
        seen[id] = i;
        ++df[id];
      }
    }
  }
  const double n = static_cast<double>(data.size());
  std::vector<int32_t> kept[2];  // word terms, character terms: each block is chosen on its own
  for (int32_t id = Vocabulary::kFirstWordId; id < all.size(); ++id) {
    const auto d = static_cast<double>(df[static_cast<size_t>(id)]);
    if (d >= static_cast<double>(selection.min_df) && d <= selection.max_df * n)  // scikit-learn's test
      kept[is_char_term(all.token(id)) ? 1 : 0].push_back(id);
  }
  TokenCounter by_df;
  for (auto& block : kept) {
    if (selection.max_features > 0 && static_cast<int64_t>(block.size()) > selection.max_features) {
      // The most frequent in all (the vocabulary's count); ties by byte order. With word and
      // character n-grams, max_features of each (a FeatureUnion of two vectorizers).
      const Vocabulary& v = all;  // (a lambda may not capture a structured binding before C++20)
      std::sort(block.begin(), block.end(), [&v](int32_t a, int32_t b) {
        return v.count(a) != v.count(b) ? v.count(a) > v.count(b) : v.token(a) < v.token(b);
      });
      block.resize(static_cast<size_t>(selection.max_features));
    }
    for (int32_t id : block) by_df.add(all.token(id), df[static_cast<size_t>(id)]);
  }
  Vocabulary vocab = Vocabulary::build(by_df, 1, 0);
  std::vector<int32_t> table(df.size());
  for (size_t id = 0; id < table.size(); ++id)
    table[id] =
        id < Vocabulary::kFirstWordId ? static_cast<int32_t>(id) : vocab.id(all.token(static_cast<int32_t>(id)));
  data.map_ids(table);
  return {std::move(vocab), std::move(data)};
}

}  // namespace ltk
