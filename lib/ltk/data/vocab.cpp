#include "ltk/data/vocab.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/strings.h"
#include "ltk/data/reader.h"

namespace ltk {

Vocabulary::Vocabulary() {
  add(kPad, 0);
  add(kUnk, 0);
  rebuild_index();
}

void Vocabulary::add(std::string token, int64_t count) {
  tokens_.push_back(std::move(token));
  counts_.push_back(count);
}

void Vocabulary::rebuild_index() {
  index_ = TokenIndex();
  for (size_t i = kFirstWordId; i < tokens_.size(); ++i) {
    if (index_.insert(tokens_[i]) != static_cast<int32_t>(i) - kFirstWordId)
      throw DataError("duplicate token '" + tokens_[i] + "' in the vocabulary");
  }
}

Vocabulary Vocabulary::build(const TokenCounter& counter, int64_t min_freq, int64_t max_size) {
  std::vector<std::pair<std::string_view, int64_t>> items;
  for (int32_t i = 0; i < static_cast<int32_t>(counter.size()); ++i) {
    std::string_view tok = counter.token(i);
    int64_t n = counter.count(i);
    if (n >= min_freq && tok != kPad && tok != kUnk) items.emplace_back(tok, n);
  }
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  Vocabulary v;
  size_t limit = max_size > 0 ? static_cast<size_t>(max_size) - 2 : items.size();
  for (size_t i = 0; i < items.size() && i < limit; ++i) v.add(std::string(items[i].first), items[i].second);
  v.rebuild_index();
  return v;
}

void Vocabulary::save(const std::string& path) const {
  std::string out;
  for (size_t i = 0; i < tokens_.size(); ++i) out += tokens_[i] + '\t' + std::to_string(counts_[i]) + '\n';
  write_file_atomic(path, out);
}

Vocabulary Vocabulary::load(const std::string& path) {
  std::string data = read_file(path);
  Vocabulary v;
  v.tokens_.clear();
  v.counts_.clear();
  int64_t line_no = 0;
  for (std::string_view line : split(data, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    auto fields = split(line, '\t');
    if (fields.size() != 2 || fields[0].empty())
      throw DataError(fmt::format("{}:{}: expected token<TAB>count", path, line_no));
    int64_t count = 0;
    try {
      count = std::stoll(std::string(fields[1]));
    } catch (const std::exception&) {
      throw DataError(fmt::format("{}:{}: count '{}' is not an integer", path, line_no, fields[1]));
    }
    v.add(std::string(fields[0]), count);
  }
  if (v.tokens_.size() < 2 || v.tokens_[0] != kPad || v.tokens_[1] != kUnk)
    throw DataError(path + ": a vocabulary must start with <pad> and <unk>; is this an ltk vocab.txt?");
  try {
    v.rebuild_index();
  } catch (const DataError& e) {
    throw DataError(path + ": " + e.what());
  }
  return v;
}

}  // namespace ltk
