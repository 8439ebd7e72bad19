// The terms of a tf-idf n-gram model (model.type "linear"): word n-grams of a tokenizer's words
// and character n-grams within word boundaries, with scikit-learn's TfidfVectorizer definitions
// (analyzer "word" and "char_wb"), and a feature vocabulary chosen by document frequency.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "ltk/data/tokenizer.h"
#include "ltk/data/vocab.h"

namespace ltk {

struct NgramRanges {
  /// Word n-grams from word_min to word_max words, joined by one space; word_max 0 = none.
  int64_t word_min = 1, word_max = 2;
  /// Character n-grams of each whitespace-separated word padded with a space on both sides
  /// (scikit-learn's char_wb); char_max 0 = none.
  int64_t char_min = 0, char_max = 0;
  /// > 0: every term becomes its hash bucket, "#k" (character terms " #k"), k in [0, buckets):
  /// scikit-learn's HashingVectorizer (MurmurHash3 x86_32, seed 0, of the term's UTF-8 bytes,
  /// |h| mod buckets, no alternating sign); each kind of n-gram has its own buckets.
  int64_t buckets = 0;
  bool words() const { return word_max > 0; }
  bool chars() const { return char_max > 0; }
};

/// Every character n-gram term starts with this mark (a space), so that it never equals a word
/// term: no tokenizer's word starts with a space, and word n-grams join words with inner spaces.
inline constexpr char kCharTermMark = ' ';
inline bool is_char_term(std::string_view term) { return !term.empty() && term[0] == kCharTermMark; }

/// The bucket of `term` among `buckets` (> 0): scikit-learn's HashingVectorizer's column for it.
uint32_t hash_bucket(std::string_view term, int64_t buckets);

/// Splits text into n-gram terms: the word n-grams of `words`' tokens, then the character
/// n-grams of the normalised text (normalised by `normalizer`, as the word tokenizer does).
class NgramTokenizer : public Tokenizer {
 public:
  NgramTokenizer(std::unique_ptr<Tokenizer> words, Normalizer normalizer, NgramRanges ranges);
  using Tokenizer::tokenize;
  void tokenize(std::string_view text, std::string& scratch, std::vector<std::string_view>& tokens) const override;

 private:
  std::unique_ptr<Tokenizer> words_;
  NgramRanges ranges_;
};

/// Which terms become features, as TfidfVectorizer chooses them: those in at least min_df and at
/// most max_df (a share) of the training texts, then the max_features most frequent in all
/// (0 = no limit; ties by byte order).
struct FeatureSelection {
  int64_t min_df = 1;
  double max_df = 1.0;
  int64_t max_features = 0;
};

}  // namespace ltk
