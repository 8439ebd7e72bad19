// ltk-data encode: a config's splits streamed into shards; and a config's check against a shard.
#include "ltk/train/corpus_shards.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <future>
#include <memory>
#include <set>
#include <unordered_map>

#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/core/stop.h"
#include "ltk/core/strings.h"
#include "ltk/data/formats.h"
#include "ltk/data/jieba.h"
#include "ltk/data/shards.h"
#include "ltk/data/token_index.h"
#include "ltk/models/linear.h"
#include "ltk/task/task.h"

namespace ltk {

namespace fs = std::filesystem;

namespace {

/// What shards cannot hold or feed, named by key.
void refuse_unshardable(const Config& config, const std::string& why) {
  auto refuse = [&](const std::string& key, const std::string& reason) {
    throw ConfigError(fmt::format("config key '{}': {}; {}", key, reason, why));
  };
  if (config.model.type == "linear")
    refuse("model.type", "the linear model reads tf-idf n-gram features from the raw text, not token shards");
  const TokenizerConfig& tok = config.data.tokenizer;
  if ((tok.type == "sentencepiece" || tok.type == "wordpiece") && tok.dict.empty())
    refuse("data.tokenizer.dict",
           fmt::format("a {} tokenizer without a model is trained on the raw training text; name a trained one (a "
                       "run keeps it: runs/NAME/{})",
                       tok.type, tokenizer_resource(tok.type)));
}

std::string dict_of(const TokenizerConfig& tok) {
  if (tokenizer_resource(tok.type).empty()) return "";
  return tok.dict.empty() && tok.type == "jieba" ? kDefaultJiebaDict : tok.dict;
}

/// The stored kind of a task's targets: binary is stored as class ids (which label is positive
/// is the manifest's "positive").
TargetKind stored_kind(const TaskConfig& task) {
  if (task.type == "mlm") return TargetKind::none;  // pretraining reads text; labels, when there, are ignored
  if (task.type == "multilabel") return TargetKind::multi_hot;
  if (task.type == "regression") return TargetKind::value;
  return TargetKind::class_id;
}

/// A piece's labels, on its own: sorted (the map its class ids index while it is encoded) and in
/// the order first seen in it.
struct PieceLabels {
  LabelMap map;
  std::vector<std::string> first_seen;
};

PieceLabels piece_labels(const TaskConfig& task, const std::vector<Example>& examples) {
  PieceLabels out;
  TokenIndex known;
  auto see = [&](std::string_view n) {
    known.insert(n);
    if (out.first_seen.size() < known.size()) out.first_seen.emplace_back(n);  // it was new
  };
  std::vector<std::string> scratch;
  for (const auto& e : examples) {
    if (task.type != "multilabel") {  // (the label as it is: label_names without a copy)
      see(e.label);
      continue;
    }
    label_names(task, e, scratch);
    for (auto& n : scratch) see(n);
  }
  out.map = LabelMap::from_labels(out.first_seen);
  return out;
}

/// Labels numbered in the order first seen, across the pieces of a split (taken in order).
struct SeenLabels {
  std::vector<std::string> names;
  std::unordered_map<std::string, int32_t> index;
  /// Adds a piece's labels; returns the map from the piece's class ids to first-seen ids.
  std::vector<int32_t> add(const PieceLabels& piece) {
    for (const auto& n : piece.first_seen)
      if (index.emplace(n, static_cast<int32_t>(names.size())).second) names.push_back(n);
    std::vector<int32_t> to_seen(static_cast<size_t>(piece.map.size()));
    for (int64_t i = 0; i < piece.map.size(); ++i) to_seen[static_cast<size_t>(i)] = index.at(piece.map.name(i));
    return to_seen;
  }
};

struct SplitJob {
  const Config& config;
  const EncodeShardsOptions& options;
  const Tokenizer& tokenizer;
  const Tokenizer* segmenter;  ///< mlm whole-word masking over jieba words, else null
  std::string split, path, dir;
};

/// Streams one split's file in pieces: each piece is parsed and encoded by `prepare(examples)` on
/// a thread of its own (up to options.threads pieces at once, while the next is read), and the
/// results are handed to `commit(result)` one at a time in the file's order, so what is written
/// (and the first error) does not depend on the thread count. Fills the counts.
template <typename Prepare, typename Commit>
EncodedSplit stream_split(const SplitJob& job, Prepare&& prepare, Commit&& commit) {
  using Result = decltype(prepare(std::declval<const std::vector<Example>&>()));
  struct Parsed {  // (the examples themselves are freed where they were made)
    int64_t samples = 0, skipped = 0;
    std::string first_skip;
    Result result;
  };
  auto parsed = [](ReadResult& read, Result result) {
    return Parsed{static_cast<int64_t>(read.examples.size()), read.skipped, std::move(read.first_skip),
                  std::move(result)};
  };
  // The first pieces are parsed here, in order, until the header and its columns are known; the
  // others where they are encoded (parsing is a good part of the work, and the examples then
  // stay on the thread that made them), except with one thread: this thread parses the next piece
  // while that one encodes. (Declared before `pending`, whose tasks read it until they end, also
  // when an error unwinds this.)
  PieceParser parser(job.path, reader_options(job.config.data, job.config.task));
  EncodedSplit r{job.split, job.dir, job.path};
  std::string first_skip;
  std::deque<std::future<Parsed>> pending;
  const auto most = static_cast<size_t>(std::max(1, job.options.threads));
  bool committing = false;  // (an error then is a piece's: the pieces after it are not drained)
  auto commit_first = [&] {
    committing = true;
    std::future<Parsed> first = std::move(pending.front());
    pending.pop_front();  // (before get(): a piece's error leaves the others pending, to be drained)
    Parsed done = first.get();
    if (done.skipped && r.skipped == 0) first_skip = done.first_skip;
    r.skipped += done.skipped;
    r.samples += done.samples;
    commit(done.result);
    committing = false;
  };
  auto each_piece = [&](RawPiece& raw) {
    throw_if_stop_requested();
    if (!parser.ready() || most == 1) {
      // Parsed before waiting for a free thread: with one, while the piece before it is encoded.
      auto read = std::make_shared<ReadResult>(parser.parse_in_order(raw));
      while (pending.size() >= most) commit_first();
      pending.push_back(std::async(std::launch::async, [&prepare, &parsed, read] {
        Result result = prepare(read->examples);
        return parsed(*read, std::move(result));
      }));
      return;
    }
    while (pending.size() >= most) commit_first();
    auto piece = std::make_shared<RawPiece>(std::move(raw));
    pending.push_back(std::async(std::launch::async, [&prepare, &parser, &parsed, piece] {
      ReadResult read = parser.parse(*piece);
      Result result = prepare(read.examples);
      return parsed(read, std::move(result));
    }));
  };
  try {
    read_raw_pieces(job.path, parser.format(), job.options.piece_bytes, each_piece);
  } catch (const DataError&) {
    // The reader's own error, or a piece parsed here: the pieces pending come before it, and a
    // bad row in them is reported first.
    if (!committing)
      while (!pending.empty()) commit_first();
    throw;
  }
  while (!pending.empty()) commit_first();
  if (r.samples == 0)
    throw DataError(job.path + ": no examples (the file is empty, has only blank lines, or every row was bad)");
  if (r.skipped)
    log::warn("[encode] {}: skipped {} bad row(s) (data.on_bad_row is \"skip\"); the first: {}", job.path, r.skipped,
              first_skip);
  r.source_bytes = static_cast<int64_t>(fs::file_size(job.path));
  return r;
}

EncodeOptions shard_encode_options(const SplitJob& job, const Vocabulary& vocab) {
  EncodeOptions o = encode_options(job.config.data, vocab, &job.config.task, job.segmenter);
  o.max_len = 0;  // shards keep every id; max_len, truncation and packing apply when batches are made
  o.windows = false;
  o.pack = false;
  o.threads = 1;  // each piece on one thread; stream_split encodes several pieces at once
  return o;
}

nlohmann::json split_manifest(const Config& config, const EncodedSplit& r, const LabelMap& labels) {
  nlohmann::json m = shard_identity(config);
  m["split"] = r.split;
  m["source_path"] = fs::absolute(r.source).lexically_normal().string();
  m["source_bytes"] = fs::file_size(r.source);
  m["source_modified"] = static_cast<int64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(fs::last_write_time(r.source).time_since_epoch()).count());
  m["skipped"] = r.skipped;
  TargetEncoder final_targets{TargetKind::value, nullptr, ",", 1};
  if (config.task.type != "regression") final_targets = make_task(config.task, labels)->target_encoder();
  m["targets"] = target_kind_name(final_targets.kind);
  m["positive"] = final_targets.positive;
  return m;
}

/// The training split: its vocabulary counted piece by piece (ids numbered as counted, then
/// rewritten to the vocabulary's), or the tokenizer's fixed one; its labels numbered as seen,
/// then sorted.
EncodedSplit encode_train(const SplitJob& job, Vocabulary& vocab, LabelMap& labels) {
  const auto start = std::chrono::steady_clock::now();  // reading through the synced rename
  const Config& config = job.config;
  const bool fixed = config.data.vocab.source == "tokenizer";
  if (fixed) vocab = Vocabulary::load_wordpiece(dict_of(config.data.tokenizer));
  const EncodeOptions enc = shard_encode_options(job, fixed ? vocab : Vocabulary());
  const TargetKind kind = stored_kind(config.task);
  const bool classes = kind != TargetKind::value && kind != TargetKind::none;
  ShardWriter writer(job.dir, enc.word_flags && enc.cls_id >= 0, enc.pairs);  // (flags come with special tokens)
  TokenCounter counter;
  SeenLabels seen;
  struct Piece {
    PieceLabels labels;
    TokenCounter tokens;  ///< the piece's own (not fixed): its ids are mapped to the split's counter's
    TextDataset part;
  };
  auto prepare = [&](const std::vector<Example>& examples) {
    Piece p;
    if (classes) p.labels = piece_labels(config.task, examples);
    const TargetEncoder targets{kind, classes ? &p.labels.map : nullptr, config.task.label_separator, 1};
    if (fixed)
      p.part = encode_examples(examples, job.path, job.tokenizer, vocab, &targets, enc);
    else
      std::tie(p.tokens, p.part) = count_and_encode(examples, job.path, job.tokenizer, &targets, enc);
    return p;
  };
  auto commit = [&](Piece& p) {
    const std::vector<int32_t> to_seen = classes ? seen.add(p.labels) : std::vector<int32_t>{};
    if (!fixed) {
      // (A text token "<unk>" or "<pad>" is counted like any other, and, as in the in-memory
      // path, left out of the vocabulary: it becomes the unknown id.)
      std::vector<int32_t> to_counter(p.tokens.size());
      for (size_t id = 0; id < to_counter.size(); ++id)
        to_counter[id] =
            counter.add(p.tokens.token(static_cast<int32_t>(id)), p.tokens.count(static_cast<int32_t>(id)));
      p.part.map_ids(to_counter);
    }
    writer.append(p.part, to_seen);
  };
  EncodedSplit r = stream_split(job, prepare, commit);
  std::vector<int32_t> id_table, class_table;
  if (!fixed) {
    vocab = Vocabulary::build(counter, config.data.vocab.min_freq, config.data.vocab.max_size);
    id_table.resize(counter.size());
    for (size_t g = 0; g < counter.size(); ++g) id_table[g] = vocab.id(counter.token(static_cast<int32_t>(g)));
  }
  if (classes) {
    labels = LabelMap::from_labels(seen.names);
    for (const auto& n : seen.names) class_table.push_back(static_cast<int32_t>(labels.find(n)));
  }
  writer.remap(id_table, class_table, job.options.threads, job.options.remap_block);
  r.tokens = writer.tokens();
  writer.finish(split_manifest(config, r, labels), vocab, classes ? &labels : nullptr, job.options.threads);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

/// valid or test: encoded with the training split's vocabulary and labels.
EncodedSplit encode_other(const SplitJob& job, const Vocabulary& vocab, const LabelMap& labels) {
  const auto start = std::chrono::steady_clock::now();  // reading through the synced rename
  const Config& config = job.config;
  const EncodeOptions enc = shard_encode_options(job, vocab);
  const TargetKind kind = stored_kind(config.task);
  const bool classes = kind != TargetKind::value && kind != TargetKind::none;
  const TargetEncoder targets{kind, classes ? &labels : nullptr, config.task.label_separator, 1};
  ShardWriter writer(job.dir, enc.word_flags && enc.cls_id >= 0, enc.pairs);
  EncodedSplit r = stream_split(
      job,
      [&](const std::vector<Example>& examples) {
        return encode_examples(examples, job.path, job.tokenizer, vocab, &targets, enc);
      },
      [&](TextDataset& part) { writer.append(part); });
  r.tokens = writer.tokens();
  writer.finish(split_manifest(config, r, labels), vocab, classes ? &labels : nullptr, job.options.threads);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

const std::string& split_path(const Config& config, const std::string& split) {
  if (split == "train") return config.data.train;
  if (split == "valid") return config.data.valid;
  if (split == "test") return config.data.test;
  throw ConfigError("--split: unknown split '" + split + "'; use train, valid or test");
}

}  // namespace

nlohmann::json shard_identity(const Config& config) {
  nlohmann::json tok = to_json(config)["data"]["tokenizer"];
  const std::string dict = dict_of(config.data.tokenizer);
  tok.erase("dict");
  if (!dict.empty()) {
    if (!fs::is_regular_file(dict)) throw ConfigError("config key 'data.tokenizer.dict': " + dict + " does not exist");
    tok["dict_digest"] = file_digest(dict);
  }
  const auto& v = config.data.vocab;
  nlohmann::json task = {{"type", config.task.type}, {"label_separator", config.task.label_separator}};
  if (config.task.type == "mlm" && config.task.whole_word) task["word_segmenter"] = config.task.word_segmenter;
  return nlohmann::json{{"tokenizer", tok},
                        {"special_tokens", config.data.special_tokens},
                        {"vocab", {{"source", v.source}, {"min_freq", v.min_freq}, {"max_size", v.max_size}}},
                        {"task", task}};
}

void check_shard_matches(const std::string& dir, const nlohmann::json& manifest, const Config& config,
                         const std::string& key) {
  refuse_unshardable(config, "config key '" + key + "' names a shard (" + dir + "); name the raw file instead");
  const nlohmann::json mine = shard_identity(config);
  auto differ = [&](const std::string& what, const nlohmann::json& ours, const nlohmann::json& theirs) {
    throw ConfigError(fmt::format(
        "config key '{}': this config's {} is {} but shard {} was encoded with {}; encode the data again with "
        "this config (ltk-data encode --config ... --out DIR) or set {} as the shard has it",
        key, what, ours.dump(), dir, theirs.dump(), what));
  };
  for (auto it = mine["tokenizer"].begin(); it != mine["tokenizer"].end(); ++it) {
    const nlohmann::json theirs = manifest["tokenizer"].value(it.key(), nlohmann::json());
    if (theirs != it.value()) differ("data.tokenizer." + it.key(), it.value(), theirs);
  }
  if (manifest.value("special_tokens", false) != config.data.special_tokens)
    differ("data.special_tokens", config.data.special_tokens, manifest.value("special_tokens", false));
  const bool pairs = !config.data.text_pair_column.empty() || !config.data.text_pair_field.empty();
  if (manifest.value("pairs", false) != pairs)
    throw ConfigError(fmt::format(
        "config key '{}': shard {} holds {} where this config reads {} (data.text_pair_column, "
        "data.text_pair_field); encode the data again with this config (ltk-data encode --config ... --out DIR)",
        key, dir, pairs ? "single texts" : "sentence pairs", pairs ? "sentence pairs" : "single texts"));
  if (key == "data.train")
    for (const char* k : {"source", "min_freq", "max_size"})
      if (manifest["vocab"].value(k, nlohmann::json()) != mine["vocab"][k])
        differ(std::string("data.vocab.") + k, mine["vocab"][k], manifest["vocab"].value(k, nlohmann::json()));
  const nlohmann::json task = manifest.value("task", nlohmann::json::object());
  // multiclass and binary read the same class ids; the run's task makes the targets
  const bool theirs_regression = task.value("type", "") == "regression",
             ours_regression = config.task.type == "regression";
  if (theirs_regression != ours_regression ||
      (config.task.type == "multilabel") != (task.value("type", "") == "multilabel") ||
      (config.task.type == "mlm") != (task.value("type", "") == "mlm"))
    differ("task.type", config.task.type, task.value("type", nlohmann::json()));
  // Whole-word masking reads the words the shard marked (task.word_segmenter's).
  if (config.task.type == "mlm" && config.task.whole_word) {
    if (!manifest.value("word_flags", false)) differ("task.whole_word", true, false);
    if (task.value("word_segmenter", "") != config.task.word_segmenter)
      differ("task.word_segmenter", config.task.word_segmenter, task.value("word_segmenter", nlohmann::json()));
  }
  if (config.task.type == "multilabel" && task.value("label_separator", "") != config.task.label_separator)
    differ("task.label_separator", config.task.label_separator, task.value("label_separator", nlohmann::json()));
}

TextDataset open_config_shard(const std::string& dir, const Config& config, const std::string& key,
                              const Vocabulary* vocab, const LabelMap* labels, const TargetEncoder& targets) {
  const nlohmann::json m = read_shard_manifest(dir);
  check_shard_matches(dir, m, config, key);
  if (vocab && m["vocab"].value("digest", "") != vocab_digest(*vocab))
    throw ConfigError(fmt::format(
        "config key '{}': shard {} holds the ids of another vocabulary ({} tokens, digest {}) than this run's ({} "
        "tokens, digest {}); encode every split with the training split (ltk-data encode --config ... encodes them "
        "together). A run fine-tuned from another run (model.init_from) keeps that run's vocabulary, which ltk-data "
        "encode does not take yet: train it from the raw files",
        key, dir, m["vocab"].value("size", int64_t{0}), m["vocab"].value("digest", ""), vocab->size(),
        vocab_digest(*vocab)));
  if (labels && labels->size() > 0 && m["labels"].value("digest", "") != labels_digest(*labels)) {
    const LabelMap theirs = LabelMap::load((fs::path(dir) / "labels.txt").string());
    throw ConfigError(
        fmt::format("config key '{}': shard {} has the labels {} where this run has {}; encode the "
                    "splits together (ltk-data encode --config ...)",
                    key, dir, quoted_list(theirs.names()), quoted_list(labels->names())));
  }
  ShardReadOptions o;
  o.max_len = config.data.max_len;
  o.truncation = config.data.truncation;
  o.pack = config.task.type == "mlm" && config.task.pack;
  o.word_flags = config.task.type == "mlm" && config.task.whole_word;
  o.windows = config.data.long_text == "window";
  o.window_overlap = config.data.window_overlap;
  o.window_pool = config.data.window_pool;
  TextDataset data = open_shard(dir, o);
  // Its class ids were checked against its own label count; the run's targets must be sized so.
  const int64_t classes = targets.labels ? targets.labels->size() : 0;
  if (targets.kind != TargetKind::value && targets.kind != TargetKind::none && data.num_classes() != classes)
    throw DataError(
        fmt::format("{}/manifest.json: {} labels where this run has {}; the shard is damaged: encode it "
                    "again (ltk-data encode)",
                    dir, data.num_classes(), classes));
  if (vocab && data.pad_id() != vocab->pad_id())
    throw DataError(
        fmt::format("{}/manifest.json: pad id {} where the vocabulary's is {}; the shard is damaged: "
                    "encode it again (ltk-data encode)",
                    dir, data.pad_id(), vocab->pad_id()));
  data.set_source(data.source(), targets.kind, classes, targets.positive);
  log::info("[data] {}: shard {} ({} {}, {} tokens as stored), mapped", key, dir, data.size(),
            o.pack      ? "packed samples"
            : o.windows ? "windows"
                        : "texts",
            data.total_tokens());
  return data;
}

std::vector<EncodedSplit> encode_shards(const Config& config, const EncodeShardsOptions& options) {
  refuse_unshardable(config, "shards cannot be encoded for this config");
  const TokenizerConfig& tok = config.data.tokenizer;
  std::vector<std::string> splits;
  for (const auto& s : options.splits) split_path(config, s);  // an unknown name is an error
  for (const char* s : {"train", "valid", "test"})  // train first: its vocabulary and labels encode the others
    if (options.splits.empty() ? !split_path(config, s).empty()
                               : std::count(options.splits.begin(), options.splits.end(), s) > 0)
      splits.emplace_back(s);
  auto tokenizer = make_run_tokenizer(tok, config.model);
  auto segmenter = word_segmenter(config.task);
  Vocabulary vocab;
  LabelMap labels;
  bool have_vocab = false;
  std::vector<EncodedSplit> done;
  for (const auto& split : splits) {
    const std::string& path = split_path(config, split);
    if (path.empty()) throw ConfigError("--split " + split + ": config key 'data." + split + "' names no file");
    if (is_shard(path)) throw ConfigError("config key 'data." + split + "': " + path + " is a shard already");
    const std::string dir = (fs::path(options.out) / split).string();
    if (fs::exists(dir) && !is_shard(dir))
      throw ConfigError(dir + " exists and is not a shard; give --out a directory for the shards alone");
    if (fs::exists(dir) && !options.overwrite) throw ConfigError(dir + " exists; --overwrite replaces it");
    SplitJob job{config, options, *tokenizer, segmenter.get(), split, path, dir};
    log::info("[encode] {} -> {}", path, dir);
    if (split == "train") {
      done.push_back(encode_train(job, vocab, labels));
      have_vocab = true;
      continue;
    }
    if (!have_vocab) {  // valid or test alone: the training shard's vocabulary and labels
      const std::string train_dir = (fs::path(options.out) / "train").string();
      if (!is_shard(train_dir))
        throw ConfigError(
            fmt::format("--split {}: {} holds no training shard; encode the train split first (its "
                        "vocabulary and labels encode the others)",
                        split, train_dir));
      check_shard_matches(train_dir, read_shard_manifest(train_dir), config, "data.train");
      const std::string vocab_file = (fs::path(train_dir) / "vocab.txt").string();
      vocab = config.data.vocab.source == "tokenizer" ? Vocabulary::load_wordpiece(vocab_file)
                                                      : Vocabulary::load(vocab_file);
      if (fs::exists(fs::path(train_dir) / "labels.txt"))
        labels = LabelMap::load((fs::path(train_dir) / "labels.txt").string());
      have_vocab = true;
    }
    done.push_back(encode_other(job, vocab, labels));
  }
  return done;
}

}  // namespace ltk
