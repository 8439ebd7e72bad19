#include "ltk/data/dataset.h"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "ltk/core/error.h"

namespace ltk {

size_t TextDataset::memory_bytes() const {
  if (store_) return 0;
  return ids_.capacity() * sizeof(int32_t) + offsets_.capacity() * sizeof(int64_t) +
         class_ids_.capacity() * sizeof(int32_t) + class_offsets_.capacity() * sizeof(int64_t) +
         values_.capacity() * sizeof(float) + full_lengths_.capacity() * sizeof(int32_t) +
         lines_.capacity() * sizeof(int64_t) + second_starts_.capacity() * sizeof(int32_t) + flags_.capacity() +
         text_starts_.capacity() * sizeof(int64_t);
}

int64_t TextDataset::texts_windowed() const {
  int64_t n = 0;
  for (int64_t t = 0; t < num_texts(); ++t) n += text_windows(t) > 1;
  return n;
}

std::string TextDataset::windows_summary() const {
  const int64_t cut = texts_windowed();
  return fmt::format("{} texts, {} of them cut into {} windows (data.long_text \"window\", pooled by {})", num_texts(),
                     cut, size() - (num_texts() - cut), window_pool_);
}

void TextDataset::set_windowing(const std::string& pool) {
  if (size() > 0) throw Error("TextDataset::set_windowing: the dataset already has samples");
  if (pool != "mean" && pool != "max")
    throw ConfigError("config key 'data.window_pool': unknown pooling '" + pool + "'");
  window_pool_ = pool;
  windowing_ = true;
}

IdPieces SampleStore::read_pieces(int64_t at, int64_t len, IdPieces p) const {
  thread_local std::vector<int32_t> ring[4];
  thread_local unsigned next = 0;
  std::vector<int32_t>& buf = ring[next++ % 4];
  buf.resize(static_cast<size_t>(std::max<int64_t>(p.na + p.nb, 1)));
  auto read = [&](int32_t* out, int64_t from, int64_t n) {
    auto* dst = reinterpret_cast<char*>(out);
    auto want = static_cast<size_t>(n) * sizeof(int32_t);
    auto pos = static_cast<off_t>((at + from) * static_cast<int64_t>(sizeof(int32_t)));
    while (want > 0) {
      const ssize_t got = ::pread(ids_fd, dst, want, pos);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0)
        throw DataError(fmt::format("{}: cannot read ids at byte {}: {}", ids_path, pos,
                                    got < 0 ? std::strerror(errno) : "the file is shorter than its shard says"));
      dst += got;
      want -= static_cast<size_t>(got);
      pos += got;
    }
  };
  read(buf.data(), 0, p.na);
  read(buf.data() + p.na, len - p.nb, p.nb);
  p.a = buf.data();
  p.b = buf.data() + p.na;
  return p;
}

void TextDataset::set_store(std::shared_ptr<const SampleStore> store) {
  if (size() > 0 || windowing_) throw Error("TextDataset::set_store: the dataset already has samples");
  store_ = std::move(store);
}

void TextDataset::throw_not_contiguous() {
  throw Error("TextDataset::tokens: a dataset read from a shard gives its samples through ids()");
}

void TextDataset::add(const std::vector<int32_t>& ids, int64_t full_length, const std::vector<int64_t>& class_ids,
                      float value, int64_t line) {
  if (store_) throw Error("TextDataset::add: a dataset read from a shard is read-only");
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
      int64_t* p = t.data_ptr<int64_t>();
      for (int64_t b = 0; b < B; ++b) p[b] = label(indices[b]);
      return t;
    }
    case TargetKind::binary: {
      auto t = torch::empty({B}, torch::kFloat);
      float* p = t.data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) p[b] = label(indices[b]) == positive_ ? 1.0f : 0.0f;
      return t;
    }
    case TargetKind::multi_hot: {
      auto t = torch::zeros({B, num_classes_}, torch::kFloat);
      float* p = t.data_ptr<float>();
      const int32_t* ci = class_ids();
      for (int64_t b = 0; b < B; ++b) {
        const int64_t i = indices[b];
        for (int64_t k = class_begin(i), end = class_end(i); k < end; ++k) p[b * num_classes_ + ci[k]] = 1.0f;
      }
      return t;
    }
    case TargetKind::value: {
      auto t = torch::empty({B}, torch::kFloat);
      float* p = t.data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) p[b] = value(indices[b]);
      return t;
    }
  }
  return {};
}

void TextDataset::map_ids(const std::vector<int32_t>& table) {
  if (store_) throw Error("TextDataset::map_ids: a dataset read from a shard is read-only");
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
  second_starts_.shrink_to_fit();
  flags_.shrink_to_fit();
  text_starts_.shrink_to_fit();
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

}  // namespace ltk
