// The first phase of a training run: the data, read and encoded once (phases.h).
#include <fmt/format.h>

#include <filesystem>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/stop.h"
#include "ltk/core/strings.h"
#include "ltk/data/formats.h"
#include "ltk/data/jieba.h"
#include "ltk/data/ngrams.h"
#include "ltk/data/sentencepiece.h"
#include "ltk/data/shards.h"
#include "ltk/data/wordpiece.h"
#include "ltk/dist/dist.h"
#include "ltk/models/linear.h"
#include "ltk/train/corpus_shards.h"
#include "ltk/train/phases.h"

namespace ltk {

namespace {

struct Split {
  std::vector<Example> examples;
  std::string path;
};

Split read_split(const std::string& path, const char* key, const Config& config) {
  try {
    auto r = read_examples(path, reader_options(config.data, config.task));
    if (r.skipped)
      log::warn("[data] {}: skipped {} bad row(s) (data.on_bad_row is \"skip\"); the first: {}", path, r.skipped,
                r.first_skip);
    return Split{std::move(r.examples), path};
  } catch (const DataError& e) {
    throw DataError(std::string(e.what()) + " (config key 'data." + key + "')");
  }
}

void log_dataset(const char* name, const TextDataset& d) {
  int64_t truncated = 0;
  for (int64_t i = 0; i < d.size(); ++i) truncated += d.truncated(i);
  log::info("[data] {}: {} samples, {} tokens ({:.1f} per sample), {} truncated, {} ({})", name, d.size(),
            d.total_tokens(), d.size() ? static_cast<double>(d.total_tokens()) / static_cast<double>(d.size()) : 0.0,
            truncated,
            d.mapped() ? std::string("mapped from a shard")
                       : human_bytes(static_cast<double>(d.memory_bytes())) + " in memory",
            d.source());
  if (d.windowed()) log::info("[data] {}: {}", name, d.windows_summary());
}

// init_from names a run directory (its best checkpoint and vocabulary are used) or a weights file.
std::string init_from_run_dir(const std::string& init_from) {
  if (init_from.empty() || !std::filesystem::is_directory(init_from)) return "";
  if (std::filesystem::exists(init_from + "/deploy.json"))
    throw ConfigError("model.init_from " + init_from +
                      " is a deploy artifact (ltk-eval --quantize: bf16 or int8 "
                      "weights, for inference); start from the run it was made from (its deploy.json names it)");
  return init_from;
}

/// The tokenizer config the run uses: its file (dictionary, vocabulary, sentencepiece model) is
/// kept in the run directory, copied or trained there on a fresh run and reused from there on a
/// resumed or fine-tuned one.
TokenizerConfig run_tokenizer(TokenizerConfig tok, const RunDirectory& run, const Split& train,
                              const std::string& init_run, bool resume, int threads) {
  const std::string resource = tokenizer_resource(tok.type);
  if (resource.empty()) return tok;
  namespace fs = std::filesystem;
  const std::string kept = run.file(resource);
  std::string source;
  if (resume) {
    if (fs::exists(kept)) tok.dict = kept;  // a run made before ltk kept tokenizer files: as configured
    return tok;
  }
  const std::string inherited = init_run.empty() ? "" : RunDirectory::open(init_run).file(resource);
  if (!inherited.empty() && fs::exists(inherited)) {
    source = inherited;
  } else if (tok.type == "wordpiece" && tok.dict.empty()) {
    WordPieceTrainOptions o;
    o.size = tok.vocab_size;
    o.lowercase = tok.lowercase;
    o.strip_accents = tok.strip_accents;
    o.chinese_chars = tok.tokenize_chinese_chars;
    std::vector<std::string> texts;
    for (const auto& e : train.examples) texts.push_back(e.text);
    auto pieces = train_wordpiece(texts, o);
    log::info("[data] trained a WordPiece vocabulary of {} entries on {} texts", pieces.size(), texts.size());
    std::string out;
    for (const auto& p : pieces) out += p + "\n";
    write_file_atomic(kept, out);
    tok.dict = kept;
    return tok;
  } else if (tok.type == "sentencepiece" && tok.dict.empty()) {
    log::info("[data] training a sentencepiece {} model of {} pieces on {} texts", tok.model_type, tok.vocab_size,
              train.examples.size());
    train_sentencepiece(train.examples, tok, kept, threads);
    tok.dict = kept;
    return tok;
  } else {
    source = tok.dict.empty() && tok.type == "jieba" ? kDefaultJiebaDict : tok.dict;
  }
  if (!fs::is_regular_file(source))
    throw ConfigError("config key 'data.tokenizer.dict': " + source + " does not exist");
  std::error_code ec;
  fs::copy_file(source, kept, fs::copy_options::overwrite_existing, ec);
  if (ec) throw Error("cannot copy " + source + " to " + kept + ": " + ec.message());
  tok.dict = kept;
  return tok;
}

// A digest of what every rank must agree on before training: data, vocabulary, labels.
std::string data_fingerprint(const Vocabulary& vocab, const LabelMap& labels, const TextDataset& train,
                             const TextDataset* valid) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  for (int32_t i = 0; i < static_cast<int32_t>(vocab.size()); ++i) mix(vocab.token(i));
  for (int64_t i = 0; i < labels.size(); ++i) mix(labels.name(i));
  return fmt::format("vocabulary {} tokens, {} labels, train {} samples / {} tokens, valid {} samples, digest {:016x}",
                     vocab.size(), labels.size(), train.size(), train.total_tokens(), valid ? valid->size() : 0, h);
}

/// The training split encoded, with the vocabulary it is encoded with: a pretrained tokenizer's,
/// the resumed or fine-tuned run's, the linear model's n-gram features, or one counted from it.
/// `options` tokenising on the run's threads.
EncodeOptions on_threads(EncodeOptions options, const RunContext& ctx) {
  options.threads = ctx.threads;
  return options;
}

void encode_train(const RunContext& ctx, Split& train, const Tokenizer& tokenizer, const std::string& tokenizer_dict,
                  const TargetEncoder& targets, const Tokenizer* segmenter, PreparedData& out) {
  const Config& config = ctx.config;
  const bool resume = ctx.options.resume;
  if (config.data.vocab.source == "tokenizer") {
    // A pretrained model's ids: its WordPiece vocab.txt as it is (kept in the run as vocab.txt).
    out.vocab = Vocabulary::load_wordpiece(resume ? ctx.src.vocab_path() : tokenizer_dict);
    out.train = encode_examples(train.examples, train.path, tokenizer, out.vocab, &targets,
                                on_threads(encode_options(config.data, out.vocab, &config.task, segmenter), ctx));
  } else if (resume || !out.init_run.empty()) {
    out.vocab = Vocabulary::load(resume ? ctx.src.vocab_path() : RunDirectory::open(out.init_run).vocab_path());
    if (!resume) log::info("[data] vocabulary of {} reused ({} tokens)", out.init_run, out.vocab.size());
    out.train = encode_examples(train.examples, train.path, tokenizer, out.vocab, &targets,
                                on_threads(encode_options(config.data, out.vocab), ctx));
  } else if (auto features = linear_features(config.model)) {
    // The linear model's features: n-gram terms chosen by document frequency (the counts are
    // document frequencies, the idf's).
    std::tie(out.vocab, out.train) =
        build_features_and_encode(train.examples, train.path, tokenizer, features->selection, &targets,
                                  on_threads(encode_options(config.data, Vocabulary()), ctx));
    if (out.vocab.size() <= Vocabulary::kFirstWordId)
      throw ConfigError(fmt::format("config key 'model.min_df': no n-gram of {} is in {} or more texts; lower it",
                                    train.path, features->selection.min_df));
  } else {
    std::tie(out.vocab, out.train) = build_vocab_and_encode(
        train.examples, train.path, tokenizer, config.data.vocab.min_freq, config.data.vocab.max_size, &targets,
        on_threads(encode_options(config.data, Vocabulary()), ctx));
  }
}

/// The training split read from a shard: the vocabulary and labels are the shard's (a resumed or
/// fine-tuned run's own, which the shard must match).
void open_train_shard(const RunContext& ctx, const std::string& tokenizer_dict, const TargetEncoder& targets,
                      PreparedData& out) {
  const Config& config = ctx.config;
  const bool resume = ctx.options.resume;
  namespace fs = std::filesystem;
  const bool fixed = config.data.vocab.source == "tokenizer";
  std::string vocab_file = (fs::path(config.data.train) / "vocab.txt").string();
  if (resume)
    vocab_file = ctx.src.vocab_path();
  else if (fixed)
    vocab_file = tokenizer_dict;
  else if (!out.init_run.empty())
    vocab_file = RunDirectory::open(out.init_run).vocab_path();
  out.vocab = fixed ? Vocabulary::load_wordpiece(vocab_file) : Vocabulary::load(vocab_file);
  out.train = open_config_shard(config.data.train, config, "data.train", &out.vocab,
                                task_has_labels(config.task.type) ? &out.labels : nullptr, targets);
}

/// In a data-parallel job every rank read and encoded the data itself: they must have built the
/// same vocabulary and labels.
void agree_on_data(const RunContext& ctx, const PreparedData& data) {
  const auto& group = ctx.group;
  if (!group) return;
  if (data.valid && data.valid->size() < group->world())
    throw ConfigError(fmt::format("data.valid has {} sample(s), fewer than the {} processes that validate it",
                                  data.valid->size(), group->world()));
  const std::string mine = data_fingerprint(data.vocab, data.labels, data.train, data.valid ? &*data.valid : nullptr);
  auto all = group->all_gather_string("data", mine);
  for (int r = 1; r < group->world(); ++r)
    if (all[static_cast<size_t>(r)] != all[0])
      throw dist::DistError(
          fmt::format("rank {} read other data than rank 0 ({} against {}): every host must read the "
                      "same data files",
                      r, all[static_cast<size_t>(r)], all[0]));
  log::info("[dist] {} processes agree on the data ({}); each takes {} of every {} samples per step", group->world(),
            mine, ctx.config.trainer.batch_size, ctx.config.trainer.batch_size * group->world());
}

}  // namespace

PreparedData prepare_data(const RunContext& ctx) {
  const Config& config = ctx.config;
  const bool resume = ctx.options.resume;
  PreparedData out;
  // Data: read, then the vocabulary and labels from the training split only (a shard has them).
  const bool sharded = is_shard(config.data.train);
  if (sharded) check_shard_matches(config.data.train, read_shard_manifest(config.data.train), config, "data.train");
  Split train = sharded ? Split{{}, config.data.train} : read_split(config.data.train, "train", config);
  throw_if_stop_requested();  // Ctrl-C while the data loads stops here, not after the first step
  const bool has_labels = task_has_labels(config.task.type);
  // A resumed run, and a run fine-tuned from another run, reuse that run's tokenizer and
  // vocabulary: the embedding rows must keep meaning the same tokens.
  out.init_run = init_from_run_dir(config.model.init_from);
  const TokenizerConfig run_tok =
      run_tokenizer(config.data.tokenizer, resume ? ctx.src : ctx.run, train, out.init_run, resume, ctx.threads);
  auto tokenizer = make_run_tokenizer(run_tok, config.model);
  if (has_labels)
    out.labels = resume    ? LabelMap::load(ctx.src.labels_path())
                 : sharded ? LabelMap::load((std::filesystem::path(config.data.train) / "labels.txt").string())
                           : labels_from_examples(config.task, train.examples);
  // The task is built twice: first to learn how labels become targets, then with the class
  // weights that need the encoded training split. (The encoder points into its task's labels.)
  const auto encoder_task = make_task(config.task, out.labels);
  const TargetEncoder targets = encoder_task->target_encoder();
  auto segmenter = word_segmenter(config.task);  // mlm whole-word masking over jieba words
  if (sharded)
    open_train_shard(ctx, run_tok.dict, targets, out);
  else
    encode_train(ctx, train, *tokenizer, run_tok.dict, targets, segmenter.get(), out);
  const EncodeOptions enc = on_threads(encode_options(config.data, out.vocab, &config.task, segmenter.get()), ctx);
  if (!resume) {  // a resumed run keeps its own files
    out.vocab.save(ctx.run.vocab_path());
    if (has_labels) out.labels.save(ctx.run.labels_path());
  }
  log::info("[data] vocabulary {} tokens (min_freq {}, max_size {}), {} labels", out.vocab.size(),
            config.data.vocab.min_freq, config.data.vocab.max_size, out.labels.size());
  train.examples.clear();
  train.examples.shrink_to_fit();
  log_dataset("train", out.train);
  throw_if_stop_requested();
  if (config.trainer.sampler == "balanced" && !has_labels)
    throw ConfigError("config key 'trainer.sampler': \"balanced\" needs classes; a regression task has none");
  std::vector<double> weights = resolve_class_weights(config.task, out.labels, out.train);
  out.task = make_task(config.task, out.labels, weights);
  out.class_weights = weights;
  if (out.vocab.fixed()) out.task->set_vocabulary(out.vocab);
  write_file_atomic(ctx.run.file("task.json"), nlohmann::json{{"class_weights", weights}}.dump() + "\n");
  if (!weights.empty()) log::info("[task] class weights {}", nlohmann::json(weights).dump());
  for (auto [split, path, set] : {std::tuple<const char*, const std::string*, std::optional<TextDataset>*>{
                                      "valid", &config.data.valid, &out.valid},
                                  {"test", &config.data.test, &out.test}}) {
    if (path->empty()) continue;
    if (is_shard(*path)) {
      *set = open_config_shard(*path, config, std::string("data.") + split, &out.vocab,
                               has_labels ? &out.labels : nullptr, targets);
      log_dataset(split, **set);
      continue;
    }
    *set = encode_examples(read_split(*path, split, config).examples, *path, *tokenizer, out.vocab, &targets, enc);
    log_dataset(split, **set);
  }
  throw_if_stop_requested();
  agree_on_data(ctx, out);
  return out;
}

}  // namespace ltk
