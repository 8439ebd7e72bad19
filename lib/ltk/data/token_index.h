// A string -> dense id table for tokens: open addressing with linear probing over one byte
// arena, so interning a token costs one hash of its bytes and (almost always) one comparison,
// with no allocation per token. The vocabulary and the token counter are built on it; the
// data path spends most of its time here (bench/data_bench.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace ltk {

class TokenIndex {
 public:
  TokenIndex() { slots_.assign(kMinSlots, Slot{}); }

  /// The id of `token`, or -1.
  int32_t find(std::string_view token) const {
    const uint64_t head = head_of(token);
    return probe(hash(head, token), head, token);
  }

  /// find() of each of the `n` tokens into `out`. A table larger than the cache costs a miss or two
  /// a token (its slot, then its head); here each token's slot is fetched kAhead tokens before its
  /// probe and its head kAhead / 2 before, so that the misses of several tokens overlap.
  void find_all(const std::string_view* tokens, size_t n, int32_t* out) const {
    each_ahead</*heads=*/true>(tokens, n,
                               [&](size_t i, uint64_t h, uint64_t head) { out[i] = probe(h, head, tokens[i]); });
  }

  /// The id of `token`, added (as the next id) when it is new.
  int32_t insert(std::string_view token) {
    const uint64_t head = head_of(token);
    return insert(hash(head, token), head, token);
  }

  /// insert() of each of the `n` tokens, in order, into `out`; the slots fetched ahead as find_all does.
  void insert_all(const std::string_view* tokens, size_t n, int32_t* out) {
    each_ahead</*heads=*/false>(tokens, n,
                                [&](size_t i, uint64_t h, uint64_t head) { out[i] = insert(h, head, tokens[i]); });
  }

  /// Room for `n` tokens without growing the table (a vocabulary loaded from its file).
  void reserve(size_t n) {
    while (n * 2 > slots_.size()) grow();
    heads_.reserve(n);
    starts_.reserve(n + 1);
  }

  std::string_view token_at(int32_t id) const {
    return std::string_view(arena_.data() + starts_[id], starts_[id + 1] - starts_[id]);
  }
  size_t size() const { return starts_.size() - 1; }

 private:
  // A slot is 8 bytes (half the table fits the cache that a 16-byte slot would need): 32 bits
  // of the hash and the id. Each id keeps its token's first eight bytes, so that a token of up
  // to eight bytes (most words) is compared without touching the arena; ids are given in
  // first-seen order, so the frequent tokens' heads share a few cache lines.
  struct Slot {
    uint32_t tag = 0;
    int32_t id = -1;  // -1: empty
  };
  static constexpr size_t kMinSlots = 64;
  static constexpr size_t kAhead = 8;
  /// The heads and hashes of the next kAhead tokens of find_all / insert_all.
  struct Ahead {
    uint64_t head[kAhead], hash[kAhead];
  };
  void stage(Ahead& ahead, const std::string_view* tokens, size_t i) const {
    const size_t r = i % kAhead;
    ahead.head[r] = head_of(tokens[i]);
    ahead.hash[r] = hash(ahead.head[r], tokens[i]);
    __builtin_prefetch(&slots_[ahead.hash[r] & mask()]);
  }

  /// visit(i, hash, head) for each of the `n` tokens in order, token i + kAhead's slot fetched
  /// first (and, with `kHeads`, the head of token i + kAhead / 2's entry).
  template <bool kHeads, typename Visit>
  void each_ahead(const std::string_view* tokens, size_t n, Visit&& visit) const {
    Ahead ahead;
    for (size_t i = 0; i < std::min(n, kAhead); ++i) stage(ahead, tokens, i);
    for (size_t i = 0; i < n; ++i) {
      const size_t r = i % kAhead;
      const uint64_t head = ahead.head[r], h = ahead.hash[r];
      if (i + kAhead < n) stage(ahead, tokens, i + kAhead);
      if (kHeads && i + kAhead / 2 < n) {
        const Slot& next = slots_[ahead.hash[(i + kAhead / 2) % kAhead] & mask()];
        if (next.id >= 0) __builtin_prefetch(&heads_[static_cast<size_t>(next.id)]);
      }
      visit(i, h, head);
    }
  }

  int32_t probe(uint64_t h, uint64_t head, std::string_view token) const {
    const auto tag = static_cast<uint32_t>(h >> 32);
    for (size_t s = h & mask();; s = (s + 1) & mask()) {
      const Slot& slot = slots_[s];
      if (slot.id < 0) return -1;
      if (slot.tag == tag && matches(slot.id, head, token)) return slot.id;
    }
  }

  int32_t insert(uint64_t h, uint64_t head, std::string_view token) {
    const auto tag = static_cast<uint32_t>(h >> 32);
    size_t s = h & mask();
    for (;; s = (s + 1) & mask()) {
      const Slot& slot = slots_[s];
      if (slot.id < 0) break;
      if (slot.tag == tag && matches(slot.id, head, token)) return slot.id;
    }
    auto id = static_cast<int32_t>(size());
    arena_.append(token.data(), token.size());
    starts_.push_back(arena_.size());
    heads_.push_back(head);
    slots_[s] = Slot{tag, id};
    if (size() * 2 > slots_.size()) grow();
    return id;
  }

  /// The first eight bytes, zero-padded, read without a byte loop (whose stores would stall
  /// the 8-byte load that follows).
  static uint64_t head_of(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    if (n >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      return w;
    }
    if (n >= 4) {  // two overlapping 4-byte reads
      uint32_t lo, hi;
      std::memcpy(&lo, p, 4);
      std::memcpy(&hi, p + n - 4, 4);
      return static_cast<uint64_t>(lo) | (static_cast<uint64_t>(hi) << (8 * (n - 4)));
    }
    if (n == 0) return 0;
    return static_cast<uint64_t>(p[0]) | (static_cast<uint64_t>(p[n >> 1]) << (8 * (n >> 1))) |
           (static_cast<uint64_t>(p[n - 1]) << (8 * (n - 1)));
  }
  bool matches(int32_t id, uint64_t head, std::string_view token) const {
    if (heads_[id] != head) return false;
    if (token.size() <= 8) return starts_[id + 1] - starts_[id] == token.size();
    return token_at(id) == token;
  }
  static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
  /// FxHash-style over the head and the rest eight bytes at a time, then a finalising mix
  /// (the slot is taken from the low bits).
  static uint64_t hash(uint64_t head, std::string_view s) {
    uint64_t h = (rotl(s.size(), 5) ^ head) * 0x517cc1b727220a95ULL;
    if (s.size() > 8) {
      const char* p = s.data() + 8;
      size_t n = s.size() - 8;
      for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        h = (rotl(h, 5) ^ w) * 0x517cc1b727220a95ULL;
      }
      if (n > 0) {
        uint64_t w = 0;
        std::memcpy(&w, p, n);
        h = (rotl(h, 5) ^ w) * 0x517cc1b727220a95ULL;
      }
    }
    return h ^ (h >> 29) ^ (h >> 43);
  }
  size_t mask() const { return slots_.size() - 1; }

  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (const Slot& slot : old) {
      if (slot.id < 0) continue;
      size_t s = hash(heads_[slot.id], token_at(slot.id)) & mask();
      while (slots_[s].id >= 0) s = (s + 1) & mask();
      slots_[s] = slot;
    }
  }

  std::vector<Slot> slots_;
  std::string arena_;
  std::vector<size_t> starts_{0};
  std::vector<uint64_t> heads_;
};

}  // namespace ltk
