// The padding collate: samples to one padded Batch.
#include "ltk/data/dataset.h"

#include <fmt/format.h>

#include "ltk/core/error.h"

namespace ltk {

Batch Batch::to(const torch::Device& device) const {
  if (ids.device() == device) return *this;
  Batch b;
  b.ids = ids.to(device);
  b.lengths = lengths.to(device);
  b.mask = mask.to(device);
  if (labels.defined()) b.labels = labels.to(device);
  if (token_types.defined()) b.token_types = token_types.to(device);
  if (continues.defined()) b.continues = continues.to(device);
  b.indices = indices;  // bookkeeping stays on the CPU
  return b;
}

Batch PadCollate::operator()(const TextDataset& data, const std::vector<int64_t>& indices) const {
  const auto B = static_cast<int64_t>(indices.size());
  int64_t T = fixed_len_;
  if (T == 0) {
    for (int64_t i : indices) T = std::max(T, data.length(i));
    T = std::max<int64_t>(T, 1);  // an all-empty batch still has one (padding) column
  }
  auto ids = torch::full({B, T}, pad_id_ >= 0 ? pad_id_ : data.pad_id(), torch::kLong);
  auto lengths = torch::empty({B}, torch::kLong);
  auto idx = torch::empty({B}, torch::kLong);
  int64_t* ip = ids.data_ptr<int64_t>();
  int64_t* lp = lengths.data_ptr<int64_t>();
  int64_t* xp = idx.data_ptr<int64_t>();
  int64_t read = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t i = indices[b];
    if (i < 0 || i >= data.size())
      throw DataError(fmt::format("sample index {} out of range [0, {})", i, data.size()));
    const IdPieces src = data.ids(i);
    const int64_t n = std::min(src.size(), T);
    if (n == src.size())
      src.copy_to(ip + b * T);
    else
      for (int64_t t = 0; t < n; ++t) ip[b * T + t] = src[t];
    // Besides its ids, each sample counts as 16 pages (16 Ki ids): read at random, it faults in
    // its page and Linux maps up to 15 cached neighbours with it (fault_around_bytes, 64 KiB).
    read += n + 16 * 1024;
    lp[b] = n;
    xp[b] = i;
  }
  data.pages_read(read);
  Batch batch;
  batch.ids = ids;
  batch.lengths = lengths;
  batch.mask = torch::arange(T, torch::kLong).unsqueeze(0) < lengths.unsqueeze(1);
  batch.indices = idx;
  if (data.has_labels()) batch.labels = data.targets(indices);
  if (data.has_word_flags()) {
    batch.continues = torch::zeros({B, T}, torch::kBool);
    bool* cp = batch.continues.data_ptr<bool>();
    for (int64_t b = 0; b < B; ++b) {
      const uint8_t* f = data.word_flags(indices[b]);
      for (int64_t t = 0; t < lp[b]; ++t) cp[b * T + t] = f[t] != 0;
    }
  }
  if (data.has_pairs()) {  // 1 from the second text's first piece through its [SEP], 0 elsewhere
    batch.token_types = torch::zeros({B, T}, torch::kLong);
    int64_t* tp = batch.token_types.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = std::min(data.second_start(indices[b]), lp[b]); t < lp[b]; ++t) tp[b * T + t] = 1;
  }
  return batch;
}

}  // namespace ltk
