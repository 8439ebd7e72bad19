// A tokenised, numericalised text dataset stored compactly: one flat buffer of token ids and
// one of offsets (not a tensor or vector per sample), plus the class id of each sample.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ltk/data/batch.h"
#include "ltk/data/labels.h"
#include "ltk/data/reader.h"
#include "ltk/data/tokenizer.h"
#include "ltk/data/vocab.h"

namespace ltk {

struct EncodeOptions {
  int64_t max_len = 0;              ///< 0 = keep every token
  std::string truncation = "head";  ///< head | tail | head+tail
};

/// Truncates `ids` in place to `max_len` tokens by `policy` (head keeps the start, tail the end,
/// head+tail the first ceil(max_len/2) and the last floor(max_len/2)).
void truncate_ids(std::vector<int32_t>& ids, int64_t max_len, const std::string& policy);

class TextDataset {
 public:
  int64_t size() const { return static_cast<int64_t>(labels_.size()); }
  int64_t length(int64_t i) const { return offsets_[i + 1] - offsets_[i]; }
  const int32_t* tokens(int64_t i) const { return ids_.data() + offsets_[i]; }
  int64_t label(int64_t i) const { return labels_[i]; }
  /// Tokens before truncation.
  int64_t full_length(int64_t i) const { return full_lengths_[i]; }
  bool truncated(int64_t i) const { return full_lengths_[i] > length(i); }
  int64_t source_line(int64_t i) const { return lines_[i]; }
  const std::string& source() const { return source_; }
  bool has_labels() const { return has_labels_; }
  int64_t total_tokens() const { return static_cast<int64_t>(ids_.size()); }
  /// Bytes held by the id, offset, label and length buffers.
  size_t memory_bytes() const;

  /// Appends one sample (ids already truncated); label -1 means unlabelled.
  void add(const std::vector<int32_t>& ids, int64_t full_length, int64_t label, int64_t line);

  void set_source(std::string source, bool has_labels) {
    source_ = std::move(source);
    has_labels_ = has_labels;
  }

 private:
  std::vector<int32_t> ids_;
  std::vector<int64_t> offsets_{0};
  std::vector<int64_t> labels_;
  std::vector<int32_t> full_lengths_;
  std::vector<int64_t> lines_;
  std::string source_;
  bool has_labels_ = true;
};

/// Tokenises and numericalises examples. Every label must be in `labels` (else DataError naming
/// file:line, the label and the known ones: pitfall P8 caught when data is read).
TextDataset encode_examples(const std::vector<Example>& examples, const std::string& source,
                            const Tokenizer& tokenizer, const Vocabulary& vocab,
                            const LabelMap* labels, const EncodeOptions& options);

/// Counts the tokens of the examples (for building a vocabulary).
TokenCounter count_tokens(const std::vector<Example>& examples, const Tokenizer& tokenizer);

/// Pads samples to the longest in the batch (or to `fixed_len`) with the pad id. The padding
/// never changes what a model sees: lengths and mask come with the ids.
class PadCollate {
 public:
  explicit PadCollate(int64_t pad_id = Vocabulary::kPadId, int64_t fixed_len = 0)
      : pad_id_(pad_id), fixed_len_(fixed_len) {}
  Batch operator()(const TextDataset& data, const std::vector<int64_t>& indices) const;

 private:
  int64_t pad_id_;
  int64_t fixed_len_;
};

/// Seeded batches of sample indices. The order of an epoch depends only on (seed, epoch), so a
/// resumed run sees the same batches.
class BatchSampler {
 public:
  BatchSampler(int64_t size, int64_t batch_size, bool shuffle, bool drop_last, uint64_t seed);
  std::vector<std::vector<int64_t>> epoch(int64_t epoch) const;
  int64_t batches_per_epoch() const;

 private:
  int64_t size_, batch_size_;
  bool shuffle_, drop_last_;
  uint64_t seed_;
};

}  // namespace ltk
