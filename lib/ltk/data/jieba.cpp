#include "ltk/data/jieba.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/strings.h"
#include "ltk/data/reader.h"
#include "ltk/data/utf8.h"

namespace ltk {

namespace {

// jieba's re_han_default: [\u4E00-\u9FD5a-zA-Z0-9+#&._%-]
bool is_han_block_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FD5) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '+' || c == '#' || c == '&' || c == '.' || c == '_' || c == '%' || c == '-';
}

bool is_ascii_alnum(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

JiebaTokenizer::JiebaTokenizer(const std::string& dict_path, Normalizer normalizer) : Tokenizer(normalizer) {
  // python3-jieba's dict.txt: ~350,000 lines of "word frequency [tag]". Parsed in place (no
  // per-line vectors or strings) into a table sized once: about 1.5 entries a line with prefixes.
  std::string data = read_file(dict_path);
  freq_.reserve(static_cast<size_t>(std::count(data.begin(), data.end(), '\n')) * 3 / 2 + 16);
  int64_t line_no = 0, total = 0;
  std::u32string word;
  for (std::string_view line : split(data, '\n')) {
    ++line_no;
    line = trim(line);
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    std::string_view count = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
    count = count.substr(0, count.find(' '));
    int64_t f = 0;
    const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), f);
    if (count.empty() || ec != std::errc() || end != count.data() + count.size())
      throw DataError(fmt::format("{}:{}: expected 'word frequency [tag]'", dict_path, line_no));
    word.clear();
    const std::string_view text = line.substr(0, space);
    for (size_t i = 0; i < text.size();) word.push_back(utf8::next(text, i));
    freq_.insert_or_assign(word, f);
    total += f;
    ++words_;
    for (size_t k = 1; k < word.size(); ++k) freq_.try_emplace(word.substr(0, k), 0);  // a prefix, unless a word
  }
  if (total <= 0) throw DataError(dict_path + ": the dictionary holds no word with a frequency");
  log_total_ = std::log(static_cast<double>(total));
}

void JiebaTokenizer::cut_block(const std::u32string& s, std::vector<std::pair<size_t, size_t>>& out) const {
  const size_t N = s.size();
  std::vector<std::vector<size_t>> dag(N);
  for (size_t k = 0; k < N; ++k) {
    size_t i = k;
    std::u32string frag(1, s[k]);
    for (auto it = freq_.find(frag); i < N && it != freq_.end();) {
      if (it->second) dag[k].push_back(i);
      ++i;
      if (i >= N) break;
      frag.push_back(s[i]);
      it = freq_.find(frag);
    }
    if (dag[k].empty()) dag[k].push_back(k);
  }
  // route[idx] = max over x in DAG[idx] of (log(freq or 1) - log(total) + route[x + 1]); ties go to the
  // larger x, as Python's max over (value, x) tuples does.
  std::vector<double> best(N + 1, 0.0);
  std::vector<size_t> next(N + 1, 0);
  for (size_t idx = N; idx-- > 0;) {
    bool first = true;
    for (size_t x : dag[idx]) {
      auto it = freq_.find(s.substr(idx, x + 1 - idx));
      int64_t f = it == freq_.end() || it->second == 0 ? 1 : it->second;
      double v = std::log(static_cast<double>(f)) - log_total_ + best[x + 1];
      if (first || v > best[idx] || (v == best[idx] && x > next[idx])) {
        best[idx] = v;
        next[idx] = x;
        first = false;
      }
    }
  }
  size_t x = 0, buf_start = 0;
  bool in_buf = false;
  while (x < N) {
    size_t y = next[x] + 1;
    if (y - x == 1 && is_ascii_alnum(s[x])) {  // single ASCII letters/digits are joined
      if (!in_buf) buf_start = x;
      in_buf = true;
    } else {
      if (in_buf) out.emplace_back(buf_start, x);
      in_buf = false;
      out.emplace_back(x, y);
    }
    x = y;
  }
  if (in_buf) out.emplace_back(buf_start, N);
}

void JiebaTokenizer::tokenize(std::string_view text, std::string& scratch, std::vector<std::string_view>& tokens) const {
  tokens.clear();
  std::string_view s = norm_.apply(text, scratch);
  // Code points with their byte offsets, so tokens can be views into `s`.
  std::u32string cps;
  std::vector<size_t> offset;
  for (size_t i = 0; i < s.size();) {
    offset.push_back(i);
    cps.push_back(utf8::next(s, i));
  }
  offset.push_back(s.size());
  std::vector<std::pair<size_t, size_t>> spans;
  size_t i = 0;
  while (i < cps.size()) {
    if (is_han_block_char(cps[i])) {
      size_t j = i;
      while (j < cps.size() && is_han_block_char(cps[j])) ++j;
      spans.clear();
      cut_block(cps.substr(i, j - i), spans);
      for (auto [a, b] : spans) tokens.push_back(s.substr(offset[i + a], offset[i + b] - offset[i + a]));
      i = j;
    } else {
      if (!is_unicode_space(cps[i]) && !is_control(cps[i])) tokens.push_back(s.substr(offset[i], offset[i + 1] - offset[i]));
      ++i;
    }
  }
}

}  // namespace ltk
