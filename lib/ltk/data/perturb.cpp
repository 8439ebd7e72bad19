#include "ltk/data/perturb.h"

#include <opencc/opencc.h>
#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>

#include "ltk/core/error.h"
#include "ltk/core/strings.h"
#include "ltk/data/tokenizer.h"
#include "ltk/data/utf8.h"

namespace ltk {

namespace {

using Rng = std::mt19937_64;

std::u32string decode(const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) out += utf8::next(s, i);
  return out;
}

std::string encode(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) utf8::append(out, c);
  return out;
}

template <typename F>
std::string map_code_points(const std::string& text, F f) {
  std::string out;
  for (size_t i = 0; i < text.size();) utf8::append(out, f(utf8::next(text, i)));
  return out;
}

char32_t upper(char32_t c) { return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))); }
char32_t lower(char32_t c) { return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))); }
bool is_letter(char32_t c) {
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

bool has_cjk(const std::string& text) {
  for (size_t i = 0; i < text.size();)
    if (is_cjk_ideograph(utf8::next(text, i))) return true;
  return false;
}

/// A text as words (maximal runs of non-space code points) and the separators around them:
/// seps[0] word[0] seps[1] word[1] ... seps[n] (seps has one more entry than words).
struct Words {
  std::vector<std::u32string> words, seps;
  explicit Words(const std::string& text) {
    std::u32string cur, sep;
    for (char32_t c : decode(text)) {
      if (is_unicode_space(c)) {
        if (!cur.empty()) words.push_back(std::move(cur)), cur.clear();
        sep += c;
      } else {
        if (cur.empty()) seps.push_back(std::move(sep)), sep.clear();
        cur += c;
      }
    }
    if (!cur.empty()) words.push_back(std::move(cur));
    seps.push_back(std::move(sep));
  }
  std::string join() const {
    std::u32string out = seps[0];
    for (size_t i = 0; i < words.size(); ++i) out += words[i] + seps[i + 1];
    return encode(out);
  }
};

/// share * n of n items, chosen at random, ascending: floor(share * n), plus one more with the
/// probability of the fraction, so that 10% of the words of short texts is 10% on average too.
std::vector<size_t> choose(size_t n, double share, Rng& rng) {
  std::vector<size_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = i;
  for (size_t i = n; i > 1; --i) std::swap(all[i - 1], all[rng() % i]);  // Fisher-Yates, the same everywhere
  const double want = share * static_cast<double>(n);
  auto k = static_cast<size_t>(want);
  if (static_cast<double>(rng() % 1000000) / 1e6 < want - static_cast<double>(k)) ++k;
  all.resize(std::min(k, n));
  std::sort(all.begin(), all.end());
  return all;
}

/// A text as units that typos and unknown words act on: whitespace-separated words, and each CJK
/// ideograph a unit of its own (Chinese has no spaces: a sentence is not one word), with the rest
/// (spaces) kept as it is.
struct Units {
  std::vector<std::u32string> parts;
  std::vector<size_t> units;  // indices into parts
  explicit Units(const std::string& text) {
    std::u32string cur;
    bool cur_unit = false;
    auto flush = [&] {
      if (cur.empty()) return;
      // A word is a unit when it has a letter: a run of punctuation ("--", "!") is left alone.
      if (cur_unit && std::any_of(cur.begin(), cur.end(), is_letter)) units.push_back(parts.size());
      parts.push_back(std::move(cur));
      cur.clear();
    };
    for (char32_t c : decode(text)) {
      if (is_cjk_ideograph(c)) {
        flush();
        units.push_back(parts.size());
        parts.emplace_back(1, c);
        continue;
      }
      const bool unit = !is_unicode_space(c);
      if (unit != cur_unit) flush();
      cur_unit = unit;
      cur += c;
    }
    flush();
  }
  std::string join() const {
    std::u32string out;
    for (const auto& p : parts) out += p;
    return encode(out);
  }
};

std::string title_case(const std::string& text) {
  Words w(text);
  for (auto& word : w.words) {
    bool first = true;
    for (auto& c : word) {
      c = first ? upper(c) : lower(c);
      if (is_letter(c)) first = false;
    }
  }
  return w.join();
}

std::string typos(const std::string& text, Rng& rng) {
  // In 10% of the words (CJK ideographs count one each): one adjacent-character swap, deletion or
  // duplication (a one-character word: deletion or duplication).
  Units u(text);
  for (size_t k : choose(u.units.size(), 0.1, rng)) {
    auto& word = u.parts[u.units[k]];
    // A one-character word (a CJK ideograph, "I") is deleted or doubled; never the text's only word.
    const size_t op = word.size() >= 2 ? rng() % 3 : u.units.size() > 1 ? 1 + rng() % 2 : 2;
    if (op == 0) {
      const size_t p = rng() % (word.size() - 1);
      std::swap(word[p], word[p + 1]);
    } else if (op == 1) {
      word.erase(rng() % word.size(), 1);
    } else {
      const size_t p = rng() % word.size();
      word.insert(p, 1, word[p]);
    }
  }
  return u.join();
}

std::string whitespace(const std::string& text, Rng& rng) {
  // Every space between two words becomes two spaces, a tab or a newline.
  static const std::u32string kinds[] = {U"  ", U"\t", U"\n"};
  Words w(text);
  for (size_t i = 1; i + 1 < w.seps.size(); ++i) w.seps[i] = kinds[rng() % 3];
  return w.join();
}

std::string half(const std::string& text, bool first) {
  // The first or the second half of the words (the first half has the odd one); a text of one
  // word (Chinese without spaces): of its characters.
  Words w(text);
  if (w.words.size() < 2) {
    std::u32string s = decode(text);
    const size_t mid = (s.size() + 1) / 2;
    return encode(first ? s.substr(0, mid) : s.substr(mid));
  }
  const size_t mid = (w.words.size() + 1) / 2, begin = first ? 0 : mid, end = first ? mid : w.words.size();
  std::u32string out;
  for (size_t i = begin; i < end; ++i) out += (i > begin ? w.seps[i] : U"") + w.words[i];
  return encode(out);
}

std::string unknown_words(const std::string& text, Rng& rng, const PerturbContext& context) {
  // 10% of the words (CJK ideographs count one each) become made-up lowercase strings of 5-8
  // letters that the vocabulary lacks.
  Units u(text);
  for (size_t k : choose(u.units.size(), 0.1, rng)) {
    std::u32string made;
    for (int attempt = 0; attempt < 50; ++attempt) {
      made.clear();
      const size_t len = 5 + rng() % 4;
      for (size_t i = 0; i < len; ++i) made += static_cast<char32_t>(U'a' + rng() % 26);
      if (!context.vocab || !context.vocab->contains(encode(made))) break;
    }
    u.parts[u.units[k]] = made;
  }
  return u.join();
}

std::string punctuation(const std::string& text, bool doubled) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    char32_t c = utf8::next(text, i);
    if (!is_punctuation(c)) utf8::append(out, c);
    else if (doubled) utf8::append(out, c), utf8::append(out, c);
  }
  return out;
}

std::string full_width(const std::string& text) {
  if (!has_cjk(text)) return text;
  return map_code_points(text, [](char32_t c) {
    return c == U' ' ? U'\u3000' : (c >= 0x21 && c <= 0x7E) ? c + 0xFEE0 : c;
  });
}

std::string half_width(const std::string& text) {
  if (!has_cjk(text)) return text;
  return map_code_points(text, [](char32_t c) {
    return c == U'\u3000' ? U' ' : (c >= 0xFF01 && c <= 0xFF5E) ? c - 0xFEE0 : c;
  });
}

}  // namespace

std::string simplified_to_traditional(const std::string& text) {
  struct Converter {
    opencc_t handle = reinterpret_cast<opencc_t>(-1);
    std::mutex mutex;
    Converter() {
      for (const char* config : {"s2t.json", "/usr/share/opencc/s2t.json"}) {
        handle = opencc_open(config);
        if (handle != reinterpret_cast<opencc_t>(-1)) break;
      }
    }
    ~Converter() {
      if (handle != reinterpret_cast<opencc_t>(-1)) opencc_close(handle);
    }
  };
  static Converter converter;
  if (converter.handle == reinterpret_cast<opencc_t>(-1))
    throw DataError(std::string("OpenCC cannot open s2t.json (") + opencc_error() +
                    "); install Debian's libopencc1.1 (scripts/setup.sh does)");
  std::lock_guard<std::mutex> lock(converter.mutex);
  char* out = opencc_convert_utf8(converter.handle, text.data(), text.size());
  if (!out) throw DataError(std::string("OpenCC failed: ") + opencc_error());
  std::string result(out);
  opencc_convert_utf8_free(out);
  return result;
}

const std::vector<Perturbation>& perturbations() {
  using C = const PerturbContext&;
  static const std::vector<Perturbation> all = {
      {"upper", "case", "every letter upper case", [](const std::string& t, Rng&, C) { return map_code_points(t, upper); }},
      {"lower", "case", "every letter lower case", [](const std::string& t, Rng&, C) { return map_code_points(t, lower); }},
      {"title", "case", "each word's first letter upper case, the rest lower",
       [](const std::string& t, Rng&, C) { return title_case(t); }},
      {"no_punctuation", "punctuation", "every punctuation mark removed",
       [](const std::string& t, Rng&, C) { return punctuation(t, false); }},
      {"double_punctuation", "punctuation", "every punctuation mark doubled",
       [](const std::string& t, Rng&, C) { return punctuation(t, true); }},
      {"exclamation", "punctuation", "\"!!!\" appended", [](const std::string& t, Rng&, C) { return t + "!!!"; }},
      {"typos", "typos", "in 10% of the words (of the characters, in Chinese), one adjacent-character swap, deletion or duplication",
       [](const std::string& t, Rng& r, C) { return typos(t, r); }},
      {"whitespace", "whitespace", "each space between words becomes two spaces, a tab or a newline",
       [](const std::string& t, Rng& r, C) { return whitespace(t, r); }},
      {"first_half", "truncation", "only the first half of the words",
       [](const std::string& t, Rng&, C) { return half(t, true); }},
      {"second_half", "truncation", "only the second half of the words",
       [](const std::string& t, Rng&, C) { return half(t, false); }},
      {"unknown_words", "unknown", "10% of the words (of the characters, in Chinese) replaced by strings the vocabulary has never seen",
       [](const std::string& t, Rng& r, C c) { return unknown_words(t, r, c); }},
      {"full_width", "chinese", "ASCII to full-width forms (texts with CJK characters)",
       [](const std::string& t, Rng&, C) { return full_width(t); }},
      {"half_width", "chinese", "full-width forms to ASCII (texts with CJK characters)",
       [](const std::string& t, Rng&, C) { return half_width(t); }},
      {"traditional", "chinese", "simplified to traditional characters through OpenCC (texts with CJK characters)",
       [](const std::string& t, Rng&, C) { return has_cjk(t) ? simplified_to_traditional(t) : t; }},
  };
  return all;
}

std::vector<const Perturbation*> select_perturbations(const std::string& spec) {
  std::vector<const Perturbation*> out;
  std::vector<std::string> names;
  for (const auto& p : perturbations()) {
    names.push_back(p.name);
    if (std::find(names.begin(), names.end(), p.group) == names.end()) names.push_back(p.group);
  }
  const std::string list = spec.empty() ? "all" : spec;  // split() returns views into it
  for (auto part : split(list, ',')) {
    const std::string want(trim(part));
    bool found = false;
    for (const auto& p : perturbations())
      if (want == "all" || p.name == want || p.group == want) {
        found = true;
        if (std::find(out.begin(), out.end(), &p) == out.end()) out.push_back(&p);
      }
    if (!found)
      throw UsageError("--stress: unknown perturbation '" + want + "'" + did_you_mean(want, names) +
                       "; known: all, " + join(names, ", "));
  }
  std::sort(out.begin(), out.end());  // registry order
  return out;
}

std::mt19937_64 perturbation_rng(uint64_t seed, const std::string& name, int64_t sample) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a of the name, mixed with the seed and the sample
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(h),
                    static_cast<uint32_t>(h >> 32), static_cast<uint32_t>(sample), static_cast<uint32_t>(sample >> 32)};
  return std::mt19937_64(seq);
}

}  // namespace ltk
