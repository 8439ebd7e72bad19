// Token vocabulary. Built from a corpus: <pad>=0, <unk>=1, then tokens by descending frequency
// (ties by byte order). Or fixed by a pretrained model's WordPiece vocab.txt: the file's order
// is the ids, and its [PAD], [UNK], [CLS], [SEP], [MASK] are the specials.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ltk/data/token_index.h"

namespace ltk {

/// Counts tokens while a training split is read.
class TokenCounter {
 public:
  /// Counts one occurrence; returns the token's id in this counter (first-seen order).
  int32_t add(std::string_view token) {
    int32_t id = index_.insert(token);
    if (static_cast<size_t>(id) == counts_.size()) counts_.push_back(0);
    ++counts_[static_cast<size_t>(id)];
    return id;
  }
  /// add() of each token, the ids appended to `out`.
  void add_all(const std::vector<std::string_view>& tokens, std::vector<int32_t>& out) {
    const size_t at = out.size();
    out.resize(at + tokens.size());
    int32_t* ids = out.data() + at;
    index_.insert_all(tokens.data(), tokens.size(), ids);
    for (size_t k = 0; k < tokens.size(); ++k) {
      const auto id = static_cast<size_t>(ids[k]);
      if (id == counts_.size()) counts_.push_back(0);
      ++counts_[id];
    }
  }
  /// Counts `n` occurrences at once.
  int32_t add(std::string_view token, int64_t n) {
    int32_t id = add(token);
    counts_[static_cast<size_t>(id)] += n - 1;
    return id;
  }
  /// Room for `n` distinct tokens without growing the table.
  void reserve(size_t n) {
    index_.reserve(n);
    counts_.reserve(n);
  }
  size_t size() const { return counts_.size(); }
  std::string_view token(int32_t id) const { return index_.token_at(id); }
  int64_t count(int32_t id) const { return counts_[static_cast<size_t>(id)]; }

 private:
  TokenIndex index_;
  std::vector<int64_t> counts_;
};

class Vocabulary {
 public:
  static constexpr int32_t kPadId = 0;
  static constexpr int32_t kUnkId = 1;
  static constexpr int32_t kFirstWordId = 2;
  static constexpr const char* kPad = "<pad>";
  static constexpr const char* kUnk = "<unk>";

  Vocabulary();

  /// Keeps tokens seen at least `min_freq` times, the `max_size` most frequent in all
  /// (specials included; 0 = no limit).
  static Vocabulary build(const TokenCounter& counter, int64_t min_freq, int64_t max_size);

  /// Reads vocab.txt (token<TAB>count per line); errors name file:line.
  static Vocabulary load(const std::string& path);
  /// Reads a BERT-style vocab.txt (one token per line; line n is id n-1). It must hold [PAD] and
  /// [UNK]; a duplicate or empty line is an error naming file:line.
  static Vocabulary load_wordpiece(const std::string& path);
  /// Writes the format the vocabulary was read in (token<TAB>count, or one token per line).
  void save(const std::string& path) const;

  /// The id of `token`, or unk_id(). In a corpus vocabulary the specials are not looked up: a
  /// text token that reads "<pad>" is unknown, never padding. In a WordPiece vocabulary every
  /// line is a token ("[UNK]" is the tokenizer's own unknown piece).
  int32_t id(std::string_view token) const {
    int32_t i = index_.find(token);
    return i < 0 ? unk_id_ : i + first_word_;
  }
  /// id() of each token, appended to `out` (the table's cache misses overlapped: TokenIndex::find_all).
  void append_ids(const std::vector<std::string_view>& tokens, std::vector<int32_t>& out) const {
    const size_t at = out.size();
    out.resize(at + tokens.size());
    int32_t* ids = out.data() + at;
    index_.find_all(tokens.data(), tokens.size(), ids);
    for (size_t k = 0; k < tokens.size(); ++k) ids[k] = ids[k] < 0 ? unk_id_ : ids[k] + first_word_;
  }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  /// The id of a special token of a WordPiece vocabulary ("[CLS]"), -1 when it has none.
  int32_t special_id(std::string_view token) const {
    int32_t i = fixed_ ? index_.find(token) : -1;
    return i < 0 ? -1 : i + first_word_;
  }
  /// Read from a pretrained WordPiece vocab.txt (ids fixed by the file).
  bool fixed() const { return fixed_; }
  bool contains(std::string_view token) const { return index_.find(token) >= 0; }
  const std::string& token(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  int64_t count(int32_t id) const { return counts_.at(static_cast<size_t>(id)); }
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  void add(std::string token, int64_t count);
  void rebuild_index();

  std::vector<std::string> tokens_;
  std::vector<int64_t> counts_;
  TokenIndex index_;  // the tokens from first_word_ on: index id i is vocabulary id i + first_word_
  int32_t first_word_ = kFirstWordId;
  int32_t pad_id_ = kPadId, unk_id_ = kUnkId;
  bool fixed_ = false;
};

}  // namespace ltk
