#include "ltk/data/ngrams.h"

#include <algorithm>
#include <cmath>

#include "ltk/data/utf8.h"

namespace ltk {

namespace {

/// MurmurHash3's x86_32 variant (Austin Appleby's, public domain), as scikit-learn's
/// murmurhash3_32 computes it: the hash of `key`'s bytes with `seed`, as a signed 32-bit value.
int32_t murmurhash3_32(std::string_view key, uint32_t seed) {
  constexpr uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
  const auto* data = reinterpret_cast<const unsigned char*>(key.data());
  const size_t n = key.size(), blocks = n / 4;
  uint32_t h = seed;
  auto rotl = [](uint32_t x, int r) { return (x << r) | (x >> (32 - r)); };
  for (size_t i = 0; i < blocks; ++i) {
    uint32_t k = static_cast<uint32_t>(data[4 * i]) | static_cast<uint32_t>(data[4 * i + 1]) << 8 |
                 static_cast<uint32_t>(data[4 * i + 2]) << 16 | static_cast<uint32_t>(data[4 * i + 3]) << 24;
    k = rotl(k * c1, 15) * c2;
    h = rotl(h ^ k, 13) * 5 + 0xe6546b64;
  }
  uint32_t k = 0;
  const unsigned char* tail = data + 4 * blocks;
  switch (n & 3) {
    case 3:
      k ^= static_cast<uint32_t>(tail[2]) << 16;
      [[fallthrough]];
    case 2:
      k ^= static_cast<uint32_t>(tail[1]) << 8;
      [[fallthrough]];
    case 1:
      k ^= tail[0];
      h ^= rotl(k * c1, 15) * c2;
  }
  h ^= static_cast<uint32_t>(n);
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return static_cast<int32_t>(h);
}

}  // namespace

uint32_t hash_bucket(std::string_view term, int64_t buckets) {
  const int32_t h = murmurhash3_32(term, 0);
  const uint32_t magnitude = h < 0 ? 0u - static_cast<uint32_t>(h) : static_cast<uint32_t>(h);  // |INT_MIN| = 2^31
  return static_cast<uint32_t>(magnitude % static_cast<uint64_t>(buckets));
}

NgramTokenizer::NgramTokenizer(std::unique_ptr<Tokenizer> words, Normalizer normalizer, NgramRanges ranges)
    : Tokenizer(normalizer), words_(std::move(words)), ranges_(ranges) {}

void NgramTokenizer::tokenize(std::string_view text, std::string& scratch,
                              std::vector<std::string_view>& tokens) const {
  // The terms are written one after another into `scratch`; the views are taken once it is
  // complete (it may reallocate while it grows).
  thread_local std::string word_scratch, norm_scratch, padded;
  thread_local std::vector<std::string_view> words;
  thread_local std::vector<std::pair<size_t, size_t>> spans;
  thread_local std::vector<size_t> starts;
  scratch.clear();
  spans.clear();
  auto begin_term = [&] { spans.emplace_back(scratch.size(), 0); };
  auto end_term = [&] { spans.back().second = scratch.size() - spans.back().first; };
  if (ranges_.words()) {
    words_->tokenize(text, word_scratch, words);
    const auto n_words = static_cast<int64_t>(words.size());
    for (int64_t n = ranges_.word_min; n <= ranges_.word_max && n <= n_words; ++n)
      for (int64_t i = 0; i + n <= n_words; ++i) {
        begin_term();
        for (int64_t k = 0; k < n; ++k) {
          if (k) scratch += ' ';
          scratch += words[static_cast<size_t>(i + k)];
        }
        end_term();
      }
  }
  if (ranges_.chars()) {
    // scikit-learn's char_wb: each whitespace-separated word as " word ", its n-grams of
    // char_min..char_max code points; a word no longer than n is one n-gram, and the longer n
    // are skipped for it.
    std::string_view s = norm_.apply(text, norm_scratch);
    size_t i = 0;
    while (i < s.size()) {
      size_t start = i, end = i;
      while (end < s.size()) {  // the next word: [start, end)
        size_t at = end;
        if (is_unicode_space(utf8::next(s, at))) break;
        end = at;
      }
      if (end == start) {  // a space: skip it
        utf8::next(s, i);
        continue;
      }
      padded.assign(1, ' ');
      padded.append(s.substr(start, end - start));
      padded += ' ';
      i = end;
      starts.clear();
      for (size_t at = 0; at < padded.size();) {
        starts.push_back(at);
        utf8::next(padded, at);
      }
      const auto len = static_cast<int64_t>(starts.size());
      starts.push_back(padded.size());
      for (int64_t n = ranges_.char_min; n <= ranges_.char_max; ++n) {
        const int64_t last = std::max<int64_t>(len - n, 0);  // the last offset
        for (int64_t off = 0; off <= last; ++off) {
          const size_t a = starts[static_cast<size_t>(off)], b = starts[static_cast<size_t>(std::min(off + n, len))];
          begin_term();
          scratch += kCharTermMark;
          scratch.append(padded, a, b - a);
          end_term();
        }
        if (last == 0) break;  // the whole word was one n-gram: longer ones would repeat it
      }
    }
  }
  if (ranges_.buckets > 0) {  // each term by its bucket's name, into the scratch the views point to
    thread_local std::string named;
    named.clear();
    for (auto& [at, len] : spans) {
      std::string_view term(scratch.data() + at, len);
      const bool chars = is_char_term(term);
      const size_t start = named.size();
      if (chars) named += kCharTermMark;
      named += '#';
      named += std::to_string(hash_bucket(chars ? term.substr(1) : term, ranges_.buckets));
      at = start;
      len = named.size() - start;
    }
    scratch.swap(named);
  }
  tokens.clear();
  for (const auto& [at, len] : spans) tokens.emplace_back(scratch.data() + at, len);
}

}  // namespace ltk
