#include "ltk/data/jieba.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

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

constexpr uint64_t kFnvBasis = 14695981039346656037ull;

/// FNV-1a over `n` more bytes: a key's hash grows with the key.
uint64_t extend_hash(uint64_t h, const char* bytes, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(bytes[i]);
    h *= 1099511628211ull;
  }
  return h;
}

size_t slot_index(uint64_t hash, size_t capacity) {  // capacity: a power of two
  return static_cast<size_t>((hash * 0x9E3779B97F4A7C15ull) >> (64 - __builtin_ctzll(capacity)));
}

}  // namespace

const JiebaTokenizer::Slot& JiebaTokenizer::find(uint64_t hash, const char* bytes, size_t length) const {
  const size_t mask = table_.size() - 1;
  for (size_t i = slot_index(hash, table_.size());; i = (i + 1) & mask) {
    const Slot& slot = table_[i];
    if (slot.length == 0) return slot;
    if (slot.hash == hash && slot.length == length && std::memcmp(words_text_.data() + slot.offset, bytes, length) == 0)
      return slot;
  }
}

void JiebaTokenizer::grow() {
  std::vector<Slot> old(table_.size() * 2);
  old.swap(table_);
  const size_t mask = table_.size() - 1;
  for (const Slot& slot : old) {
    if (slot.length == 0) continue;
    size_t i = slot_index(slot.hash, table_.size());
    while (table_[i].length != 0) i = (i + 1) & mask;
    table_[i] = slot;
  }
}

JiebaTokenizer::Slot& JiebaTokenizer::entry(uint64_t hash, const char* bytes, size_t length) {
  if ((entries_ + 1) * 2 > table_.size()) grow();
  auto& slot = const_cast<Slot&>(find(hash, bytes, length));
  if (slot.length == 0) {
    slot.hash = hash;
    slot.offset = static_cast<uint32_t>(bytes - words_text_.data());
    slot.length = static_cast<uint32_t>(length);
    slot.freq = 0;
    ++entries_;
  }
  return slot;
}

JiebaTokenizer::JiebaTokenizer(const std::string& dict_path, Normalizer normalizer) : Tokenizer(normalizer) {
  // python3-jieba's dict.txt: ~350,000 lines of "word frequency [tag]", parsed in place into the
  // prefix table (about 1.5 entries a line with the prefixes).
  std::string data = read_file(dict_path);
  // Offsets are 32-bit: a word's bytes are at most 3 times its line's (U+FFFD for a stray byte).
  if (data.size() >= (size_t{1} << 30)) throw DataError(dict_path + ": a jieba dictionary must be under 1 GiB");
  words_text_.reserve(data.size());  // the slots hold offsets: the words may still move as it grows
  // About 1.43 entries a line with the prefixes (python3-jieba's dict.txt), the table at most half
  // full: no growing for such a file.
  const auto lines = static_cast<size_t>(std::count(data.begin(), data.end(), '\n'));
  size_t capacity = size_t{1} << 10;
  while (capacity < lines * 29 / 10) capacity *= 2;
  table_.resize(capacity);
  int64_t line_no = 0, total = 0;
  std::vector<size_t> ends;  // the byte ends of the word's code points
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
    if (f < 0)
      throw DataError(
          fmt::format("{}:{}: the frequency {} is negative: a word's count must be 0 or more", dict_path, line_no, f));
    if (__builtin_add_overflow(total, f, &total))
      throw DataError(fmt::format("{}:{}: the frequencies sum past {}: scale the dictionary's counts down", dict_path,
                                  line_no, std::numeric_limits<int64_t>::max()));
    const std::string_view text = line.substr(0, space);
    const size_t at = words_text_.size();
    ends.clear();
    for (size_t i = 0; i < text.size();) {
      utf8::append(words_text_, utf8::next(text, i));
      ends.push_back(words_text_.size() - at);
    }
    const char* word = words_text_.data() + at;
    uint64_t h = kFnvBasis;
    size_t done = 0;
    for (size_t e : ends) {  // each prefix, unless already there, with freq 0; then the word
      h = extend_hash(h, word + done, e - done);
      done = e;
      Slot& slot = entry(h, word, e);
      if (e == ends.back()) slot.freq = f;
    }
    ++words_;
  }
  if (total <= 0) throw DataError(dict_path + ": the dictionary holds no word with a frequency");
  log_total_ = std::log(static_cast<double>(total));
}

void JiebaTokenizer::cut_block(std::string_view s, const size_t* offset, size_t N,
                               std::vector<std::pair<size_t, size_t>>& out) const {
  // DAG[k]: the ends x of the dictionary words s[k..x] (x = k when there is none), each with its
  // frequency (1 for that fallback), as jieba's get_DAG.
  std::vector<size_t> first(N + 1);
  std::vector<std::pair<size_t, int64_t>> dag;
  dag.reserve(N * 2);
  for (size_t k = 0; k < N; ++k) {
    first[k] = dag.size();
    uint64_t h = kFnvBasis;
    const char* begin = s.data() + offset[k];
    for (size_t i = k; i < N; ++i) {
      h = extend_hash(h, s.data() + offset[i], offset[i + 1] - offset[i]);
      const Slot& slot = find(h, begin, offset[i + 1] - offset[k]);
      if (slot.length == 0) break;
      if (slot.freq) dag.emplace_back(i, slot.freq);
    }
    if (dag.size() == first[k]) dag.emplace_back(k, 1);
  }
  first[N] = dag.size();
  // route[idx] = max over x in DAG[idx] of (log(freq or 1) - log(total) + route[x + 1]); ties go to the
  // larger x, as Python's max over (value, x) tuples does.
  std::vector<double> best(N + 1, 0.0);
  std::vector<size_t> next(N + 1, 0);
  for (size_t idx = N; idx-- > 0;) {
    bool first_x = true;
    for (size_t e = first[idx]; e < first[idx + 1]; ++e) {
      const auto [x, f] = dag[e];
      double v = std::log(static_cast<double>(f)) - log_total_ + best[x + 1];
      if (first_x || v > best[idx] || (v == best[idx] && x > next[idx])) {
        best[idx] = v;
        next[idx] = x;
        first_x = false;
      }
    }
  }
  size_t x = 0, buf_start = 0;
  bool in_buf = false;
  while (x < N) {
    size_t y = next[x] + 1;
    // single ASCII letters/digits are joined
    if (y - x == 1 && offset[x + 1] - offset[x] == 1 && is_ascii_alnum(static_cast<unsigned char>(s[offset[x]]))) {
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
      cut_block(s, offset.data() + i, j - i, spans);
      for (auto [a, b] : spans) tokens.push_back(s.substr(offset[i + a], offset[i + b] - offset[i + a]));
      i = j;
    } else {
      if (!is_unicode_space(cps[i]) && !is_control(cps[i])) tokens.push_back(s.substr(offset[i], offset[i + 1] - offset[i]));
      ++i;
    }
  }
}

}  // namespace ltk
