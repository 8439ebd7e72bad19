// A tokenised, numericalised text dataset stored compactly: one flat buffer of token ids and
// one of offsets (not a tensor or vector per sample), plus the class id of each sample.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ltk/data/batch.h"
#include "ltk/data/labels.h"
#include "ltk/data/ngrams.h"
#include "ltk/data/reader.h"
#include "ltk/data/tokenizer.h"
#include "ltk/data/vocab.h"

namespace ltk {

/// What a sample's label becomes, decided by the task (task.type).
enum class TargetKind {
  none,       ///< unlabelled input (prediction)
  class_id,   ///< multiclass: one label -> int64 class id, targets [B]
  binary,     ///< binary: one of two labels -> float 0/1, targets [B]
  multi_hot,  ///< multilabel: labels joined by a separator -> float multi-hot, targets [B, C]
  value,      ///< regression: the label is a number -> float, targets [B]
};

/// Turns label strings into targets; every error names file:line.
struct TargetEncoder {
  TargetKind kind = TargetKind::none;
  const LabelMap* labels = nullptr;  ///< class tasks
  std::string separator = ",";       ///< multilabel
  int64_t positive = 1;              ///< binary: the label id that is the positive class
};

struct EncodeOptions {
  int64_t max_len = 0;              ///< 0 = keep every token (with specials: counts them)
  std::string truncation = "head";  ///< head | tail | head+tail (pairs: longest first, from the end)
  /// [CLS] text [SEP] / [CLS] a [SEP] b [SEP] with these ids; -1 = no special tokens.
  int32_t cls_id = -1, sep_id = -1;
  /// Record which pieces continue a word (whole-word masking): a "##" piece, or, with `words`
  /// (a word segmenter such as jieba), every piece after the first of a segmenter word.
  bool word_flags = false;
  const class Tokenizer* words = nullptr;
  /// Pack consecutive texts into [CLS] a [SEP] b [SEP] ... sequences of at most max_len (mlm).
  bool pack = false;
  /// Every example is a sentence pair (data.text_pair_*): one without a second text is an error.
  bool pairs = false;
  /// data.long_text "window": a text longer than max_len becomes overlapping windows of at most
  /// max_len ids (each with its own [CLS]/[SEP]), neighbours sharing `window_overlap` ids; every
  /// window is a sample carrying the text's label, and predictions pool the windows' outputs per
  /// text by `window_pool` ("mean" | "max"). Single texts only (not pairs, packing or word flags).
  bool windows = false;
  int64_t window_overlap = 0;
  std::string window_pool = "mean";
  /// Tokenise on up to this many threads, in slices of the examples (single texts without
  /// packing or word flags; 1 otherwise): the result is the same whatever the count.
  int threads = 1;
};

/// The start of every window of a text of `n` ids cut into windows of at most `size` ids whose
/// neighbours share `overlap` ids (0 <= overlap < size): 0, size - overlap, ... up to the window
/// that reaches the end.
std::vector<int64_t> window_starts(int64_t n, int64_t size, int64_t overlap);

/// The encode options of a data config over `vocab` (the [CLS]/[SEP] ids when
/// data.special_tokens is set; DataError when the vocabulary lacks them), and for an mlm task its
/// whole-word flags (words from `segmenter` when given) and packing.
EncodeOptions encode_options(const DataConfig& data, const Vocabulary& vocab, const TaskConfig* task = nullptr,
                             const Tokenizer* segmenter = nullptr);

/// The word segmenter of task.word_segmenter "jieba" (python3-jieba's dictionary), else null.
std::unique_ptr<Tokenizer> word_segmenter(const TaskConfig& task);

/// Hugging Face's "longest_first" truncation of a pair to at most `budget` ids in all, as its fast
/// (Rust) tokenizers do it: the shorter text keeps min(its length, budget/2) or more when the
/// longer leaves room, the longer the rest; both cut at their end.
void truncate_pair(std::vector<int32_t>& a, std::vector<int32_t>& b, int64_t budget);
/// The lengths truncate_pair keeps of texts of `a` and `b` ids.
std::pair<int64_t, int64_t> pair_lengths(int64_t a, int64_t b, int64_t budget);

/// Truncates `ids` in place to `max_len` tokens by `policy` (head keeps the start, tail the end,
/// head+tail the first ceil(max_len/2) and the last floor(max_len/2)).
void truncate_ids(std::vector<int32_t>& ids, int64_t max_len, const std::string& policy);

/// A sample's ids as at most two runs of a buffer: a sample read from a shard and cut to max_len
/// keeps its head run and its tail run ([CLS] ... | ... [SEP], or the policy's head and tail).
struct IdPieces {
  const int32_t* a = nullptr;
  int64_t na = 0;
  const int32_t* b = nullptr;
  int64_t nb = 0;
  int64_t size() const { return na + nb; }
  int32_t operator[](int64_t k) const { return k < na ? a[k] : b[k - na]; }
  /// Copies the ids (as int64) to `out`.
  void copy_to(int64_t* out) const {
    for (int64_t k = 0; k < na; ++k) out[k] = a[k];
    for (int64_t k = 0; k < nb; ++k) out[na + k] = b[k];
  }
};

/// The arrays of a dataset read from a shard (data/shards.h), in mapped files: every text's ids
/// whole, as encoded without max_len; max_len, truncation and [CLS]/[SEP] are applied here, when a
/// sample is read, exactly as encoding with them would have cut it.
struct SampleStore {
  int64_t n = 0, total = 0;
  const int32_t* ids = nullptr;
  /// Where text i's ids start (n + 1 entries): offsets[i] (the mapped file), or, read into memory
  /// compactly (4 bytes a text), base[i >> kBlockShift] + rel[i].
  const int64_t* offsets = nullptr;
  const int64_t* base = nullptr;
  const uint32_t* rel = nullptr;
  static constexpr int kBlockShift = 12;
  /// Class ids (class tasks): text i's are class_ids[class_offsets[i], class_offsets[i + 1]); with
  /// no class_offsets, text i has class_ids[i] alone (one_class_each) or none.
  const int32_t* class_ids = nullptr;
  const int64_t* class_offsets = nullptr;
  bool one_class_each = false;
  const float* values = nullptr;  ///< regression
  const int64_t* lines = nullptr;
  int64_t max_len = 0;
  int truncation = 0;           ///< 0 head, 1 tail, 2 head+tail
  bool specials = false;        ///< every stored text is [CLS] ... [SEP]
  std::shared_ptr<void> files;  ///< keeps the mappings
  /// Hands back the pages of ids read so far (called by pages_read once `release_bytes` were read).
  std::function<void()> release;
  int64_t release_bytes = int64_t{64} << 20;
  mutable std::atomic<int64_t> read_since_release{0};

  /// Whole-word flags (an mlm shard's words.bin: one byte an id, 1 where the piece continues a
  /// word), mapped; or read with pread from flags_fd when the ids are. Null: none read.
  const uint8_t* flags = nullptr;
  int flags_fd = -1;
  /// task.pack: sample j is the texts [pack[j], pack[j + 1]) packed as [CLS] a [SEP] b [SEP] ...
  /// (each text cut to max_len first), pack_lengths[j] ids long; `texts` counts the stored texts.
  /// Empty: every stored text is a sample (n == texts).
  std::vector<int64_t> pack;
  std::vector<int32_t> pack_lengths;
  int64_t texts = 0;
  /// data.long_text "window": stored text t's samples are windows window_first[t] ..
  /// window_first[t + 1] - 1 (texts + 1 entries); window k holds the ids of the text's body (its
  /// ids inside [CLS]/[SEP]) from k * window_step, window_size of them or up to the end, with the
  /// text's [CLS]/[SEP] around them when it has them (as add_windows makes them in memory).
  /// Empty: no windows.
  std::vector<int64_t> window_first;
  int64_t window_size = 0, window_step = 0;
  /// Sentence pairs: stored text i is [CLS] a [SEP] b [SEP], b from seconds[i]; null: single texts.
  const int32_t* seconds = nullptr;

  // Stored text i (0 <= i < texts).
  int64_t offset(int64_t i) const { return rel ? base[i >> kBlockShift] + rel[i] : offsets[i]; }
  int64_t stored_length(int64_t i) const { return offset(i + 1) - offset(i); }
  int64_t class_begin(int64_t i) const { return class_offsets ? class_offsets[i] : one_class_each ? i : 0; }
  int64_t class_end(int64_t i) const { return class_offsets ? class_offsets[i + 1] : one_class_each ? i + 1 : 0; }
  /// Pair i's first and second texts' lengths as read (their [CLS]/[SEP] aside): both cut as
  /// truncate_pair cuts them to fit max_len.
  std::pair<int64_t, int64_t> pair_cut(int64_t i) const {
    const int64_t len = stored_length(i), a = seconds[i] - 2, b = len - seconds[i] - 1;
    return max_len > 0 && len > max_len ? pair_lengths(a, b, max_len - 3) : std::pair<int64_t, int64_t>{a, b};
  }
  /// Text i's length as read: max_len when its stored ids run over it, else all of them.
  int64_t text_length(int64_t i) const {
    if (seconds) {
      const auto [a, b] = pair_cut(i);
      return a + b + 3;
    }
    const int64_t len = stored_length(i);
    return max_len > 0 && len > max_len && max_len >= (specials ? 2 : 0) ? max_len : len;
  }
  // Sample i (0 <= i < n): a text, a pack of them, or a window of one.
  bool packed() const { return !pack.empty(); }
  bool windowed() const { return !window_first.empty(); }
  /// The stored text of sample i (a pack's first; a window's text).
  int64_t text_of(int64_t i) const {
    if (packed()) return pack[static_cast<size_t>(i)];
    if (windowed()) return std::upper_bound(window_first.begin(), window_first.end(), i) - window_first.begin() - 1;
    return i;
  }
  /// Where window i starts in its text's body, and its length with the text's [CLS]/[SEP].
  std::pair<int64_t, int64_t> window(int64_t i, int64_t t) const {
    const int64_t sp = specials ? 1 : 0, start = (i - window_first[static_cast<size_t>(t)]) * window_step;
    return {start, std::min(window_size, stored_length(t) - 2 * sp - start) + 2 * sp};
  }
  int64_t length(int64_t i) const {
    if (packed()) return pack_lengths[static_cast<size_t>(i)];
    return windowed() ? window(i, text_of(i)).second : text_length(i);
  }
  /// Ids before max_len cut them (a window: its own length).
  int64_t full_length(int64_t i) const { return packed() || windowed() ? length(i) : stored_length(i); }
  int64_t line(int64_t i) const { return lines[text_of(i)]; }
  /// Read with pread(2) from this descriptor of ids.bin instead of the mapping (a shard larger
  /// than the release window): a sample read at random then maps no page at all (kernels that
  /// map the page cache's large folios whole mapped up to 2 MiB a sample).
  int ids_fd = -1;
  std::string ids_path, flags_path;  ///< for errors

  /// The runs of text i that max_len and truncation keep (sizes only): the whole text, or its
  /// head run and its tail run ([CLS] ... | ... [SEP], or the policy's head and tail).
  IdPieces cut(int64_t i) const {
    const int64_t len = stored_length(i), sp = specials ? 1 : 0, keep = max_len - 2 * sp;
    if (max_len > 0 && len > max_len && keep >= 0) {
      const int64_t head = truncation == 0 ? keep : truncation == 1 ? 0 : (keep + 1) / 2, tail = keep - head;
      return {nullptr, sp + head, nullptr, sp + tail};
    }
    return {nullptr, len, nullptr, 0};
  }
  /// Text i's ids as read.
  IdPieces text_pieces(int64_t i) const {
    IdPieces p = cut(i);
    const int64_t at = offset(i), len = stored_length(i);
    if (ids_fd >= 0) return read_pieces(at, len, p);  // (pointers into a buffer of this thread's)
    p.a = ids + at;
    if (p.nb > 0) p.b = ids + at + len - p.nb;
    return p;
  }
  /// Sample i's ids (a pack's: gathered into a buffer of this thread's, valid until its fourth
  /// next call).
  IdPieces pieces(int64_t i) const {
    if (seconds && max_len > 0 && stored_length(i) > max_len) return pair_pieces(i);
    return packed() ? packed_pieces(i) : windowed() ? window_pieces(i) : text_pieces(i);
  }
  /// Where pair i's second text starts in its ids as read.
  int64_t second_start(int64_t i) const { return pair_cut(i).first + 2; }
  /// pieces() through pread: the runs of `p` (sizes set) read from ids_fd into this thread's
  /// buffers, valid until its fourth next call.
  IdPieces read_pieces(int64_t at, int64_t len, IdPieces p) const;
  IdPieces packed_pieces(int64_t i) const;
  /// Window i's ids, gathered into a buffer of this thread's valid until its fourth next call.
  IdPieces window_pieces(int64_t i) const;
  /// Pair i cut to max_len, gathered into a buffer of this thread's valid until its fourth next call.
  IdPieces pair_pieces(int64_t i) const;
  /// Sample i's whole-word flags, length(i) of them, in a buffer of this thread's valid until its
  /// fourth next call: as stored, and where max_len cut a text, the first piece kept after each
  /// cut starts a word (as encoding with max_len marks it).
  const uint8_t* word_flags(int64_t i) const;
  /// Text i's flags (its cut() runs, the pieces after a cut marked as starting words) into `out`.
  void text_flags(int64_t i, uint8_t* out) const;
};

class TextDataset {
 public:
  int64_t size() const { return store_ ? store_->n : static_cast<int64_t>(lines_.size()); }
  int64_t length(int64_t i) const { return store_ ? store_->length(i) : offsets_[i + 1] - offsets_[i]; }
  /// Sample i's ids, contiguous: a dataset built in memory only (a Error for one read from a
  /// shard, whose cut samples are two runs: use ids()).
  const int32_t* tokens(int64_t i) const {
    if (store_) throw_not_contiguous();
    return ids_.data() + offsets_[i];
  }
  /// Sample i's ids, from any dataset.
  IdPieces ids(int64_t i) const {
    if (store_) return store_->pieces(i);
    return {ids_.data() + offsets_[i], offsets_[i + 1] - offsets_[i], nullptr, 0};
  }
  /// The first class id of sample i (class tasks), -1 when unlabelled.
  int64_t label(int64_t i) const {
    const int64_t b = class_begin(i);
    return class_end(i) > b ? class_ids()[b] : -1;
  }
  /// All class ids of sample i (multilabel).
  std::vector<int64_t> labels(int64_t i) const {
    return std::vector<int64_t>(class_ids() + class_begin(i), class_ids() + class_end(i));
  }
  /// The regression target of sample i.
  float value(int64_t i) const { return store_ ? store_->values[store_->text_of(i)] : values_[i]; }
  TargetKind target_kind() const { return kind_; }
  int64_t num_classes() const { return num_classes_; }
  int64_t positive_class() const { return positive_; }
  /// Tokens before truncation (a window: its own length).
  int64_t full_length(int64_t i) const { return store_ ? store_->full_length(i) : full_lengths_[i]; }
  bool truncated(int64_t i) const { return full_length(i) > length(i); }
  int64_t source_line(int64_t i) const { return store_ ? store_->line(i) : lines_[i]; }
  const std::string& source() const { return source_; }
  bool has_labels() const { return kind_ != TargetKind::none; }
  /// Sentence pairs: where sample i's second text (token type 1) starts.
  bool has_pairs() const { return store_ ? store_->seconds != nullptr : !second_starts_.empty(); }
  int64_t second_start(int64_t i) const { return store_ ? store_->second_start(i) : second_starts_[i]; }
  /// The id the collate pads with (the vocabulary's).
  int64_t pad_id() const { return pad_id_; }
  void set_pad_id(int64_t id) { pad_id_ = id; }
  /// Tokens in all (a shard's: as stored, before max_len).
  int64_t total_tokens() const { return store_ ? store_->total : static_cast<int64_t>(ids_.size()); }
  /// Bytes held in memory by the id, offset, label and length buffers (a shard's are mapped: 0).
  size_t memory_bytes() const;
  /// Read from a shard: the arrays are mapped files (data/shards.h).
  bool mapped() const { return store_ != nullptr; }
  /// Makes this (empty) dataset read its samples from `store`.
  void set_store(std::shared_ptr<const SampleStore> store);
  /// Tells a mapped dataset that `n` ids were read (by the collate): every `release_bytes` read
  /// (ShardReadOptions), the pages read so far are handed back, so a pass over a corpus larger
  /// than memory keeps a bounded resident set. Nothing for a dataset in memory.
  void pages_read(int64_t n) const {
    if (store_ && store_->release &&
        store_->read_since_release.fetch_add(n * 4, std::memory_order_relaxed) > store_->release_bytes) {
      store_->read_since_release.store(0, std::memory_order_relaxed);
      store_->release();
    }
  }

  // Texts and windows (EncodeOptions::windows). A windowed dataset's samples are windows, those of
  // one text consecutive; without windows every sample is a text of its own.
  bool windowed() const { return windowing_; }
  /// Texts: predictions and metrics are per text.
  int64_t num_texts() const {
    if (!windowed()) return size();
    return store_ ? store_->texts : static_cast<int64_t>(text_starts_.size());
  }
  /// The first sample of text t (its label, line and source are the text's).
  int64_t text_sample(int64_t t) const {
    if (!windowed()) return t;
    return store_ ? store_->window_first[static_cast<size_t>(t)] : text_starts_[t];
  }
  /// The samples (windows) of text t.
  int64_t text_windows(int64_t t) const {
    if (!windowed()) return 1;
    return (t + 1 < num_texts() ? text_sample(t + 1) : size()) - text_sample(t);
  }
  /// Texts cut into more than one window.
  int64_t texts_windowed() const;
  /// "T texts, K of them cut into W windows in all" (the log and the report).
  std::string windows_summary() const;
  /// How the windows of a text are pooled: "mean" or "max".
  const std::string& window_pool() const { return window_pool_; }
  /// Makes the dataset windowed (before any sample is added), pooling by `pool`.
  void set_windowing(const std::string& pool);
  /// The samples added from here on until the next call are the windows of one text.
  void begin_text() { text_starts_.push_back(size()); }

  /// Appends one sample (ids already truncated) with its class ids (class tasks) or value.
  void add(const std::vector<int32_t>& ids, int64_t full_length, const std::vector<int64_t>& class_ids, float value,
           int64_t line);
  /// Whole-word flags of the last added sample, one per id (1: continues the previous word).
  void set_word_flags(const std::vector<uint8_t>& flags) { flags_.insert(flags_.end(), flags.begin(), flags.end()); }
  bool has_word_flags() const { return store_ ? store_->flags || store_->flags_fd >= 0 : !flags_.empty(); }
  /// Sample i's flags, length(i) of them (a shard's: valid until this thread's fourth next call).
  const uint8_t* word_flags(int64_t i) const { return store_ ? store_->word_flags(i) : flags_.data() + offsets_[i]; }
  /// Records where the last added sample's second text starts (every sample of a pair dataset).
  void set_second_start(int64_t start) { second_starts_.push_back(static_cast<int32_t>(start)); }

  void set_source(std::string source, TargetKind kind, int64_t num_classes, int64_t positive = 1) {
    source_ = std::move(source);
    kind_ = kind;
    num_classes_ = num_classes;
    positive_ = positive;
  }
  /// Replaces every token id i by table[i].
  void map_ids(const std::vector<int32_t>& table);
  /// Frees the buffers' spare capacity (called once a dataset is complete).
  void shrink_to_fit();
  /// Bytes held by the token ids alone.
  size_t id_bytes() const { return ids_.capacity() * sizeof(int32_t); }
  /// The targets of `indices` as the task's loss takes them (see TargetKind).
  torch::Tensor targets(const std::vector<int64_t>& indices) const;

 private:
  std::vector<int32_t> ids_;
  std::vector<int64_t> offsets_{0};
  std::vector<int32_t> class_ids_;
  std::vector<int64_t> class_offsets_{0};
  std::vector<float> values_;
  std::vector<int32_t> full_lengths_;
  std::vector<int64_t> lines_;
  std::vector<int32_t> second_starts_;
  std::vector<uint8_t> flags_;
  std::vector<int64_t> text_starts_;  ///< windowed: the first sample of every text
  std::shared_ptr<const SampleStore> store_;  ///< read from a shard: the arrays above are empty
  const int32_t* class_ids() const { return store_ ? store_->class_ids : class_ids_.data(); }
  int64_t class_begin(int64_t i) const { return store_ ? store_->class_begin(store_->text_of(i)) : class_offsets_[i]; }
  int64_t class_end(int64_t i) const { return store_ ? store_->class_end(store_->text_of(i)) : class_offsets_[i + 1]; }
  [[noreturn]] static void throw_not_contiguous();
  std::string window_pool_;
  bool windowing_ = false;
  std::string source_;
  int64_t pad_id_ = Vocabulary::kPadId;
  TargetKind kind_ = TargetKind::none;
  int64_t num_classes_ = 0;
  int64_t positive_ = 1;
};

/// Tokenises and numericalises examples and encodes their labels by `targets` (nullptr or kind
/// none: unlabelled). Every class label must be in the label map (else DataError naming file:line,
/// the label and the known ones: pitfall P8 caught when data is read); a regression label must be
/// a finite number.
TextDataset encode_examples(const std::vector<Example>& examples, const std::string& source,
                            const Tokenizer& tokenizer, const Vocabulary& vocab, const TargetEncoder* targets,
                            const EncodeOptions& options);

/// Builds the vocabulary of a training split (min_freq, max_size, as Vocabulary::build) and
/// encodes the split in the same tokenisation pass; the result equals count_tokens +
/// Vocabulary::build + encode_examples, in about half the time.
std::pair<Vocabulary, TextDataset> build_vocab_and_encode(const std::vector<Example>& examples,
                                                          const std::string& source, const Tokenizer& tokenizer,
                                                          int64_t min_freq, int64_t max_size,
                                                          const TargetEncoder* targets, const EncodeOptions& options);

/// Builds the feature vocabulary of a training split and encodes the split with it, in one
/// tokenisation pass. The vocabulary's counts are document frequencies (what idf needs); its
/// order is by document frequency, then byte order, after <pad> and <unk>.
std::pair<Vocabulary, TextDataset> build_features_and_encode(const std::vector<Example>& examples,
                                                             const std::string& source, const Tokenizer& tokenizer,
                                                             const FeatureSelection& selection,
                                                             const TargetEncoder* targets,
                                                             const EncodeOptions& options);

/// Encodes the examples in one tokenisation pass on one thread, each token numbered by the
/// returned counter (in the order first seen here) and counted: build_vocab_and_encode without
/// the vocabulary, for a caller that merges the counts of many parts before building it.
std::pair<TokenCounter, TextDataset> count_and_encode(const std::vector<Example>& examples, const std::string& source,
                                                      const Tokenizer& tokenizer, const TargetEncoder* targets,
                                                      const EncodeOptions& options);

/// Parses a regression target; DataError naming source:line when it is not a finite number.
float parse_target_value(const std::string& label, const std::string& source, int64_t line);

/// A multiclass encoder over `labels` (the common case, and the one tests use).
inline TargetEncoder class_targets(const LabelMap& labels) {
  return TargetEncoder{TargetKind::class_id, &labels, ",", 1};
}

/// Counts the tokens of the examples (for building a vocabulary).
TokenCounter count_tokens(const std::vector<Example>& examples, const Tokenizer& tokenizer);

/// Pads samples to the longest in the batch (or to `fixed_len`) with the pad id (-1: the
/// dataset's). The padding never changes what a model sees: lengths and mask come with the ids.
class PadCollate {
 public:
  explicit PadCollate(int64_t pad_id = -1, int64_t fixed_len = 0)
      : pad_id_(pad_id), fixed_len_(fixed_len) {}
  Batch operator()(const TextDataset& data, const std::vector<int64_t>& indices) const;

 private:
  int64_t pad_id_;
  int64_t fixed_len_;
};

/// One epoch's batches, flat (4 bytes a sample whatever the corpus's size): batch b is
/// order[starts[b], starts[b + 1]).
class EpochBatches {
 public:
  int64_t size() const { return static_cast<int64_t>(starts_.size()) - 1; }
  /// Batch b's sample indices.
  std::vector<int64_t> operator[](int64_t b) const {
    return std::vector<int64_t>(order_.begin() + starts_[b], order_.begin() + starts_[b + 1]);
  }
  bool operator==(const EpochBatches& o) const { return order_ == o.order_ && starts_ == o.starts_; }
  bool operator!=(const EpochBatches& o) const { return !(*this == o); }
  /// Iterates the batches (each a vector made on the fly).
  struct Iterator {
    const EpochBatches* of;
    int64_t b;
    std::vector<int64_t> operator*() const { return (*of)[b]; }
    Iterator& operator++() { return ++b, *this; }
    bool operator!=(const Iterator& o) const { return b != o.b; }
  };
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, size()}; }

 private:
  friend class BatchSampler;
  std::vector<uint32_t> order_;
  std::vector<int64_t> starts_{0};
};

/// Seeded batches of sample indices. The order of an epoch depends only on (seed, epoch), so a
/// resumed run sees the same batches. At most 2^32 - 1 samples.
class BatchSampler {
 public:
  BatchSampler(int64_t size, int64_t batch_size, bool shuffle, bool drop_last, uint64_t seed);
  /// Class-balanced sampling: each epoch draws `size` samples with replacement, every class
  /// (`classes[i]` is sample i's class) equally likely, then a sample of it uniformly.
  void set_balanced(const std::vector<int32_t>& classes);
  /// Length bucketing: within pools of `pool_batches` batches (in the epoch's sample order), sort
  /// by length, cut into batches, then shuffle the batches; less padding, still seeded.
  /// `max_tokens` > 0 cuts batches so that samples x longest length stays within it (then
  /// batch_size is the most samples per batch). `lengths[i]` is sample i's token count.
  void set_length_batching(std::vector<int32_t> lengths, int64_t pool_batches, int64_t max_tokens);
  EpochBatches epoch(int64_t epoch) const;
  int64_t batches_per_epoch() const;

 private:
  int64_t size_, batch_size_;
  bool shuffle_, drop_last_;
  uint64_t seed_;
  std::vector<std::vector<uint32_t>> by_class_;  // non-empty: balanced
  std::vector<int32_t> lengths_;                 // non-empty: length bucketing and/or max_tokens
  int64_t pool_batches_ = 0, max_tokens_ = 0;
  void cut_by_length(EpochBatches& out, int64_t epoch) const;
};

}  // namespace ltk
