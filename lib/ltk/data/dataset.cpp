#include "ltk/data/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ltk/core/error.h"
#include "ltk/core/mapped_file.h"

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

namespace {

/// One of this thread's four buffers of T for `tag`, in turn, sized to hold `n` (at least 1).
template <typename T, int Tag>
T* ring_buffer(int64_t n) {
  thread_local std::vector<T> ring[4];
  thread_local unsigned next = 0;
  std::vector<T>& buf = ring[next++ % 4];
  buf.resize(static_cast<size_t>(std::max<int64_t>(n, 1)));
  return buf.data();
}

}  // namespace

IdPieces SampleStore::read_pieces(int64_t at, int64_t len, IdPieces p) const {
  int32_t* buf = ring_buffer<int32_t, 0>(p.na + p.nb);
  const auto bytes = [](int64_t n) { return static_cast<size_t>(n) * sizeof(int32_t); };
  pread_exactly(ids_fd, ids_path, buf, bytes(p.na), at * 4);
  pread_exactly(ids_fd, ids_path, buf + p.na, bytes(p.nb), (at + len - p.nb) * 4);
  p.a = buf;
  p.b = buf + p.na;
  return p;
}

namespace {

/// Gathers pack j of `s` into `out` (pack_lengths[j] values): each text cut as cut() cuts it, its
/// head run and tail run from `runs(t, p)`, then `fix(text, p, stored length)` on the text's
/// values; the pack's [CLS] once (a later text's [CLS] is dropped). Returns how many were written.
template <typename T, typename Runs, typename Fix>
int64_t gather_pack(const SampleStore& s, size_t j, T* out, Runs&& runs, Fix&& fix) {
  int64_t k = 0;
  for (int64_t t = s.pack[j]; t < s.pack[j + 1]; ++t) {
    const IdPieces p = s.cut(t);
    const int64_t base = k == 0 ? 0 : k - 1;  // where the text's [CLS] would be: the pack's, or dropped
    if (p.na < 1 || base + p.size() > s.pack_lengths[j])
      throw DataError(
          fmt::format("{}: pack {} does not hold its texts; the shard is damaged: encode it again", s.ids_path, j));
    const auto [a, b] = runs(t, p);
    for (int64_t m = k == 0 ? 0 : 1; m < p.na; ++m) out[base + m] = a[m];
    for (int64_t m = 0; m < p.nb; ++m) out[base + p.na + m] = b[m];
    fix(out + base, p, s.stored_length(t));
    k = base + p.size();
  }
  return k;
}

/// Marks the pieces kept after a cut as starting words (as encoding with max_len marks them):
/// `text` holds the flags of a text of `len` stored ids cut to the runs of `p`.
void mark_cut_words(uint8_t* text, const IdPieces& p, int64_t len, bool specials) {
  if (p.size() >= len) return;
  const int64_t sp = specials ? 1 : 0;
  if (p.na > sp) text[sp] = 0;    // the first piece kept of the text
  if (p.nb > sp) text[p.na] = 0;  // the first after the cut
}

/// Whether pack j's stored texts are read with one pread of them all: unless most of what they
/// store is cut away (a long text), which is read a run at a time.
bool read_whole_pack(const SampleStore& s, size_t j) {
  return s.offset(s.pack[j + 1]) - s.offset(s.pack[j]) <= 4 * static_cast<int64_t>(s.pack_lengths[j]) + 4096;
}

/// The stored values (ids or flags) of pack j's texts, one after another: in `mapped` (the file's
/// mapping), or read from `fd` with one pread into a buffer of this thread's; null when they are
/// to be read a text at a time (read_whole_pack).
template <typename T>
const T* pack_run(const SampleStore& s, size_t j, const T* mapped, int fd, const std::string& path) {
  const int64_t from = s.offset(s.pack[j]), span = s.offset(s.pack[j + 1]) - from;
  if (fd < 0) return mapped + from;
  if (!read_whole_pack(s, j)) return nullptr;
  T* buf = ring_buffer<T, 2>(span);
  pread_exactly(fd, path, buf, static_cast<size_t>(span) * sizeof(T), from * static_cast<int64_t>(sizeof(T)));
  return buf;
}

}  // namespace

IdPieces SampleStore::packed_pieces(int64_t i) const {
  const auto j = static_cast<size_t>(i);
  int32_t* out = ring_buffer<int32_t, 1>(pack_lengths[j]);
  const int64_t from = offset(pack[j]);
  const int32_t* run = pack_run(*this, j, ids, ids_fd, ids_path);
  const int64_t k = gather_pack(
      *this, j, out,
      [&](int64_t t, const IdPieces& p) -> std::pair<const int32_t*, const int32_t*> {
        if (!run) {
          const IdPieces q = text_pieces(t);
          return {q.a, q.b};
        }
        const int32_t* a = run + (offset(t) - from);
        return {a, a + stored_length(t) - p.nb};
      },
      [](int32_t*, const IdPieces&, int64_t) {});
  return {out, k, nullptr, 0};
}

IdPieces SampleStore::window_pieces(int64_t i) const {
  const int64_t t = text_of(i), sp = specials ? 1 : 0, at = offset(t), len = stored_length(t);
  const auto [start, n] = window(i, t);
  if (start < 0 || n < 2 * sp || start + n - 2 * sp > len - 2 * sp)
    throw DataError(
        fmt::format("{}: window {} does not fit its text {}; the shard is damaged: encode it again", ids_path, i, t));
  int32_t* out = ring_buffer<int32_t, 1>(n);
  const int64_t body = n - 2 * sp;
  if (ids_fd >= 0) {
    pread_exactly(ids_fd, ids_path, out + sp, static_cast<size_t>(body) * 4, (at + sp + start) * 4);
    if (sp) {
      pread_exactly(ids_fd, ids_path, out, 4, at * 4);
      pread_exactly(ids_fd, ids_path, out + n - 1, 4, (at + len - 1) * 4);
    }
  } else {
    if (body > 0) std::memcpy(out + sp, ids + at + sp + start, static_cast<size_t>(body) * 4);
    if (sp) {
      out[0] = ids[at];
      out[n - 1] = ids[at + len - 1];
    }
  }
  return {out, n, nullptr, 0};
}

IdPieces SampleStore::pair_pieces(int64_t i) const {
  const int64_t at = offset(i), second = seconds[i];
  const auto [a, b] = pair_cut(i);
  int32_t* out = ring_buffer<int32_t, 1>(a + b + 3);
  // [CLS] a (cut) [SEP], then b (cut) [SEP]: the stored runs from the text's start and from its second text's.
  const auto read = [&](int32_t* to, int64_t from, int64_t n) {
    if (ids_fd >= 0)
      pread_exactly(ids_fd, ids_path, to, static_cast<size_t>(n) * 4, from * 4);
    else
      std::memcpy(to, ids + from, static_cast<size_t>(n) * 4);
  };
  read(out, at, a + 1);
  read(out + a + 1, at + second - 1, 1);  // the first text's [SEP]
  read(out + a + 2, at + second, b);
  read(out + a + b + 2, at + stored_length(i) - 1, 1);
  return {out, a + b + 3, nullptr, 0};
}

void SampleStore::text_flags(int64_t i, uint8_t* out) const {
  const IdPieces p = cut(i);
  const int64_t at = offset(i), len = stored_length(i);
  if (flags_fd >= 0) {
    pread_exactly(flags_fd, flags_path, out, static_cast<size_t>(p.na), at);
    pread_exactly(flags_fd, flags_path, out + p.na, static_cast<size_t>(p.nb), at + len - p.nb);
  } else {
    std::memcpy(out, flags + at, static_cast<size_t>(p.na));
    std::memcpy(out + p.na, flags + at + len - p.nb, static_cast<size_t>(p.nb));
  }
  mark_cut_words(out, p, len, specials);
}

const uint8_t* SampleStore::word_flags(int64_t i) const {
  if (!packed()) {
    uint8_t* out = ring_buffer<uint8_t, 0>(text_length(i));
    text_flags(i, out);
    return out;
  }
  const auto j = static_cast<size_t>(i);
  uint8_t* out = ring_buffer<uint8_t, 1>(pack_lengths[j]);
  const int64_t from = offset(pack[j]);
  const uint8_t* run = pack_run(*this, j, flags, flags_fd, flags_path);
  uint8_t* text = ring_buffer<uint8_t, 3>(max_len);
  gather_pack(
      *this, j, out,
      [&](int64_t t, const IdPieces& p) -> std::pair<const uint8_t*, const uint8_t*> {
        if (!run) {  // (already marked: marking again changes nothing)
          text_flags(t, text);
          return {text, text + p.na};
        }
        const uint8_t* a = run + (offset(t) - from);
        return {a, a + stored_length(t) - p.nb};
      },
      [&](uint8_t* values, const IdPieces& p, int64_t len) { mark_cut_words(values, p, len, specials); });
  return out;
}

void TextDataset::set_store(std::shared_ptr<const SampleStore> store) {
  if (size() > 0 || (windowing_ != store->windowed()))
    throw Error("TextDataset::set_store: the dataset already has samples, or is windowed where the store is not");
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
