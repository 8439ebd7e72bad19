// Pre-tokenised corpora: a split encoded once (ltk-data encode) into flat little-endian files
// that training, evaluation and prediction read memory-mapped, in constant memory whatever the
// corpus's size. The format is documented in docs/shards.md; its version is kShardVersion.
//
//   DIR/manifest.json     what made the shard (tokenizer, vocabulary and label digests, source
//                         file, counts) and every file's size and digest; written last
//   DIR/ids.bin           int32 token ids of every text, whole (no max_len), [CLS]/[SEP] included
//                         when data.special_tokens is set
//   DIR/offsets.bin       int64 x (samples + 1): text i is ids[offsets[i], offsets[i + 1])
//   DIR/lines.bin         int64 x samples: each text's line in the source file
//   DIR/classes.bin       int32 class ids (class tasks; a multilabel text has several)
//   DIR/class_offsets.bin int64 x (samples + 1): text i's classes are classes[co[i], co[i + 1])
//   DIR/values.bin        float32 x samples: regression targets (0 for other tasks)
//   DIR/words.bin         uint8 x tokens, masked-LM shards with task.whole_word only: 1 where the
//                         id continues the previous one's word
//   DIR/seconds.bin       int32 x samples, sentence pairs only: text i is [CLS] a [SEP] b [SEP]
//                         with b from id seconds[i] of it
//   DIR/vocab.txt, DIR/labels.txt   the vocabulary and labels the ids and classes index
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "ltk/data/dataset.h"
#include "ltk/data/labels.h"
#include "ltk/data/vocab.h"

namespace ltk {

inline constexpr int kShardVersion = 2;  // 2: sentence pairs (seconds.bin); single texts stay 1
inline constexpr const char* kShardFormat = "ltk-shard";

/// Whether `path` is a shard directory (a directory holding manifest.json).
bool is_shard(const std::string& path);

/// A shard's manifest, read and checked (format, version, byte order, counts); DataError naming
/// the file otherwise.
nlohmann::json read_shard_manifest(const std::string& dir);

/// Writes one shard: the samples of in-memory datasets appended in order, then finish(). The
/// files grow in DIR.partial (one left by an interrupted encode is removed first), which finish()
/// renames to DIR once every file is synced: a shard directory is whole or absent.
class ShardWriter {
 public:
  /// `word_flags`: every part appended has whole-word flags (an mlm encode), kept in words.bin;
  /// `pairs`: every part is of sentence pairs, where each second text starts kept in seconds.bin.
  explicit ShardWriter(std::string dir, bool word_flags = false, bool pairs = false);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  /// Appends every sample of `part` (encoded without max_len, not windowed; flags and pairs as
  /// the writer was made),
  /// its class ids mapped through `class_map` when given.
  void append(const TextDataset& part, const std::vector<int32_t>& class_map = {});
  int64_t tokens() const { return tokens_; }
  /// Rewrites every id x as id_table[x] and every class c as class_table[c] (empty: unchanged):
  /// ids numbered while counting become the vocabulary's.
  /// Each of `threads` threads rewrites its own part of the files, `block` ids at a time.
  void remap(const std::vector<int32_t>& id_table, const std::vector<int32_t>& class_table, int threads,
             int64_t block = int64_t{1} << 20);
  /// Writes vocab.txt, labels.txt (when `labels`) and manifest.json (`manifest` plus the counts
  /// and each file's size and digest), syncs (the files on `threads` threads), and renames DIR.partial to DIR (an
  /// existing DIR is replaced). Returns the manifest written.
  nlohmann::json finish(nlohmann::json manifest, const Vocabulary& vocab, const LabelMap* labels, int threads = 1);

 private:
  struct Stream;
  std::string dir_, partial_;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::unique_ptr<Stream> words_;    ///< words.bin, when the writer keeps word flags
  std::unique_ptr<Stream> seconds_;  ///< seconds.bin, when it keeps pairs
  int64_t samples_ = 0, tokens_ = 0, classes_ = 0;
  bool finished_ = false;
  Stream& stream(const char* name);
};

/// How a shard's samples are read: data.max_len and data.truncation, applied per sample.
struct ShardReadOptions {
  int64_t max_len = 0;
  std::string truncation = "head";
  /// Ids larger than this are read with pread, not through the mapping. Of the index arrays left
  /// mapped, the pages read are handed back every this many bytes read (TextDataset::pages_read,
  /// where the collate counts 64 KiB for each sample besides its ids); 0, or mapped arrays read
  /// at random that all fit this: never.
  int64_t release_bytes = int64_t{64} << 20;
  /// task.pack (mlm): consecutive texts, each cut to max_len, packed into samples of at most
  /// max_len ids, [CLS] a [SEP] b [SEP] ... (a shard encoded with special tokens and no classes).
  bool pack = false;
  /// Read the shard's whole-word flags (an mlm shard encoded with task.whole_word).
  bool word_flags = false;
  /// data.long_text "window": every text is cut into windows of max_len ids (its [CLS]/[SEP]
  /// included) whose neighbours share `window_overlap` ids, pooled per text by `window_pool`,
  /// exactly as encoding with them makes them; the windows' index takes 8 bytes a text in memory.
  bool windows = false;
  int64_t window_overlap = 0;
  std::string window_pool = "mean";
  /// Check every file's digest against the manifest (reads the whole shard once).
  bool verify = true;
  /// The index is read into memory, compactly, within this many bytes: the offsets first (4
  /// bytes a text), then the class ids (4 a class), the class offsets (8 a text, only where a
  /// text may have other than one class) and a regression's values (4 a text); what does not fit
  /// is read mapped, which is slower. 512 MiB holds the index of 67 M single-label texts. A pair
  /// shard's second-text starts (4 bytes a pair) come after the classes. (Windows number each
  /// text's first window in memory besides, 8 bytes a text, whatever this budget.)
  int64_t index_in_memory = int64_t{512} << 20;
};

/// Opens the shard DIR as a dataset whose arrays stay in the mapped files. Every file is checked
/// against the manifest (size, digest) and the offsets and class ids against each other, so a
/// truncated, corrupted or mismatched shard is a DataError naming the file, never a wrong batch.
TextDataset open_shard(const std::string& dir, const ShardReadOptions& options);

/// The manifest's name for a target kind ("class_id", "binary", "multi_hot", "value", "none").
const char* target_kind_name(TargetKind kind);

/// A 64-bit digest of a file's bytes (digest64 over 64 MiB blocks, chained), as hex; the pages
/// read are handed back as it goes.
std::string file_digest(const std::string& path);

/// Digest of a vocabulary's tokens in id order and of a label set's names, as hex.
std::string vocab_digest(const Vocabulary& vocab);
std::string labels_digest(const LabelMap& labels);

}  // namespace ltk
