// Which samples form each batch: shuffled, class-balanced or length-bucketed, always seeded.
#include "ltk/data/dataset.h"

#include <algorithm>
#include <limits>
#include <map>
#include <random>

#include "ltk/core/error.h"

namespace ltk {

BatchSampler::BatchSampler(int64_t size, int64_t batch_size, bool shuffle, bool drop_last, uint64_t seed)
    : size_(size), batch_size_(batch_size), shuffle_(shuffle), drop_last_(drop_last), seed_(seed) {
  if (batch_size <= 0) throw ConfigError("batch size must be >= 1");
  if (size < 0 || size > int64_t{std::numeric_limits<uint32_t>::max()})
    throw DataError(std::to_string(size) + " training samples: at most 4294967295 are supported; split the corpus");
}

int64_t BatchSampler::batches_per_epoch() const {
  if (!lengths_.empty()) return epoch(1).size();  // max_tokens: counted, epoch 1
  return drop_last_ ? size_ / batch_size_ : (size_ + batch_size_ - 1) / batch_size_;
}

void BatchSampler::set_balanced(const std::vector<int32_t>& classes) {
  if (static_cast<int64_t>(classes.size()) != size_) throw Error("balanced sampler: one class per sample needed");
  std::map<int32_t, std::vector<uint32_t>> groups;
  for (int64_t i = 0; i < size_; ++i) groups[classes[i]].push_back(static_cast<uint32_t>(i));
  by_class_.clear();
  for (auto& [c, members] : groups) by_class_.push_back(std::move(members));
}

EpochBatches BatchSampler::epoch(int64_t epoch) const {
  EpochBatches out;
  auto& order = out.order_;
  order.resize(static_cast<size_t>(size_));
  for (int64_t i = 0; i < size_; ++i) order[i] = static_cast<uint32_t>(i);
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
  if (!lengths_.empty()) {
    cut_by_length(out, epoch);
    return out;
  }
  for (int64_t start = 0; start < size_; start += batch_size_) {
    const int64_t end = std::min(size_, start + batch_size_);
    if (drop_last_ && end - start < batch_size_) break;
    out.starts_.push_back(end);
  }
  order.resize(static_cast<size_t>(out.starts_.back()));  // drop_last: the samples of no batch
  order.shrink_to_fit();
  return out;
}

// Length-aware batching: sorts each pool of the epoch's order by length, cuts it by batch_size
// and max_tokens (the samples of a pool's dropped last batch leave the order), then shuffles the
// batches, seeded.
void BatchSampler::cut_by_length(EpochBatches& out, int64_t epoch) const {
  auto& order = out.order_;
  auto& starts = out.starts_;
  const int64_t pool = pool_batches_ > 0 ? pool_batches_ * batch_size_ : size_;
  int64_t kept = 0;  // order[0, kept) holds the batches cut so far
  for (int64_t start = 0; start < size_; start += pool) {
    auto first = order.begin() + start, last = order.begin() + std::min(size_, start + pool);
    if (pool_batches_ > 0)
      std::stable_sort(first, last, [&](uint32_t a, uint32_t b) { return lengths_[a] < lengths_[b]; });
    int64_t current = 0, longest = 0;
    for (auto it = first; it != last; ++it) {
      const int64_t len = std::max<int64_t>(lengths_[*it], 1);
      const bool full = current >= batch_size_ ||
                        (max_tokens_ > 0 && current > 0 && std::max(longest, len) * (current + 1) > max_tokens_);
      if (full) {
        starts.push_back(kept);
        current = 0;
        longest = 0;
      }
      order[kept++] = *it;  // kept <= the position read: a forward copy
      ++current;
      longest = std::max(longest, len);
    }
    if (current > 0 && !(drop_last_ && current < batch_size_ && max_tokens_ == 0))
      starts.push_back(kept);
    else
      kept -= current;
  }
  order.resize(static_cast<size_t>(kept));
  if (shuffle_ && pool_batches_ > 0) {  // the batch order, seeded
    const auto nb = static_cast<size_t>(out.size());
    std::vector<int64_t> which(nb);
    for (size_t b = 0; b < nb; ++b) which[b] = static_cast<int64_t>(b);
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 3);
    for (size_t i = nb; i > 1; --i) std::swap(which[i - 1], which[rng() % i]);
    std::vector<uint32_t> shuffled;
    shuffled.reserve(order.size());
    std::vector<int64_t> new_starts{0};
    new_starts.reserve(nb + 1);
    for (int64_t b : which) {
      shuffled.insert(shuffled.end(), order.begin() + starts[b], order.begin() + starts[b + 1]);
      new_starts.push_back(static_cast<int64_t>(shuffled.size()));
    }
    order = std::move(shuffled);
    starts = std::move(new_starts);
  }
  order.shrink_to_fit();
}

void BatchSampler::set_length_batching(std::vector<int32_t> lengths, int64_t pool_batches, int64_t max_tokens) {
  if (static_cast<int64_t>(lengths.size()) != size_) throw Error("length batching: one length per sample needed");
  lengths_ = std::move(lengths);
  pool_batches_ = pool_batches;
  max_tokens_ = max_tokens;
}

}  // namespace ltk
