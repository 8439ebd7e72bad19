// WordPiece vocabulary training: BPE merges over BERT's pre-tokenised words, "##" marking every
// piece that continues a word (what Hugging Face's WordPieceTrainer does).
#include <algorithm>
#include <map>
#include <queue>
#include <unordered_map>

#include "ltk/core/error.h"
#include "ltk/data/utf8.h"
#include "ltk/data/wordpiece.h"

namespace ltk {

namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

}  // namespace

std::vector<std::string> train_wordpiece(const std::vector<std::string>& texts, const WordPieceTrainOptions& o) {
  const std::vector<std::string> specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  if (o.size <= static_cast<int64_t>(specials.size()))
    throw ConfigError("a WordPiece vocabulary needs more than its 5 special tokens (size " + std::to_string(o.size) + ")");
  // Distinct words and their counts, in first-appearance order (deterministic).
  std::unordered_map<std::u32string, int64_t> word_index;
  std::vector<std::u32string> word_text;
  std::vector<int64_t> word_count;
  std::string scratch;
  std::vector<std::u32string> words;
  for (const auto& t : texts) {
    bert_pre_tokenize(t, o.lowercase, o.strip_accents, o.chinese_chars, scratch, words);
    for (auto& w : words) {
      auto [it, fresh] = word_index.emplace(w, static_cast<int64_t>(word_text.size()));
      if (fresh) {
        word_text.push_back(w);
        word_count.push_back(0);
      }
      ++word_count[static_cast<size_t>(it->second)];
    }
  }
  // Symbols: the characters, word-initial or "##" continuation.
  std::vector<std::string> symbol;
  std::unordered_map<std::string, int32_t> symbol_id;
  std::vector<int64_t> symbol_count;
  auto intern = [&](const std::string& s) {
    auto [it, fresh] = symbol_id.emplace(s, static_cast<int32_t>(symbol.size()));
    if (fresh) {
      symbol.push_back(s);
      symbol_count.push_back(0);
    }
    return it->second;
  };
  std::vector<std::vector<int32_t>> split(word_text.size());
  for (size_t w = 0; w < word_text.size(); ++w) {
    for (size_t k = 0; k < word_text[w].size(); ++k) {
      std::string s = k ? "##" : "";
      utf8::append(s, word_text[w][k]);
      int32_t id = intern(s);
      symbol_count[static_cast<size_t>(id)] += word_count[w];
      split[w].push_back(id);
    }
  }
  std::vector<std::string> vocab = specials;
  const auto budget = static_cast<size_t>(o.size);
  // The alphabet, most frequent first; when it alone overflows the size, the rarest stay out
  // (their words become [UNK]) and take no part in merges.
  std::vector<int32_t> alphabet(symbol.size());
  for (size_t i = 0; i < alphabet.size(); ++i) alphabet[i] = static_cast<int32_t>(i);
  std::stable_sort(alphabet.begin(), alphabet.end(),
                   [&](int32_t a, int32_t b) { return symbol_count[static_cast<size_t>(a)] > symbol_count[static_cast<size_t>(b)]; });
  std::vector<char> kept(symbol.size(), 0);
  for (int32_t a : alphabet) {
    if (vocab.size() >= budget) break;
    vocab.push_back(symbol[static_cast<size_t>(a)]);
    kept[static_cast<size_t>(a)] = 1;
  }
  for (size_t w = 0; w < split.size(); ++w)
    for (int32_t s : split[w])
      if (!kept[static_cast<size_t>(s)]) word_count[w] = 0;  // a word with a dropped character: no pairs
  // Pair counts, the words holding each pair, and a max-heap with lazy invalidation.
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  std::unordered_map<uint64_t, int64_t> first_seen;  // tie-break: the pair seen first wins
  int64_t seen = 0;
  auto add_pairs = [&](size_t w, int64_t sign) {
    const auto& s = split[w];
    for (size_t k = 0; k + 1 < s.size(); ++k) {
      uint64_t key = pair_key(s[k], s[k + 1]);
      pair_count[key] += sign * word_count[w];
      if (sign > 0) {
        where[key].push_back(static_cast<int32_t>(w));
        first_seen.emplace(key, seen++);
      }
    }
  };
  for (size_t w = 0; w < split.size(); ++w)
    if (word_count[w] > 0) add_pairs(w, +1);
  using Entry = std::tuple<int64_t, int64_t, uint64_t>;  // count, -first_seen, key
  std::priority_queue<Entry> heap;
  for (const auto& [key, n] : pair_count) heap.emplace(n, -first_seen[key], key);
  std::vector<int32_t> stamp(split.size(), -1);
  int32_t merge_no = 0;
  while (vocab.size() < budget && !heap.empty()) {
    auto [n, order, key] = heap.top();
    heap.pop();
    if (pair_count[key] != n) continue;  // stale
    if (n < o.min_frequency) break;
    const int32_t a = static_cast<int32_t>(key >> 32), b = static_cast<int32_t>(key & 0xffffffffu);
    std::string merged = symbol[static_cast<size_t>(a)] + symbol[static_cast<size_t>(b)].substr(2);
    const bool fresh = !symbol_id.count(merged);
    const int32_t m = intern(merged);
    if (fresh) vocab.push_back(merged);
    ++merge_no;
    std::vector<uint64_t> touched;
    for (int32_t w : std::vector<int32_t>(where[key])) {
      if (stamp[static_cast<size_t>(w)] == merge_no) continue;
      stamp[static_cast<size_t>(w)] = merge_no;
      auto& s = split[static_cast<size_t>(w)];
      bool has = false;
      for (size_t k = 0; k + 1 < s.size(); ++k) has |= s[k] == a && s[k + 1] == b;
      if (!has) continue;
      for (size_t k = 0; k + 1 < s.size(); ++k) touched.push_back(pair_key(s[k], s[k + 1]));  // counts that fall
      add_pairs(static_cast<size_t>(w), -1);
      std::vector<int32_t> out;
      for (size_t k = 0; k < s.size(); ++k) {
        if (k + 1 < s.size() && s[k] == a && s[k + 1] == b) {
          out.push_back(m);
          ++k;
        } else {
          out.push_back(s[k]);
        }
      }
      s.swap(out);
      add_pairs(static_cast<size_t>(w), +1);
      for (size_t k = 0; k + 1 < s.size(); ++k) touched.push_back(pair_key(s[k], s[k + 1]));
    }
    pair_count[key] = 0;
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t t : touched)  // every changed count enters the heap again (older entries go stale)
      if (pair_count[t] > 0 && t != key) heap.emplace(pair_count[t], -first_seen[t], t);
  }
  return vocab;
}

}  // namespace ltk
