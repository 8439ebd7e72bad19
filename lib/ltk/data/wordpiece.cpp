#include "ltk/data/wordpiece.h"

#include <utf8proc.h>

#include <cstdlib>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/strings.h"
#include "ltk/data/reader.h"
#include "ltk/data/utf8.h"

namespace ltk {

namespace {

bool bert_whitespace(char32_t c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
  return utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_ZS;
}

bool bert_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
         cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN;
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(const std::string& vocab_path, bool lowercase, bool strip_accents,
                                       bool chinese_chars, int64_t max_chars_per_word)
    : Tokenizer(Normalizer{false, false, false}),
      lowercase_(lowercase),
      strip_accents_(lowercase || strip_accents),
      chinese_chars_(chinese_chars),
      max_chars_(max_chars_per_word) {
  std::string data = read_file(vocab_path);
  for (std::string_view line : split(data, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) vocab_.emplace(line);
  }
  if (!vocab_.count("[UNK]"))
    throw DataError(vocab_path + ": a WordPiece vocabulary needs an [UNK] token (one token per line, BERT style)");
}

void WordPieceTokenizer::tokenize(std::string_view text, std::string& scratch,
                                  std::vector<std::string_view>& tokens) const {
  tokens.clear();
  // BertNormalizer: clean text, isolate CJK ideographs, strip accents, lowercase.
  std::string cleaned;
  size_t i = 0;
  while (i < text.size()) {
    char32_t c = utf8::next(text, i);
    if (c == 0 || c == 0xFFFD || bert_control(c)) continue;
    if (bert_whitespace(c)) {
      cleaned += ' ';
    } else if (chinese_chars_ && is_cjk_ideograph(c)) {
      cleaned += ' ';
      utf8::append(cleaned, c);
      cleaned += ' ';
    } else {
      utf8::append(cleaned, c);
    }
  }
  std::string_view s = cleaned;
  std::string mapped;
  if (strip_accents_) {
    utf8proc_uint8_t* out = nullptr;
    auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(cleaned.data()),
                          static_cast<utf8proc_ssize_t>(cleaned.size()), &out,
                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE));
    if (n >= 0) {  // NFD, then drop nonspacing marks
      std::string nfd(reinterpret_cast<char*>(out), static_cast<size_t>(n));
      std::free(out);
      size_t k = 0;
      while (k < nfd.size()) {
        size_t start = k;
        char32_t c = utf8::next(nfd, k);
        if (utf8proc_category(static_cast<utf8proc_int32_t>(c)) != UTF8PROC_CATEGORY_MN)
          mapped.append(nfd, start, k - start);
      }
      if (lowercase_) lowercase_utf8(mapped, scratch);
      else scratch = std::move(mapped);
      s = scratch;
    }
  } else if (lowercase_) {
    lowercase_utf8(cleaned, scratch);
    s = scratch;
  }
  // BertPreTokenizer: words split on whitespace; every punctuation mark is a word.
  std::vector<std::u32string> words;
  std::u32string word;
  i = 0;
  while (i < s.size()) {
    char32_t c = utf8::next(s, i);
    if (is_unicode_space(c) || bert_whitespace(c)) {
      if (!word.empty()) words.push_back(std::move(word)), word.clear();
    } else if (is_punctuation(c)) {
      if (!word.empty()) words.push_back(std::move(word)), word.clear();
      words.push_back(std::u32string(1, c));
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  // Greedy longest-match-first. The pieces are gathered first, then laid out in `scratch` (the
  // normalised text is no longer needed) and returned as views into it.
  std::vector<std::string> all;
  auto encode = [](const std::u32string& w, size_t a, size_t b) {
    std::string out;
    for (size_t k = a; k < b; ++k) utf8::append(out, w[k]);
    return out;
  };
  for (const auto& w : words) {
    std::vector<std::string> pieces;
    bool bad = static_cast<int64_t>(w.size()) > max_chars_;
    for (size_t start = 0; !bad && start < w.size();) {
      size_t end = w.size();
      std::string found;
      for (; start < end; --end) {
        std::string piece = (start > 0 ? "##" : "") + encode(w, start, end);
        if (vocab_.count(piece)) {
          found = std::move(piece);
          break;
        }
      }
      if (found.empty()) bad = true;
      else pieces.push_back(std::move(found));
      start = end;
    }
    if (bad) pieces = {"[UNK]"};
    for (auto& p : pieces) all.push_back(std::move(p));
  }
  size_t total = 0;
  for (const auto& p : all) total += p.size();
  scratch.clear();
  scratch.reserve(total);
  for (const auto& p : all) scratch += p;
  size_t at = 0;
  for (const auto& p : all) {
    tokens.emplace_back(scratch.data() + at, p.size());
    at += p.size();
  }
}

}  // namespace ltk
