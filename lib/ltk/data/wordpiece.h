// WordPiece as BERT and Hugging Face's tokenizers do it: BertNormalizer (clean text, spaces around
// CJK ideographs, strip accents and lowercase for uncased vocabularies), BertPreTokenizer
// (whitespace and punctuation), then greedy longest-match-first with "##" continuations and
// [UNK] for a word it cannot cover. Reads a BERT-style vocab.txt (one token per line).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ltk/data/token_index.h"
#include "ltk/data/tokenizer.h"

namespace ltk {

class WordPieceTokenizer : public Tokenizer {
 public:
  /// `lowercase` also strips accents (BERT uncased, Hugging Face's default); `strip_accents`
  /// strips them without lowercasing; `chinese_chars` isolates CJK ideographs. Errors name the
  /// vocab file.
  WordPieceTokenizer(const std::string& vocab_path, bool lowercase, bool strip_accents = false,
                     bool chinese_chars = true, int64_t max_chars_per_word = 100);
  using Tokenizer::tokenize;
  void tokenize(std::string_view text, std::string& scratch,
                std::vector<std::string_view>& tokens) const override;
  int64_t vocab_size() const { return static_cast<int64_t>(whole_.size()); }

 private:
  /// The pieces of `text` (no special tokens in it), appended to `out`: their bytes (a continuation
  /// with its "##") and each one's [start, length) in it.
  void pieces(std::string_view text, std::string& out, std::vector<std::pair<size_t, size_t>>& spans) const;
  TokenIndex whole_;      ///< every entry of the vocabulary
  TokenIndex continued_;  ///< the entries that start with "##", without it
  bool lowercase_, strip_accents_, chinese_chars_;
  int64_t max_chars_;
};

/// BERT's normalisation (BertNormalizer): control characters dropped, whitespace made ' ', CJK
/// ideographs spaced (`chinese_chars`), accents stripped (NFD, then no nonspacing marks), lowercased;
/// into `out`.
void bert_normalize(std::string_view text, bool lowercase, bool strip_accents, bool chinese_chars, std::string& out);
/// BERT's pre-tokenisation (BertPreTokenizer) of normalised text `s`: its words split on whitespace,
/// every punctuation mark a word; each word's [start, end) bytes into `words`.
void bert_words(std::string_view s, std::vector<std::pair<size_t, size_t>>& words);
/// Both, the words as code points (for learning a vocabulary). `scratch` holds intermediate text.
void bert_pre_tokenize(std::string_view text, bool lowercase, bool strip_accents, bool chinese_chars,
                       std::string& scratch, std::vector<std::u32string>& words);

struct WordPieceTrainOptions {
  int64_t size = 8000;         ///< entries in all, specials included
  int64_t min_frequency = 2;   ///< a pair seen fewer times (weighted by word counts) is not merged
  bool lowercase = true, strip_accents = false, chinese_chars = true;  ///< as the tokenizer will use them
};

/// Learns a WordPiece vocabulary from texts as Hugging Face's WordPieceTrainer does: BERT's
/// pre-tokenised words split into characters ("##" on every one but the first), then the most
/// frequent adjacent pair merged (ties by first appearance) until `size` entries. The specials
/// [PAD] [UNK] [CLS] [SEP] [MASK] come first, then the characters (most frequent first; the rarest
/// dropped when they alone exceed the size), then the merges in order.
std::vector<std::string> train_wordpiece(const std::vector<std::string>& texts, const WordPieceTrainOptions& options);

}  // namespace ltk
