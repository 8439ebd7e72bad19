// Token vocabulary: <pad>=0, <unk>=1, then tokens by descending frequency (ties by byte order).
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
  void save(const std::string& path) const;

  /// The id of `token`, or kUnkId. The specials are not looked up: a text token that reads
  /// "<pad>" is unknown, never padding.
  int32_t id(std::string_view token) const {
    int32_t i = index_.find(token);
    return i < 0 ? kUnkId : i + kFirstWordId;
  }
  bool contains(std::string_view token) const { return index_.find(token) >= 0; }
  const std::string& token(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  int64_t count(int32_t id) const { return counts_.at(static_cast<size_t>(id)); }
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  void add(std::string token, int64_t count);
  void rebuild_index();

  std::vector<std::string> tokens_;
  std::vector<int64_t> counts_;
  TokenIndex index_;  // the tokens after the specials: index id i is vocabulary id i + 2
};

}  // namespace ltk
