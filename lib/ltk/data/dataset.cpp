#include "ltk/data/dataset.h"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <random>

#include "ltk/core/error.h"
#include "ltk/core/strings.h"

namespace ltk {

Batch Batch::to(const torch::Device& device) const {
  if (ids.device() == device) return *this;
  Batch b;
  b.ids = ids.to(device);
  b.lengths = lengths.to(device);
  b.mask = mask.to(device);
  if (labels.defined()) b.labels = labels.to(device);
  b.indices = indices;  // bookkeeping stays on the CPU
  return b;
}

void truncate_ids(std::vector<int32_t>& ids, int64_t max_len, const std::string& policy) {
  if (max_len <= 0 || static_cast<int64_t>(ids.size()) <= max_len) return;
  auto n = static_cast<size_t>(max_len);
  if (policy == "head") {
    ids.resize(n);
  } else if (policy == "tail") {
    ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(n));
  } else if (policy == "head+tail") {
    size_t head = (n + 1) / 2, tail = n - head;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(head), ids.end() - static_cast<std::ptrdiff_t>(tail));
  } else {
    throw ConfigError("config key 'data.truncation': unknown policy '" + policy + "'");
  }
}

size_t TextDataset::memory_bytes() const {
  return ids_.capacity() * sizeof(int32_t) + offsets_.capacity() * sizeof(int64_t) +
         class_ids_.capacity() * sizeof(int32_t) + class_offsets_.capacity() * sizeof(int64_t) +
         values_.capacity() * sizeof(float) + full_lengths_.capacity() * sizeof(int32_t) +
         lines_.capacity() * sizeof(int64_t);
}

void TextDataset::add(const std::vector<int32_t>& ids, int64_t full_length, const std::vector<int64_t>& class_ids,
                      float value, int64_t line) {
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  offsets_.push_back(static_cast<int64_t>(ids_.size()));
  for (int64_t c : class_ids) class_ids_.push_back(static_cast<int32_t>(c));
  class_offsets_.push_back(static_cast<int64_t>(class_ids_.size()));
  values_.push_back(value);
  full_lengths_.push_back(static_cast<int32_t>(full_length));
  lines_.push_back(line);
}

torch::Tensor TextDataset::targets(const std::vector<int64_t>& indices) const {
  const auto B = static_cast<int64_t>(indices.size());
  switch (kind_) {
    case TargetKind::none: return {};
    case TargetKind::class_id: {
      auto t = torch::empty({B}, torch::kLong);
      for (int64_t b = 0; b < B; ++b) t[b] = label(indices[b]);
      return t;
    }
    case TargetKind::binary: {
      auto t = torch::empty({B}, torch::kFloat);
      for (int64_t b = 0; b < B; ++b) t[b] = label(indices[b]) == positive_ ? 1.0f : 0.0f;
      return t;
    }
    case TargetKind::multi_hot: {
      auto t = torch::zeros({B, num_classes_}, torch::kFloat);
      float* p = t.data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) {
        int64_t i = indices[b];
        for (int64_t k = class_offsets_[i]; k < class_offsets_[i + 1]; ++k) p[b * num_classes_ + class_ids_[k]] = 1.0f;
      }
      return t;
    }
    case TargetKind::value: {
      auto t = torch::empty({B}, torch::kFloat);
      float* p = t.data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) p[b] = values_[indices[b]];
      return t;
    }
  }
  return {};
}

TokenCounter count_tokens(const std::vector<Example>& examples, const Tokenizer& tokenizer) {
  TokenCounter counter;
  std::string scratch;
  std::vector<std::string_view> tokens;
  for (const auto& ex : examples) {
    tokenizer.tokenize(ex.text, scratch, tokens);
    for (auto t : tokens) counter.add(t);
  }
  return counter;
}

namespace {

/// The one encoding loop: `token_id(view)` numericalises a token (a vocabulary lookup, or the
/// token counter's running id when the vocabulary is built in the same pass).
template <typename TokenId>
TextDataset encode_with(const std::vector<Example>& examples, const std::string& source, const Tokenizer& tokenizer,
                        TokenId&& token_id, const TargetEncoder* targets, const EncodeOptions& options) {
  TextDataset data;
  TargetKind kind = targets ? targets->kind : TargetKind::none;
  const LabelMap* labels = targets ? targets->labels : nullptr;
  if (kind != TargetKind::none && kind != TargetKind::value && !labels)
    throw Error("encoding a dataset: a class task needs a label map");
  data.set_source(source, kind, labels ? labels->size() : 0, targets ? targets->positive : 1);
  auto class_id = [&](std::string_view name, const Example& ex) {
    int64_t id = labels->find(std::string(name));
    if (id < 0) {
      std::vector<std::string> known = labels->names();
      std::string listed = known.size() <= 20 ? quoted_list(known) : fmt::format("{} labels", known.size());
      throw DataError(fmt::format("{}:{}: label '{}' is not one of the model's labels ({}){}; "
                                  "a model can only be evaluated on the labels it was trained on",
                                  source, ex.line, name, listed, did_you_mean(std::string(name), known)));
    }
    return id;
  };
  std::string scratch;
  std::vector<std::string_view> tokens;
  std::vector<int32_t> ids;
  std::vector<int64_t> classes;
  for (const auto& ex : examples) {
    classes.clear();
    float value = 0;
    if (kind == TargetKind::class_id || kind == TargetKind::binary) {
      classes.push_back(class_id(ex.label, ex));
    } else if (kind == TargetKind::multi_hot) {
      for (auto part : split(ex.label, targets->separator.empty() ? ',' : targets->separator[0])) {
        part = trim(part);
        if (part.empty()) continue;  // "a,,b" and a trailing separator are tolerated
        int64_t id = class_id(part, ex);
        if (std::find(classes.begin(), classes.end(), id) == classes.end()) classes.push_back(id);
      }
    } else if (kind == TargetKind::value) {
      value = parse_target_value(ex.label, source, ex.line);
    }
    tokenizer.tokenize(ex.text, scratch, tokens);
    ids.clear();
    for (auto t : tokens) ids.push_back(token_id(t));
    int64_t full = static_cast<int64_t>(ids.size());
    truncate_ids(ids, options.max_len, options.truncation);
    data.add(ids, full, classes, value, ex.line);
  }
  data.shrink_to_fit();
  return data;
}

}  // namespace

TextDataset encode_examples(const std::vector<Example>& examples, const std::string& source,
                            const Tokenizer& tokenizer, const Vocabulary& vocab, const TargetEncoder* targets,
                            const EncodeOptions& options) {
  return encode_with(examples, source, tokenizer, [&](std::string_view t) { return vocab.id(t); }, targets, options);
}

std::pair<Vocabulary, TextDataset> build_vocab_and_encode(const std::vector<Example>& examples,
                                                          const std::string& source, const Tokenizer& tokenizer,
                                                          int64_t min_freq, int64_t max_size,
                                                          const TargetEncoder* targets, const EncodeOptions& options) {
  // One tokenisation pass: every token is counted and stored under the counter's id; once the
  // vocabulary is known those ids are mapped to its ids (one lookup per distinct token).
  TokenCounter counter;
  TextDataset data = encode_with(examples, source, tokenizer, [&](std::string_view t) { return counter.add(t); },
                                 targets, options);
  Vocabulary vocab = Vocabulary::build(counter, min_freq, max_size);
  std::vector<int32_t> table(counter.size());
  for (size_t i = 0; i < table.size(); ++i) table[i] = vocab.id(counter.token(static_cast<int32_t>(i)));
  data.map_ids(table);
  return {std::move(vocab), std::move(data)};
}

void TextDataset::map_ids(const std::vector<int32_t>& table) {
  for (auto& id : ids_) id = table[static_cast<size_t>(id)];
}

void TextDataset::shrink_to_fit() {
  ids_.shrink_to_fit();
  offsets_.shrink_to_fit();
  class_ids_.shrink_to_fit();
  class_offsets_.shrink_to_fit();
  values_.shrink_to_fit();
  full_lengths_.shrink_to_fit();
  lines_.shrink_to_fit();
}

float parse_target_value(const std::string& label, const std::string& source, int64_t line) {
  try {
    size_t used = 0;
    double v = std::stod(label, &used);
    if (used == label.size() && std::isfinite(v)) return static_cast<float>(v);
  } catch (const std::exception&) {
  }
  throw DataError(fmt::format("{}:{}: regression target '{}' is not a finite number", source, line, label));
}

Batch PadCollate::operator()(const TextDataset& data, const std::vector<int64_t>& indices) const {
  const auto B = static_cast<int64_t>(indices.size());
  int64_t T = fixed_len_;
  if (T == 0) {
    for (int64_t i : indices) T = std::max(T, data.length(i));
    T = std::max<int64_t>(T, 1);  // an all-empty batch still has one (padding) column
  }
  auto ids = torch::full({B, T}, pad_id_, torch::kLong);
  auto lengths = torch::empty({B}, torch::kLong);
  auto idx = torch::empty({B}, torch::kLong);
  int64_t* ip = ids.data_ptr<int64_t>();
  int64_t* lp = lengths.data_ptr<int64_t>();
  int64_t* xp = idx.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    int64_t i = indices[b];
    if (i < 0 || i >= data.size())
      throw DataError(fmt::format("sample index {} out of range [0, {})", i, data.size()));
    int64_t n = std::min(data.length(i), T);
    const int32_t* src = data.tokens(i);
    for (int64_t t = 0; t < n; ++t) ip[b * T + t] = src[t];
    lp[b] = n;
    xp[b] = i;
  }
  Batch batch;
  batch.ids = ids;
  batch.lengths = lengths;
  batch.mask = torch::arange(T, torch::kLong).unsqueeze(0) < lengths.unsqueeze(1);
  batch.indices = idx;
  if (data.has_labels()) batch.labels = data.targets(indices);
  return batch;
}

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
