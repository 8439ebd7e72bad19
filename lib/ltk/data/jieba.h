// Chinese word segmentation as jieba does it without its HMM (jieba.lcut(text, HMM=False)):
// a prefix dictionary from a dict.txt ("word freq [tag]" lines), the DAG of dictionary words
// over each run of Chinese/alphanumeric characters, and the maximum-probability route through
// it; runs of single ASCII letters/digits are joined; other characters are tokens of their own.
// Whitespace is never a token (jieba yields it; ltk drops it).
#pragma once

#include <string>
#include <unordered_map>

#include "ltk/data/tokenizer.h"

namespace ltk {

class JiebaTokenizer : public Tokenizer {
 public:
  /// Reads the dictionary; errors name file:line.
  JiebaTokenizer(const std::string& dict_path, Normalizer normalizer);
  using Tokenizer::tokenize;
  void tokenize(std::string_view text, std::string& scratch,
                std::vector<std::string_view>& tokens) const override;
  int64_t words() const { return words_; }

 private:
  /// Segments one block of Chinese/alphanumeric characters into `out` (code point spans).
  void cut_block(const std::u32string& block, std::vector<std::pair<size_t, size_t>>& out) const;

  std::unordered_map<std::u32string, int64_t> freq_;  // words and their prefixes (0)
  double log_total_ = 0;
  int64_t words_ = 0;
};

/// The default dictionary: Debian python3-jieba's dict.txt.
inline const char* kDefaultJiebaDict = "/usr/lib/python3/dist-packages/jieba/dict.txt";

}  // namespace ltk
