// Which samples form each batch: shuffled, class-balanced or length-bucketed, always seeded.
#include "ltk/data/dataset.h"

#include <algorithm>
#include <map>
#include <random>

#include "ltk/core/error.h"

namespace ltk {

BatchSampler::BatchSampler(int64_t size, int64_t batch_size, bool shuffle, bool drop_last, uint64_t seed)
    : size_(size), batch_size_(batch_size), shuffle_(shuffle), drop_last_(drop_last), seed_(seed) {
  if (batch_size <= 0) throw ConfigError("batch size must be >= 1");
}

int64_t BatchSampler::batches_per_epoch() const {
  if (!lengths_.empty()) return static_cast<int64_t>(epoch(1).size());  // max_tokens: counted, epoch 1
  return drop_last_ ? size_ / batch_size_ : (size_ + batch_size_ - 1) / batch_size_;
}

void BatchSampler::set_balanced(std::vector<int64_t> classes) {
  if (static_cast<int64_t>(classes.size()) != size_) throw Error("balanced sampler: one class per sample needed");
  std::map<int64_t, std::vector<int64_t>> groups;
  for (int64_t i = 0; i < size_; ++i) groups[classes[i]].push_back(i);
  by_class_.clear();
  for (auto& [c, members] : groups) by_class_.push_back(std::move(members));
}

std::vector<std::vector<int64_t>> BatchSampler::epoch(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(size_));
  for (int64_t i = 0; i < size_; ++i) order[i] = i;
  if (!by_class_.empty()) {
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 7);
    for (int64_t i = 0; i < size_; ++i) {
      const auto& members = by_class_[rng() % by_class_.size()];
      order[i] = members[rng() % members.size()];
    }
  } else if (shuffle_) {
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1);
    for (int64_t i = size_ - 1; i > 0; --i) {  // Fisher-Yates, portable across standard libraries
      auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
      std::swap(order[i], order[j]);
    }
  }
  std::vector<std::vector<int64_t>> batches;
  if (lengths_.empty()) {
    for (int64_t start = 0; start < size_; start += batch_size_) {
      int64_t end = std::min(size_, start + batch_size_);
      if (drop_last_ && end - start < batch_size_) break;
      batches.emplace_back(order.begin() + start, order.begin() + end);
    }
    return batches;
  }
  // Length-aware batching: sort each pool by length, cut by batch_size and max_tokens.
  const int64_t pool = pool_batches_ > 0 ? pool_batches_ * batch_size_ : size_;
  for (int64_t start = 0; start < size_; start += pool) {
    auto first = order.begin() + start, last = order.begin() + std::min(size_, start + pool);
    if (pool_batches_ > 0) std::stable_sort(first, last, [&](int64_t a, int64_t b) { return lengths_[a] < lengths_[b]; });
    std::vector<int64_t> current;
    int64_t longest = 0;
    for (auto it = first; it != last; ++it) {
      int64_t len = std::max<int64_t>(lengths_[*it], 1);
      bool full = static_cast<int64_t>(current.size()) >= batch_size_ ||
                  (max_tokens_ > 0 && !current.empty() &&
                   std::max(longest, len) * static_cast<int64_t>(current.size() + 1) > max_tokens_);
      if (full) {
        batches.push_back(std::move(current));
        current.clear();
        longest = 0;
      }
      current.push_back(*it);
      longest = std::max(longest, len);
    }
    if (!current.empty() && !(drop_last_ && static_cast<int64_t>(current.size()) < batch_size_ && max_tokens_ == 0))
      batches.push_back(std::move(current));
  }
  if (shuffle_ && pool_batches_ > 0) {  // the batch order, seeded
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 3);
    for (size_t i = batches.size(); i > 1; --i) std::swap(batches[i - 1], batches[rng() % i]);
  }
  return batches;
}

void BatchSampler::set_length_batching(std::vector<int64_t> lengths, int64_t pool_batches, int64_t max_tokens) {
  if (static_cast<int64_t>(lengths.size()) != size_) throw Error("length batching: one length per sample needed");
  lengths_ = std::move(lengths);
  pool_batches_ = pool_batches;
  max_tokens_ = max_tokens;
}

}  // namespace ltk
