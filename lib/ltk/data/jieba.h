// Chinese word segmentation as jieba does it without its HMM (jieba.lcut(text, HMM=False)):
// a prefix dictionary from a dict.txt ("word freq [tag]" lines), the DAG of dictionary words
// over each run of Chinese/alphanumeric characters, and the maximum-probability route through
// it; runs of single ASCII letters/digits are joined; other characters are tokens of their own.
// Whitespace is never a token (jieba yields it; ltk drops it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
  /// One entry of the prefix dictionary: a word or a prefix of one (freq 0), its UTF-8 bytes at
  /// `offset` in words_text_.
  struct Slot {
    uint64_t hash = 0;
    uint32_t offset = 0;
    uint32_t length = 0;  ///< 0: an empty slot
    int64_t freq = 0;
  };
  /// The slot of the `length` bytes at `bytes`, whose hash is `hash`: the entry's, or the empty slot
  /// where it would go.
  const Slot& find(uint64_t hash, const char* bytes, size_t length) const;
  /// The entry of `bytes` (inserted with freq 0 when new).
  Slot& entry(uint64_t hash, const char* bytes, size_t length);
  void grow();
  /// Segments one block of Chinese/alphanumeric characters: its `n` code points start at bytes
  /// `offset[0..n)` of `s` and end at offset[n]; code point spans into `out`.
  void cut_block(std::string_view s, const size_t* offset, size_t n, std::vector<std::pair<size_t, size_t>>& out) const;

  // The prefix dictionary: an open-addressing table (linear probing, a power of two in size, at
  // most half full) whose keys are byte strings in words_text_ (each word re-encoded, so that a byte
  // that is not UTF-8 is U+FFFD as in the text). A lookup extends the key's hash a code point at a
  // time: the DAG over a block of n characters costs O(n x the longest word), with no allocation.
  std::string words_text_;
  std::vector<Slot> table_;
  size_t entries_ = 0;
  double log_total_ = 0;
  int64_t words_ = 0;
};

/// The default dictionary: Debian python3-jieba's dict.txt.
inline const char* kDefaultJiebaDict = "/usr/lib/python3/dist-packages/jieba/dict.txt";

}  // namespace ltk
