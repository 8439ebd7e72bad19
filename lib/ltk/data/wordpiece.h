// WordPiece as BERT and Hugging Face's tokenizers do it: BertNormalizer (clean text, spaces around
// CJK ideographs, strip accents and lowercase for uncased vocabularies), BertPreTokenizer
// (whitespace and punctuation), then greedy longest-match-first with "##" continuations and
// [UNK] for a word it cannot cover. Reads a BERT-style vocab.txt (one token per line).
#pragma once

#include <string>
#include <unordered_set>

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
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }

 private:
  std::unordered_set<std::string> vocab_;
  bool lowercase_, strip_accents_, chinese_chars_;
  int64_t max_chars_;
};

}  // namespace ltk
