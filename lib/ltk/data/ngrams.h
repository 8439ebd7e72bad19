// The terms of a tf-idf n-gram model (model.type "linear"): word n-grams of a tokenizer's words
// and character n-grams within word boundaries, with scikit-learn's TfidfVectorizer definitions
// (analyzer "word" and "char_wb"), and a feature vocabulary chosen by document frequency.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "ltk/data/token_index.h"
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

  // tokenize() in its parts (NgramIds looks each word's character n-grams up once):
  const NgramRanges& ranges() const { return ranges_; }
  /// The word n-gram terms of `text` (tokenize()'s first terms).
  void word_terms(std::string_view text, std::string& scratch, std::vector<std::string_view>& tokens) const;
  /// The normalised text whose words char_terms() splits.
  std::string_view normalise(std::string_view text, std::string& scratch) const { return norm_.apply(text, scratch); }
  /// The next whitespace-separated word of `s` from byte `i` on, as [start, end) (start == end:
  /// none left); `i` moves past it.
  static std::pair<size_t, size_t> next_char_word(std::string_view s, size_t& i);
  /// The character n-gram terms of one such word (tokenize()'s next terms, word by word).
  void char_terms(std::string_view word, std::string& scratch, std::vector<std::string_view>& tokens) const;

 private:
  using Spans = std::vector<std::pair<size_t, size_t>>;
  void add_word_terms(std::string_view text, std::string& scratch, Spans& spans) const;
  void add_char_terms(std::string_view word, std::string& scratch, Spans& spans) const;
  void name_buckets(std::string& scratch, Spans& spans) const;
  /// add(spans) writes terms into `scratch`; they are then named by bucket and viewed into `tokens`.
  template <typename Add>
  void terms(std::string& scratch, std::vector<std::string_view>& tokens, Add&& add) const;

  std::unique_ptr<Tokenizer> words_;
  NgramRanges ranges_;
};

/// The vocabulary ids of a text's NgramTokenizer terms that are features (ids from
/// Vocabulary::kFirstWordId on), for the sparse scoring of a linear run (ltk-predict): the word
/// n-grams looked up in `vocab` as tokenize() gives them, and each word's character n-grams looked
/// up once and then kept, by the word (most of a text's terms are character n-grams, and words
/// repeat: fastText keeps its words' subword ids the same way). The same ids, in the same order, as
/// tokenize() then Vocabulary::append_ids() give, unknown ones left out: the order matters, since
/// score_text() sums float32 weights in it. Not thread-safe: one per thread. Memory stays bounded:
/// words longer than kMaxWordBytes are not kept, and the kept words are dropped all at once when
/// they reach `max_words`, or their ids `max_ids`.
class NgramIds {
 public:
  static constexpr size_t kMaxWordBytes = 64;
  NgramIds(const NgramTokenizer& tokenizer, const Vocabulary& vocab, size_t max_words = size_t{1} << 16,
           size_t max_ids = size_t{1} << 22);
  /// The ids of `text`, into `out` (cleared first).
  void ids(std::string_view text, std::vector<int32_t>& out);
  /// Words looked up so far, and how many of them were not kept (the cache's misses).
  int64_t lookups() const { return lookups_; }
  int64_t misses() const { return misses_; }

 private:
  void clear();
  const NgramTokenizer& tokenizer_;
  const Vocabulary& vocab_;
  size_t max_words_, max_ids_;
  TokenIndex words_;  // the kept words: word w's ids are ids_[ends_[w], ends_[w + 1])
  size_t words_room_ = 0;  // words_ reserved for this many words
  std::vector<int32_t> ids_;
  std::vector<size_t> ends_;
  std::string scratch_, norm_scratch_;
  std::vector<std::string_view> terms_;
  std::vector<int32_t> found_;
  int64_t lookups_ = 0, misses_ = 0;
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
