// Token vocabulary: <pad>=0, <unk>=1, then tokens by descending frequency (ties by byte order).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ltk {

/// Counts tokens while a training split is read.
class TokenCounter {
 public:
  void add(std::string_view token);
  const std::unordered_map<std::string, int64_t>& counts() const { return counts_; }

 private:
  std::unordered_map<std::string, int64_t> counts_;
};

class Vocabulary {
 public:
  static constexpr int32_t kPadId = 0;
  static constexpr int32_t kUnkId = 1;
  static constexpr const char* kPad = "<pad>";
  static constexpr const char* kUnk = "<unk>";

  Vocabulary();
  // The index holds views into tokens_: a copy rebuilds it (a move keeps the strings in place).
  Vocabulary(const Vocabulary& other);
  Vocabulary& operator=(const Vocabulary& other);
  Vocabulary(Vocabulary&&) noexcept = default;
  Vocabulary& operator=(Vocabulary&&) noexcept = default;

  /// Keeps tokens seen at least `min_freq` times, the `max_size` most frequent in all
  /// (specials included; 0 = no limit).
  static Vocabulary build(const TokenCounter& counter, int64_t min_freq, int64_t max_size);

  /// Reads vocab.txt (token<TAB>count per line); errors name file:line.
  static Vocabulary load(const std::string& path);
  void save(const std::string& path) const;

  /// The id of `token`, or kUnkId.
  int32_t id(std::string_view token) const {
    auto it = index_.find(token);
    return it == index_.end() ? kUnkId : it->second;
  }
  bool contains(std::string_view token) const { return index_.count(token) != 0; }
  const std::string& token(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  int64_t count(int32_t id) const { return counts_.at(static_cast<size_t>(id)); }
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  void add(std::string token, int64_t count);
  void rebuild_index();

  std::vector<std::string> tokens_;
  std::vector<int64_t> counts_;
  std::unordered_map<std::string_view, int32_t> index_;  // views into tokens_
};

}  // namespace ltk
