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
    if (line.empty()) continue;
    whole_.insert(line);
    if (line.size() >= 2 && line[0] == '#' && line[1] == '#') continued_.insert(line.substr(2));
  }
  if (whole_.find("[UNK]") < 0)
    throw DataError(vocab_path + ": a WordPiece vocabulary needs an [UNK] token (one token per line, BERT style)");
}

void WordPieceTokenizer::tokenize(std::string_view text, std::string& scratch,
                                  std::vector<std::string_view>& tokens) const {
  tokens.clear();
  scratch.clear();
  thread_local std::vector<std::pair<size_t, size_t>> spans;
  spans.clear();
  // Special tokens written in the text ("the [MASK] is ...") stay whole, as Hugging Face's
  // tokenizers keep them; the text between them is tokenised as usual.
  size_t done = 0;
  for (size_t open = text.find('['); open != std::string_view::npos; open = text.find('[', open + 1)) {
    size_t close = text.find(']', open);
    if (close == std::string_view::npos) break;
    std::string_view candidate = text.substr(open, close + 1 - open);
    if (!(candidate == "[MASK]" || candidate == "[CLS]" || candidate == "[SEP]" || candidate == "[PAD]" ||
          candidate == "[UNK]") ||
        whole_.find(candidate) < 0)
      continue;
    pieces(text.substr(done, open - done), scratch, spans);
    spans.emplace_back(scratch.size(), candidate.size());
    scratch += candidate;
    done = close + 1;
    open = close;
  }
  pieces(text.substr(done), scratch, spans);
  for (auto [at, length] : spans) tokens.emplace_back(scratch.data() + at, length);
}

namespace {

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

}  // namespace

void bert_normalize(std::string_view text, bool lowercase, bool strip_accents, bool chinese_chars, std::string& out) {
  // BertNormalizer: clean text, isolate CJK ideographs, strip accents, lowercase.
  thread_local std::string cleaned, mapped;
  cleaned.clear();
  size_t i = 0;
  while (i < text.size()) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {  // ASCII: controls (Cc) dropped, the four BERT whitespace characters made ' '
      ++i;
      if (b == ' ' || b == '\t' || b == '\n' || b == '\r')
        cleaned += ' ';
      else if (b >= 0x20 && b != 0x7F)
        cleaned += static_cast<char>(b);
      continue;
    }
    char32_t c = utf8::next(text, i);
    if (c == 0xFFFD || bert_control(c)) continue;
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
  if (strip_accents) {
    if (is_ascii(cleaned)) {  // NFD leaves ASCII as it is, and it has no nonspacing mark
      if (lowercase)
        lowercase_utf8(cleaned, out);
      else
        out = cleaned;
      return;
    }
    utf8proc_uint8_t* nfd = nullptr;
    auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(cleaned.data()),
                          static_cast<utf8proc_ssize_t>(cleaned.size()), &nfd,
                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE));
    if (n >= 0) {  // NFD, then drop nonspacing marks
      const std::string_view d(reinterpret_cast<const char*>(nfd), static_cast<size_t>(n));
      mapped.clear();
      size_t k = 0;
      while (k < d.size()) {
        size_t start = k;
        char32_t c = utf8::next(d, k);
        if (utf8proc_category(static_cast<utf8proc_int32_t>(c)) != UTF8PROC_CATEGORY_MN)
          mapped.append(d, start, k - start);
      }
      std::free(nfd);
      if (lowercase)
        lowercase_utf8(mapped, out);
      else
        out = mapped;
      return;
    }
    // (not UTF-8: left as cleaned)
  } else if (lowercase) {
    lowercase_utf8(cleaned, out);
    return;
  }
  out = cleaned;
}

void bert_words(std::string_view s, std::vector<std::pair<size_t, size_t>>& words) {
  // BertPreTokenizer: words split on whitespace; every punctuation mark is a word.
  words.clear();
  size_t i = 0, start = std::string_view::npos;
  auto end_word = [&](size_t at) {
    if (start != std::string_view::npos) words.emplace_back(start, at);
    start = std::string_view::npos;
  };
  while (i < s.size()) {
    const size_t here = i;
    char32_t c = utf8::next(s, i);
    if (is_unicode_space(c) || bert_whitespace(c)) {
      end_word(here);
    } else if (is_punctuation(c)) {
      end_word(here);
      words.emplace_back(here, i);
    } else if (start == std::string_view::npos) {
      start = here;
    }
  }
  end_word(s.size());
}

void bert_pre_tokenize(std::string_view text, bool lowercase, bool strip_accents, bool chinese_chars,
                       std::string& scratch, std::vector<std::u32string>& words) {
  bert_normalize(text, lowercase, strip_accents, chinese_chars, scratch);
  std::vector<std::pair<size_t, size_t>> spans;
  bert_words(scratch, spans);
  words.clear();
  for (auto [a, b] : spans) {
    std::u32string w;
    const std::string_view bytes(scratch.data() + a, b - a);
    for (size_t i = 0; i < bytes.size();) w.push_back(utf8::next(bytes, i));
    words.push_back(std::move(w));
  }
}

void WordPieceTokenizer::pieces(std::string_view text, std::string& out,
                                std::vector<std::pair<size_t, size_t>>& spans) const {
  thread_local std::string normal;
  thread_local std::vector<std::pair<size_t, size_t>> words;
  thread_local std::vector<size_t> bounds;  // the word's code points' byte starts, then its end
  bert_normalize(text, lowercase_, strip_accents_, chinese_chars_, normal);
  bert_words(normal, words);
  // Greedy longest-match-first; a word it cannot cover is [UNK].
  for (auto [a, b] : words) {
    const std::string_view w(normal.data() + a, b - a);
    bounds.clear();
    for (size_t i = 0; i < w.size(); ++i)
      if ((static_cast<unsigned char>(w[i]) & 0xC0) != 0x80) bounds.push_back(i);
    bounds.push_back(w.size());
    const size_t n = bounds.size() - 1, out_at = out.size(), spans_at = spans.size();
    bool bad = static_cast<int64_t>(n) > max_chars_;
    for (size_t start = 0; !bad && start < n;) {
      size_t end = n;
      for (; start < end; --end) {
        const std::string_view piece = w.substr(bounds[start], bounds[end] - bounds[start]);
        if ((start > 0 ? continued_ : whole_).find(piece) < 0) continue;
        spans.emplace_back(out.size(), piece.size() + (start > 0 ? 2 : 0));
        if (start > 0) out += "##";
        out += piece;
        break;
      }
      bad = start == end;
      start = end;
    }
    if (bad) {
      out.resize(out_at);
      spans.resize(spans_at);
      spans.emplace_back(out.size(), 5);
      out += "[UNK]";
    }
  }
}

}  // namespace ltk
