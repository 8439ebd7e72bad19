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

namespace {

/// The terms being written one after another into a scratch string: each term's offset and length
/// there (views are taken once the scratch is complete: it may reallocate while it grows).
using Spans = std::vector<std::pair<size_t, size_t>>;

void views_of(const std::string& scratch, const Spans& spans, std::vector<std::string_view>& tokens) {
  tokens.clear();
  for (const auto& [at, len] : spans) tokens.emplace_back(scratch.data() + at, len);
}

}  // namespace

std::pair<size_t, size_t> NgramTokenizer::next_char_word(std::string_view s, size_t& i) {
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
    i = end;
    return {start, end};
  }
  return {s.size(), s.size()};
}

void NgramTokenizer::add_word_terms(std::string_view text, std::string& scratch, Spans& spans) const {
  thread_local std::string word_scratch;
  thread_local std::vector<std::string_view> words;
  words_->tokenize(text, word_scratch, words);
  const auto n_words = static_cast<int64_t>(words.size());
  for (int64_t n = ranges_.word_min; n <= ranges_.word_max && n <= n_words; ++n)
    for (int64_t i = 0; i + n <= n_words; ++i) {
      spans.emplace_back(scratch.size(), 0);
      for (int64_t k = 0; k < n; ++k) {
        if (k) scratch += ' ';
        scratch += words[static_cast<size_t>(i + k)];
      }
      spans.back().second = scratch.size() - spans.back().first;
    }
}

void NgramTokenizer::add_char_terms(std::string_view word, std::string& scratch, Spans& spans) const {
  // scikit-learn's char_wb: the word as " word ", its n-grams of char_min..char_max code points; a
  // word no longer than n is one n-gram, and the longer n are skipped for it.
  thread_local std::string padded;
  thread_local std::vector<size_t> starts;
  padded.assign(1, ' ');
  padded.append(word);
  padded += ' ';
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
      spans.emplace_back(scratch.size(), b - a + 1);
      scratch += kCharTermMark;
      scratch.append(padded, a, b - a);
    }
    if (last == 0) break;  // the whole word was one n-gram: longer ones would repeat it
  }
}

void NgramTokenizer::name_buckets(std::string& scratch, Spans& spans) const {
  if (ranges_.buckets <= 0) return;
  // each term by its bucket's name, into the scratch the views point to
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

template <typename Add>
void NgramTokenizer::terms(std::string& scratch, std::vector<std::string_view>& tokens, Add&& add) const {
  thread_local Spans spans;
  scratch.clear();
  spans.clear();
  add(spans);
  name_buckets(scratch, spans);
  views_of(scratch, spans, tokens);
}

void NgramTokenizer::tokenize(std::string_view text, std::string& scratch,
                              std::vector<std::string_view>& tokens) const {
  terms(scratch, tokens, [&](Spans& spans) {
    if (ranges_.words()) add_word_terms(text, scratch, spans);
    if (!ranges_.chars()) return;
    thread_local std::string norm_scratch;
    std::string_view s = norm_.apply(text, norm_scratch);
    for (size_t i = 0;;) {
      auto [start, end] = next_char_word(s, i);
      if (start == end) break;
      add_char_terms(s.substr(start, end - start), scratch, spans);
    }
  });
}

void NgramTokenizer::word_terms(std::string_view text, std::string& scratch,
                                std::vector<std::string_view>& tokens) const {
  terms(scratch, tokens, [&](Spans& spans) {
    if (ranges_.words()) add_word_terms(text, scratch, spans);
  });
}

void NgramTokenizer::char_terms(std::string_view word, std::string& scratch,
                                std::vector<std::string_view>& tokens) const {
  terms(scratch, tokens, [&](Spans& spans) {
    if (ranges_.chars()) add_char_terms(word, scratch, spans);
  });
}

namespace {

/// The ids of `terms` that are features (the unknown ones are not), appended to `out`.
void append_feature_ids(const Vocabulary& vocab, const std::vector<std::string_view>& terms,
                        std::vector<int32_t>& out) {
  const auto at = static_cast<std::ptrdiff_t>(out.size());
  vocab.append_ids(terms, out);
  out.erase(std::remove_if(out.begin() + at, out.end(), [](int32_t id) { return id < Vocabulary::kFirstWordId; }),
            out.end());
}

/// Capacity for `more` elements beyond v's size, growing geometrically (reserve() alone allocates
/// the exact size: called for each word kept, it would copy the whole vector each time).
template <typename T>
void make_room(std::vector<T>& v, size_t more) {
  if (v.size() + more > v.capacity()) v.reserve(std::max(v.size() + more, 2 * v.capacity()));
}

}  // namespace

NgramIds::NgramIds(const NgramTokenizer& tokenizer, const Vocabulary& vocab, size_t max_words, size_t max_ids)
    : tokenizer_(tokenizer), vocab_(vocab), max_words_(std::max<size_t>(max_words, 1)), max_ids_(max_ids) {
  clear();
}

void NgramIds::clear() {
  words_ = TokenIndex();
  words_room_ = 0;
  ids_.clear();
  ends_.assign(1, 0);
}

void NgramIds::ids(std::string_view text, std::vector<int32_t>& out) {
  out.clear();
  if (tokenizer_.ranges().words()) {
    tokenizer_.word_terms(text, scratch_, terms_);
    append_feature_ids(vocab_, terms_, out);
  }
  if (!tokenizer_.ranges().chars()) return;
  const std::string_view s = tokenizer_.normalise(text, norm_scratch_);
  for (size_t i = 0;;) {
    auto [start, end] = NgramTokenizer::next_char_word(s, i);
    if (start == end) break;
    const std::string_view word = s.substr(start, end - start);
    ++lookups_;
    int32_t w = word.size() <= kMaxWordBytes ? words_.find(word) : -1;
    if (w >= 0) {
      out.insert(out.end(), ids_.begin() + static_cast<std::ptrdiff_t>(ends_[static_cast<size_t>(w)]),
                 ids_.begin() + static_cast<std::ptrdiff_t>(ends_[static_cast<size_t>(w) + 1]));
      continue;
    }
    ++misses_;
    tokenizer_.char_terms(word, scratch_, terms_);
    found_.clear();
    append_feature_ids(vocab_, terms_, found_);
    out.insert(out.end(), found_.begin(), found_.end());
    if (word.size() > kMaxWordBytes) continue;  // not kept: the kept words' bytes stay bounded
    if (words_.size() >= max_words_ || ids_.size() + found_.size() > max_ids_) clear();
    // Kept all or nothing: ids_ and ends_ grow first (a throw there leaves them as they were), then
    // the word is numbered.
    make_room(ids_, found_.size());
    make_room(ends_, 1);
    if (words_.size() + 1 > words_room_) {  // geometric: reserve(size + 1) would copy its arrays each word
      const size_t room = std::min(max_words_, std::max(words_.size() + 1, std::max<size_t>(256, 2 * words_room_)));
      words_.reserve(room);  // (counted once reserved: a throw leaves the old room)
      words_room_ = room;
    }
    ids_.insert(ids_.end(), found_.begin(), found_.end());
    try {
      words_.insert(word);
    } catch (...) {
      ids_.resize(ends_.back());
      throw;
    }
    ends_.push_back(ids_.size());
  }
}

}  // namespace ltk
