// Corpora encoded once into shards (data/shards.h): `ltk-data encode`, and the checks that a
// config reading a shard tokenises and labels as the shard was encoded.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/data/dataset.h"
#include "ltk/data/labels.h"
#include "ltk/data/vocab.h"

namespace ltk {

struct EncodeShardsOptions {
  std::string out;                       ///< the shards go to OUT/train, OUT/valid, OUT/test
  std::vector<std::string> splits;       ///< "train", "valid", "test"; empty: every split the config names
  int threads = 1;                       ///< tokenising threads
  size_t piece_bytes = size_t{8} << 20;  ///< input read and encoded this many bytes at a time
  bool overwrite = false;                ///< replace shards already in OUT
  /// Ids each thread rewrites at a time once the vocabulary is known (4 MiB); tests make it small
  /// so that several threads and blocks share a small file.
  int64_t remap_block = int64_t{1} << 20;
};

struct EncodedSplit {
  std::string split, dir, source;
  int64_t samples = 0, tokens = 0, skipped = 0, source_bytes = 0;
  double seconds = 0;  ///< reading, encoding, rewriting and the synced rename
};

/// Encodes the config's splits into shards, streaming each file in pieces: the training split's
/// vocabulary (data.vocab, counted as the pieces go; or the tokenizer's fixed one) and labels,
/// then valid and test with them. Every split's ids, labels and lines equal the in-memory path's
/// for the same config; the bytes written do not depend on the thread count. ConfigError naming
/// the key for what shards cannot hold (the linear model's n-gram features, a tokenizer that must
/// first be trained on the raw text). Sentence pairs are kept whole with where each second text
/// starts; windows are cut when a shard is read. An mlm config's shard keeps
/// its texts unlabelled and, with task.whole_word, each piece's whole-word flag (words.bin);
/// task.pack packs them when they are read.
std::vector<EncodedSplit> encode_shards(const Config& config, const EncodeShardsOptions& options);

/// What a shard encoded under `config` records of it, and what a config reading it must match:
/// the tokenizer (its dictionary by digest), data.special_tokens, data.vocab and the task type.
nlohmann::json shard_identity(const Config& config);

/// Throws ConfigError when `config` would tokenise or label otherwise than shard `dir` was
/// encoded, naming the config key, the config's value and the shard's; the shard's split key
/// (data.train / data.valid / data.test) is named too.
void check_shard_matches(const std::string& dir, const nlohmann::json& manifest, const Config& config,
                         const std::string& key);

/// Opens shard `dir` for config key `key` (data.train ...): checked against the config, its
/// vocabulary and labels against `vocab` and `labels` (when given: the run's), mapped with the
/// config's max_len and truncation, its targets as `targets` (the run's task) makes them.
TextDataset open_config_shard(const std::string& dir, const Config& config, const std::string& key,
                              const Vocabulary* vocab, const LabelMap* labels, const TargetEncoder& targets);

}  // namespace ltk
