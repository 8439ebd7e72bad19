// WordPiece vocabulary training: BPE merges over BERT's pre-tokenised words, "##" marking every
// piece that continues a word (what Hugging Face's WordPieceTrainer does).
#include <algorithm>
#include <map>
#include <queue>
#include <tuple>
#include <unordered_map>

#include "ltk/core/error.h"
#include "ltk/data/utf8.h"
#include "ltk/data/wordpiece.h"

namespace ltk {

namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

// BPE merges over the words of a corpus: the symbols of each distinct word, the count of each
// adjacent pair of symbols, and a max-heap of pairs with lazy invalidation.
class Merges {
 public:
  // Distinct words and their counts, in first-appearance order (deterministic), split into
  // symbols: the characters, word-initial or "##" continuation.
  Merges(const std::vector<std::string>& texts, const WordPieceTrainOptions& o) {
    std::unordered_map<std::u32string, int64_t> word_index;
    std::vector<std::u32string> word_text;
    std::string scratch;
    std::vector<std::u32string> words;
    for (const auto& t : texts) {
      bert_pre_tokenize(t, o.lowercase, o.strip_accents, o.chinese_chars, scratch, words);
      for (auto& w : words) {
        auto [it, fresh] = word_index.emplace(w, static_cast<int64_t>(word_text.size()));
        if (fresh) {
          word_text.push_back(w);
          word_count_.push_back(0);
        }
        ++word_count_[static_cast<size_t>(it->second)];
      }
    }
    split_.resize(word_text.size());
    for (size_t w = 0; w < word_text.size(); ++w) {
      for (size_t k = 0; k < word_text[w].size(); ++k) {
        std::string s = k ? "##" : "";
        utf8::append(s, word_text[w][k]);
        int32_t id = intern(s);
        symbol_count_[static_cast<size_t>(id)] += word_count_[w];
        split_[w].push_back(id);
      }
    }
  }

  // The alphabet, most frequent first; when it alone overflows the size, the rarest stay out
  // (their words become [UNK]) and take no part in merges.
  void add_alphabet(std::vector<std::string>& vocab, size_t budget) {
    std::vector<int32_t> alphabet(symbol_.size());
    for (size_t i = 0; i < alphabet.size(); ++i) alphabet[i] = static_cast<int32_t>(i);
    std::stable_sort(alphabet.begin(), alphabet.end(), [&](int32_t a, int32_t b) {
      return symbol_count_[static_cast<size_t>(a)] > symbol_count_[static_cast<size_t>(b)];
    });
    std::vector<char> kept(symbol_.size(), 0);
    for (int32_t a : alphabet) {
      if (vocab.size() >= budget) break;
      vocab.push_back(symbol_[static_cast<size_t>(a)]);
      kept[static_cast<size_t>(a)] = 1;
    }
    for (size_t w = 0; w < split_.size(); ++w)
      for (int32_t s : split_[w])
        if (!kept[static_cast<size_t>(s)]) word_count_[w] = 0;  // a word with a dropped character: no pairs
  }

  // Merges the most frequent pair (the pair seen first among equals) until the vocabulary is full
  // or no pair is as frequent as `min_frequency`.
  void merge(std::vector<std::string>& vocab, size_t budget, int64_t min_frequency) {
    for (size_t w = 0; w < split_.size(); ++w)
      if (word_count_[w] > 0) add_pairs(w, +1);
    for (const auto& [key, n] : pair_count_) heap_.emplace(n, -first_seen_[key], key);
    stamp_.assign(split_.size(), -1);
    int32_t merge_no = 0;
    while (vocab.size() < budget && !heap_.empty()) {
      auto [n, order, key] = heap_.top();
      heap_.pop();
      if (pair_count_[key] != n) continue;  // stale
      if (n < min_frequency) break;
      const int32_t a = static_cast<int32_t>(key >> 32), b = static_cast<int32_t>(key & 0xffffffffu);
      std::string merged = symbol_[static_cast<size_t>(a)] + symbol_[static_cast<size_t>(b)].substr(2);
      const bool fresh = !symbol_id_.count(merged);
      const int32_t m = intern(merged);
      if (fresh) vocab.push_back(merged);
      apply(key, m, ++merge_no);
    }
  }

 private:
  int32_t intern(const std::string& s) {
    auto [it, fresh] = symbol_id_.emplace(s, static_cast<int32_t>(symbol_.size()));
    if (fresh) {
      symbol_.push_back(s);
      symbol_count_.push_back(0);
    }
    return it->second;
  }

  void add_pairs(size_t w, int64_t sign) {
    const auto& s = split_[w];
    for (size_t k = 0; k + 1 < s.size(); ++k) {
      uint64_t key = pair_key(s[k], s[k + 1]);
      pair_count_[key] += sign * word_count_[w];
      if (sign > 0) {
        where_[key].push_back(static_cast<int32_t>(w));
        first_seen_.emplace(key, seen_++);
      }
    }
  }

  // Replaces the pair `key` by symbol `m` in every word that holds it, and puts every pair count
  // that changed into the heap again (older entries go stale).
  void apply(uint64_t key, int32_t m, int32_t merge_no) {
    const int32_t a = static_cast<int32_t>(key >> 32), b = static_cast<int32_t>(key & 0xffffffffu);
    std::vector<uint64_t> touched;
    for (int32_t w : std::vector<int32_t>(where_[key])) {
      if (stamp_[static_cast<size_t>(w)] == merge_no) continue;
      stamp_[static_cast<size_t>(w)] = merge_no;
      auto& s = split_[static_cast<size_t>(w)];
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
    pair_count_[key] = 0;
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t t : touched)
      if (pair_count_[t] > 0 && t != key) heap_.emplace(pair_count_[t], -first_seen_[t], t);
  }

  std::vector<int64_t> word_count_;
  std::vector<std::vector<int32_t>> split_;  // each word's symbols
  std::vector<std::string> symbol_;
  std::unordered_map<std::string, int32_t> symbol_id_;
  std::vector<int64_t> symbol_count_;
  std::unordered_map<uint64_t, int64_t> pair_count_;
  std::unordered_map<uint64_t, std::vector<int32_t>> where_;  // the words holding each pair
  std::unordered_map<uint64_t, int64_t> first_seen_;          // tie-break: the pair seen first wins
  int64_t seen_ = 0;
  using Entry = std::tuple<int64_t, int64_t, uint64_t>;  // count, -first_seen, key
  std::priority_queue<Entry> heap_;
  std::vector<int32_t> stamp_;  // the last merge that looked at each word
};

}  // namespace

std::vector<std::string> train_wordpiece(const std::vector<std::string>& texts, const WordPieceTrainOptions& o) {
  const std::vector<std::string> specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  if (o.size <= static_cast<int64_t>(specials.size()))
    throw ConfigError("a WordPiece vocabulary needs more than its 5 special tokens (size " + std::to_string(o.size) +
                      ")");
  Merges merges(texts, o);
  std::vector<std::string> vocab = specials;
  const auto budget = static_cast<size_t>(o.size);
  merges.add_alphabet(vocab, budget);
  merges.merge(vocab, budget, o.min_frequency);
  return vocab;
}

}  // namespace ltk
