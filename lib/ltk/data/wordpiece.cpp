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
  // Special tokens written in the text ("the [MASK] is ...") stay whole, as Hugging Face's
  // tokenizers keep them; the text between them is tokenised as usual.
  std::vector<std::string> all;
  std::string lowered;
  size_t done = 0;
  for (size_t open = text.find('['); open != std::string_view::npos; open = text.find('[', open + 1)) {
    size_t close = text.find(']', open);
    if (close == std::string_view::npos) break;
    std::string_view candidate = text.substr(open, close + 1 - open);
    if (!(candidate == "[MASK]" || candidate == "[CLS]" || candidate == "[SEP]" || candidate == "[PAD]" ||
          candidate == "[UNK]") ||
        !vocab_.count(std::string(candidate)))
      continue;
    pieces(text.substr(done, open - done), lowered, all);
    all.emplace_back(candidate);
    done = close + 1;
    open = close;
  }
  pieces(text.substr(done), lowered, all);
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

void bert_pre_tokenize(std::string_view text, bool lowercase, bool strip_accents, bool chinese_chars,
                       std::string& scratch, std::vector<std::u32string>& words) {
  // BertNormalizer: clean text, isolate CJK ideographs, strip accents, lowercase.
  std::string cleaned;
  size_t i = 0;
  while (i < text.size()) {
    char32_t c = utf8::next(text, i);
    if (c == 0 || c == 0xFFFD || bert_control(c)) continue;
    if (bert_whitespace(c)) {
      cleaned += ' ';
    } else if (chinese_chars && is_cjk_ideograph(c)) {
      cleaned += ' ';
      utf8::append(cleaned, c);
      cleaned += ' ';
    } else {
      utf8::append(cleaned, c);
    }
  }
  std::string_view s = cleaned;
  std::string mapped;
  if (strip_accents) {
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
      if (lowercase) lowercase_utf8(mapped, scratch);
      else scratch = std::move(mapped);
      s = scratch;
    }
  } else if (lowercase) {
    lowercase_utf8(cleaned, scratch);
    s = scratch;
  }
  // BertPreTokenizer: words split on whitespace; every punctuation mark is a word.
  words.clear();
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
}

void WordPieceTokenizer::pieces(std::string_view text, std::string& scratch, std::vector<std::string>& all) const {
  std::vector<std::u32string> words;
  bert_pre_tokenize(text, lowercase_, strip_accents_, chinese_chars_, scratch, words);
  // Greedy longest-match-first.
  auto encode = [](const std::u32string& w, size_t a, size_t b) {
    std::string out;
    for (size_t k = a; k < b; ++k) utf8::append(out, w[k]);
    return out;
  };
  for (const auto& w : words) {
    std::vector<std::string> word_pieces;
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
      else word_pieces.push_back(std::move(found));
      start = end;
    }
    if (bad) word_pieces = {"[UNK]"};
    for (auto& p : word_pieces) all.push_back(std::move(p));
  }
}

}  // namespace ltk
