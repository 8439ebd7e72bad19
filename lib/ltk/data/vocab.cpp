#include "ltk/data/vocab.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/strings.h"
#include "ltk/data/reader.h"
#include "ltk/data/utf8.h"

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
  index_.reserve(tokens_.size());
  for (size_t i = static_cast<size_t>(first_word_); i < tokens_.size(); ++i) {
    if (index_.insert(tokens_[i]) != static_cast<int32_t>(i) - first_word_)
      throw DataError(fmt::format("line {}: duplicate token '{}' in the vocabulary", i + 1, tokens_[i]));
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
  for (size_t i = 0; i < tokens_.size(); ++i)
    out += fixed_ ? tokens_[i] + '\n' : tokens_[i] + '\t' + std::to_string(counts_[i]) + '\n';
  write_file_atomic(path, out);
}

namespace {

// A token read from a vocabulary file: text a tokenizer can produce (no line break, valid UTF-8).
void check_token(std::string_view token, const std::string& path, int64_t line_no) {
  if (token.find('\r') != std::string_view::npos)
    throw DataError(fmt::format("{}:{}: a token holds a carriage return; one token per line, LF or CRLF", path, line_no));
  size_t bad = utf8::find_invalid(token);
  if (bad != std::string_view::npos)
    throw DataError(fmt::format("{}:{}: invalid UTF-8 at byte {} of the token", path, line_no, bad));
}

}  // namespace

Vocabulary Vocabulary::load(const std::string& path) {
  std::string data = read_file(path);
  Vocabulary v;
  v.tokens_.clear();
  v.counts_.clear();
  const auto lines = static_cast<size_t>(std::count(data.begin(), data.end(), '\n')) + 1;
  v.tokens_.reserve(lines);
  v.counts_.reserve(lines);
  int64_t line_no = 0;
  for (std::string_view line : split(data, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF
    if (line.empty()) continue;
    const size_t tab = line.find('\t');
    if (tab == 0 || tab == std::string_view::npos || line.find('\t', tab + 1) != std::string_view::npos)
      throw DataError(fmt::format("{}:{}: expected token<TAB>count", path, line_no));
    const std::string_view token = line.substr(0, tab), digits = line.substr(tab + 1);
    int64_t count = -1;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
    if (error != std::errc() || end != digits.data() + digits.size() || count < 0 || digits.empty() ||
        !std::isdigit(static_cast<unsigned char>(digits[0])))
      throw DataError(fmt::format("{}:{}: count '{}' is not a non-negative integer", path, line_no, digits));
    check_token(token, path, line_no);
    v.add(std::string(token), count);
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

Vocabulary Vocabulary::load_wordpiece(const std::string& path) {
  std::string data = read_file(path);
  if (!data.empty() && data.back() == '\n') data.pop_back();
  Vocabulary v;
  v.tokens_.clear();
  v.counts_.clear();
  v.fixed_ = true;
  v.first_word_ = 0;
  int64_t line_no = 0;
  for (std::string_view line : split(data, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty())
      throw DataError(fmt::format("{}:{}: empty line; a WordPiece vocab.txt has one token per line", path, line_no));
    check_token(line, path, line_no);
    v.add(std::string(line), 0);
  }
  try {
    v.rebuild_index();
  } catch (const DataError& e) {
    throw DataError(path + ":" + std::string(e.what()).substr(5));  // "line N: ..." -> "path:N: ..."
  }
  for (auto [name, out] : {std::pair<const char*, int32_t*>{"[PAD]", &v.pad_id_}, {"[UNK]", &v.unk_id_}}) {
    *out = v.special_id(name);
    if (*out < 0) throw DataError(path + ": a WordPiece vocabulary needs a " + name + " token (one token per line)");
  }
  return v;
}

}  // namespace ltk
