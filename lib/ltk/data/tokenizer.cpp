#include "ltk/data/tokenizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "ltk/core/error.h"
#include "ltk/data/jieba.h"
#include "ltk/data/sentencepiece.h"
#include "ltk/data/wordpiece.h"
#include "ltk/data/utf8.h"

namespace ltk {

std::vector<std::string> Tokenizer::tokenize(std::string_view text) const {
  std::string scratch;
  std::vector<std::string_view> views;
  tokenize(text, scratch, views);
  return std::vector<std::string>(views.begin(), views.end());
}

bool is_unicode_space(char32_t cp) {
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return true;
  if (cp < 0x80) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool is_control(char32_t cp) {
  if (cp < 0x20 || cp == 0x7F) return !is_unicode_space(cp);
  if (cp < 0x80) return false;
  if (cp == 0xFFFD) return false;
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF;
}

bool is_punctuation(char32_t cp) {
  // ASCII symbols count as punctuation, as in BERT's basic tokenizer.
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126))
    return true;
  if (cp < 0x80) return false;
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

bool is_cjk_ideograph(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

void lowercase_utf8(std::string_view text, std::string& out) {
  out.clear();
  out.reserve(text.size());
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    size_t j = i;
    while (j < n && static_cast<unsigned char>(text[j]) < 0x80) ++j;
    if (j > i) {  // an ASCII run, mapped in bulk
      size_t o = out.size();
      out.resize(o + (j - i));
      char* d = out.data() + o;
      for (size_t k = i; k < j; ++k) {
        char c = text[k];
        *d++ = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
      }
      i = j;
      if (i >= n) break;
    }
    size_t start = i;
    char32_t cp = utf8::next(text, i);
    auto lower = static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
    if (lower == cp) {
      out.append(text.data() + start, i - start);  // keep the original bytes
    } else {
      utf8::append(out, lower);
    }
  }
}

std::string_view Normalizer::apply(std::string_view text, std::string& scratch) const {
  std::string_view s = text;
  std::string mapped;
  if (nfkc || strip_accents) {
    int options = UTF8PROC_STABLE | UTF8PROC_COMPOSE | (nfkc ? UTF8PROC_COMPAT : 0) | (strip_accents ? UTF8PROC_STRIPMARK : 0);
    utf8proc_uint8_t* out = nullptr;
    auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                          static_cast<utf8proc_ssize_t>(text.size()), &out, static_cast<utf8proc_option_t>(options));
    if (n >= 0) {
      mapped.assign(reinterpret_cast<char*>(out), static_cast<size_t>(n));
      std::free(out);
      s = mapped;
    }  // invalid UTF-8 (n < 0) is left as it is; the readers reject it earlier
  }
  if (lowercase) {
    lowercase_utf8(s, scratch);
    return scratch;
  }
  if (!mapped.empty() || s.data() != text.data()) {
    scratch = std::move(mapped);
    return scratch;
  }
  return text;
}

void WhitespaceTokenizer::tokenize(std::string_view text, std::string& scratch,
                                   std::vector<std::string_view>& tokens) const {
  tokens.clear();
  std::string_view s = norm_.apply(text, scratch);
  size_t i = 0, start = std::string_view::npos;
  while (i < s.size()) {
    size_t here = i;
    char32_t cp = utf8::next(s, i);
    if (is_unicode_space(cp)) {
      if (start != std::string_view::npos) tokens.push_back(s.substr(start, here - start));
      start = std::string_view::npos;
    } else if (start == std::string_view::npos) {
      start = here;
    }
  }
  if (start != std::string_view::npos) tokens.push_back(s.substr(start));
}

namespace {

/// What BasicTokenizer does with each ASCII byte: part of a word, a separator (space, control)
/// or a punctuation token of its own.
struct AsciiClass {
  enum Kind : unsigned char { word, separator, punctuation };
  Kind of[128];
  bool word_byte[256] = {};  ///< of[b] == word, for any byte (false from 0x80)
  AsciiClass() {
    for (int b = 0; b < 128; ++b) {
      bool alnum = (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z');
      of[b] = alnum ? word : (is_unicode_space(b) || is_control(b)) ? separator : punctuation;
      word_byte[b] = of[b] == word;
    }
  }
};
const AsciiClass kAsciiClass;

/// BasicTokenizer::tokenize of a text of ASCII bytes with lowercasing (and no other
/// normalisation), in one pass: each byte lowercased into `scratch` as it is classified. False,
/// with nothing kept, at the first byte that is not ASCII (the text then takes the general path).
bool tokenize_ascii_lowercased(std::string_view text, std::string& scratch, std::vector<std::string_view>& tokens) {
  tokens.clear();
  const size_t n = text.size();
  if (scratch.size() < n) scratch.resize(n);
  char* out = scratch.data();
  size_t start = std::string_view::npos;
  auto flush = [&](size_t end) {
    if (start != std::string_view::npos) tokens.emplace_back(out + start, end - start);
    start = std::string_view::npos;
  };
  for (size_t i = 0; i < n;) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b >= 0x80) return false;
    out[i] = static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b);
    switch (kAsciiClass.of[b]) {
      case AsciiClass::word: {
        if (start == std::string_view::npos) start = i;
        for (++i; i < n && kAsciiClass.word_byte[static_cast<unsigned char>(text[i])]; ++i) {  // the rest of the run
          const auto c = static_cast<unsigned char>(text[i]);
          out[i] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        continue;
      }
      case AsciiClass::separator:
        flush(i);
        break;
      case AsciiClass::punctuation:
        flush(i);
        tokens.emplace_back(out + i, 1);
        break;
    }
    ++i;
  }
  flush(n);
  return true;
}

}  // namespace

void BasicTokenizer::tokenize(std::string_view text, std::string& scratch,
                              std::vector<std::string_view>& tokens) const {
  if (norm_.lowercase && !norm_.nfkc && !norm_.strip_accents && tokenize_ascii_lowercased(text, scratch, tokens))
    return;  // (most English texts)
  tokens.clear();
  std::string_view s = norm_.apply(text, scratch);
  size_t i = 0, start = std::string_view::npos;
  auto flush = [&](size_t end) {
    if (start != std::string_view::npos) tokens.push_back(s.substr(start, end - start));
    start = std::string_view::npos;
  };
  const size_t n = s.size();
  while (i < n) {
    size_t here = i;
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {  // ASCII fast path
      ++i;
      switch (kAsciiClass.of[b]) {
        case AsciiClass::word:
          if (start == std::string_view::npos) start = here;
          while (i < n && kAsciiClass.word_byte[static_cast<unsigned char>(s[i])]) ++i;  // the rest of the run
          break;
        case AsciiClass::separator: flush(here); break;
        case AsciiClass::punctuation:
          flush(here);
          tokens.push_back(s.substr(here, 1));
          break;
      }
      continue;
    }
    char32_t cp = utf8::next(s, i);
    if (is_unicode_space(cp) || is_control(cp)) {
      flush(here);
    } else if (is_punctuation(cp) || is_cjk_ideograph(cp)) {
      flush(here);
      tokens.push_back(s.substr(here, i - here));
    } else if (start == std::string_view::npos) {
      start = here;
    }
  }
  flush(s.size());
}

void CharTokenizer::tokenize(std::string_view text, std::string& scratch,
                             std::vector<std::string_view>& tokens) const {
  tokens.clear();
  std::string_view s = norm_.apply(text, scratch);
  size_t i = 0;
  while (i < s.size()) {
    size_t here = i;
    char32_t cp = utf8::next(s, i);
    if (!is_unicode_space(cp) && !is_control(cp)) tokens.push_back(s.substr(here, i - here));
  }
}

std::string tokenizer_resource(const std::string& type) {
  if (type == "sentencepiece") return "spm.model";
  if (type == "jieba") return "jieba_dict.txt";
  if (type == "wordpiece") return "wordpiece_vocab.txt";
  return "";
}

std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerConfig& config) {
  Normalizer n{config.lowercase, config.nfkc, config.strip_accents};
  if (config.type == "basic") return std::make_unique<BasicTokenizer>(n);
  if (config.type == "whitespace") return std::make_unique<WhitespaceTokenizer>(n);
  if (config.type == "char") return std::make_unique<CharTokenizer>(n);
  if (config.type == "wordpiece") return std::make_unique<WordPieceTokenizer>(config.dict, config.lowercase, config.strip_accents,
                                                                        config.tokenize_chinese_chars);
  if (config.type == "jieba") return std::make_unique<JiebaTokenizer>(config.dict.empty() ? kDefaultJiebaDict : config.dict, n);
  if (config.type == "sentencepiece") return std::make_unique<SentencePieceTokenizer>(config.dict, n);
  throw ConfigError("config key 'data.tokenizer.type': unknown tokenizer '" + config.type + "'");
}

}  // namespace ltk
