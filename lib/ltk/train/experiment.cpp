// run_training: from a validated Config to a finished run directory.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/cuda.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <unistd.h>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/blas.h"
#include "ltk/core/runtime.h"
#include "ltk/core/stop.h"
#include "ltk/core/strings.h"
#include "ltk/data/formats.h"
#include "ltk/data/jieba.h"
#include "ltk/data/sentencepiece.h"
#include "ltk/data/wordpiece.h"
#include "ltk/dist/dist.h"
#include "ltk/eval/evaluator.h"
#include "ltk/eval/report.h"
#include "ltk/io/checkpoint.h"
#include "ltk/io/hf.h"
#include "ltk/models/linear.h"
#include "ltk/models/registry.h"
#include "ltk/train/trainer.h"

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
  log::info("[data] {}: {} samples, {} tokens ({:.1f} per sample), {} truncated, {} in memory ({})", name, d.size(),
            d.total_tokens(), d.size() ? static_cast<double>(d.total_tokens()) / static_cast<double>(d.size()) : 0.0,
            truncated, human_bytes(static_cast<double>(d.memory_bytes())), d.source());
}

// init_from names a run directory (its best checkpoint and vocabulary are used) or a weights file.
std::string init_from_run_dir(const std::string& init_from) {
  if (init_from.empty() || !std::filesystem::is_directory(init_from)) return "";
  return init_from;
}

void freeze_parameters(torch::nn::Module& model, const std::vector<std::string>& prefixes) {
  auto named = model.named_parameters();
  for (const auto& prefix : prefixes) {
    int64_t matched = 0;
    std::vector<std::string> names;
    for (auto& p : named) {
      names.push_back(p.key());
      if (p.key().rfind(prefix, 0) == 0) {
        p.value().set_requires_grad(false);
        ++matched;
      }
    }
    std::vector<std::string> candidates = names;  // whole names and their module prefixes
    for (const auto& n : names) candidates.push_back(n.substr(0, n.rfind('.')));
    if (!matched)
      throw ConfigError("config key 'model.freeze': '" + prefix + "' matches no parameter" + did_you_mean(prefix, candidates) +
                        "; parameters: " + join(names, ", "));
    log::info("[model] frozen: {} ({} tensor(s))", prefix, matched);
  }
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

}  // namespace

namespace {

// Refuses, before it allocates, a run that cannot fit in this machine's memory (a 10^7-token
// vocabulary, texts of 10^6 tokens in a batch): an error naming the sizes and what to lower,
// rather than an out-of-memory kill mid-run. A lower bound: the parameters, their gradients and
// the optimiser's states, and the largest batch's token embeddings with their gradient (bow and
// linear pool as they look up, so they have none); a model's other activations come on top.
// Without `model`, before it is built: its embedding table and what it brings.
void check_memory(const Config& config, int64_t vocab_size, const TextDataset& train, const TextModel* model) {
  if (!config.trainer.memory_check) return;
  const int64_t available = available_memory_bytes();
  if (available < 0) return;
  const nlohmann::json& o = config.model.options;
  const double width = static_cast<double>(o.value("embed_dim", o.value("hidden_size", int64_t{0})));
  const double elem = config.trainer.dtype == "float64" ? 8 : 4;
  const std::string& opt = config.optimizer.type;
  // The optimiser's states and the one full-size temporary its step makes (Adam's denominator,
  // Adagrad's square root): measured, a 10^7-token bow under Adam without it was killed for memory.
  const double states = opt == "adam" || opt == "adamw" ? 3 : opt == "adagrad" ? 2 : config.optimizer.momentum > 0 ? 1 : 0;
  const double grads = o.value("sparse", false) ? 0 : 1;
  double params = static_cast<double>(vocab_size) * width * elem, trainable = params;
  if (model) {
    params = trainable = 0;
    for (const auto& p : model->parameters()) {
      params += static_cast<double>(p.numel()) * elem;
      if (p.requires_grad()) trainable += static_cast<double>(p.numel()) * elem;
    }
  }
  int64_t longest = 0;
  for (int64_t i = 0; i < train.size(); ++i) longest = std::max(longest, train.length(i));
  double tokens = static_cast<double>(std::min<int64_t>(config.trainer.batch_size, train.size())) * static_cast<double>(longest);
  if (config.trainer.max_tokens > 0)
    tokens = std::max(static_cast<double>(longest), std::min(tokens, static_cast<double>(config.trainer.max_tokens)));
  const bool per_token = config.model.type != "bow" && config.model.type != "linear";
  const double activations = per_token ? 2 * tokens * width * elem : 0;
  // Once the model is built its parameters are already taken from what is available.
  const double need = (model ? 0 : params) + trainable * (grads + states) + activations;
  if (need <= static_cast<double>(available)) return;
  auto gib = [](double b) { return fmt::format("{:.1f} GiB", b / (1024.0 * 1024 * 1024)); };
  throw ConfigError(fmt::format(
      "this run needs at least {} of memory and {} is available: parameters {} ({} tokens in the vocabulary x width {:.0f}"
      "{}), their gradients and {}'s state {}, the token embeddings of the largest batch ({:.0f} tokens) {}. Lower "
      "data.vocab.max_size or raise data.vocab.min_freq, or lower data.max_len (the longest text has {} tokens), "
      "trainer.batch_size or trainer.max_tokens, or the model's width; trainer.memory_check false skips this check",
      gib(need), gib(static_cast<double>(available)), gib(params), vocab_size, width, model ? ", as built" : "", opt,
      gib(trainable * (grads + states)), tokens, gib(activations), longest));
}

// What run_training is doing, for the message when a stop request interrupts it.
enum class Phase { data, training, test };

/// The baseline of a run as a comparison table: the figures of `model` and `baseline` on one
/// split, and their difference.
nlohmann::json baseline_comparison(const std::string& model_type, const EvalReport& model, const std::string& dir,
                                   const EvalReport& baseline) {
  nlohmann::json rows = nlohmann::json::array();
  const nlohmann::json headline = model.headline();  // not a temporary in the range: it must outlive the loop
  for (const auto& [k, v] : headline.items()) {
    // The losses differ (the baseline's is the squared hinge): only the task's figures compare.
    if (k == "samples" || k == "loss" || !baseline.metrics.contains(k)) continue;
    const double a = v.get<double>(), b = baseline.metrics.at(k).get<double>();
    rows.push_back({{"metric", k}, {"model", a}, {"baseline", b}, {"difference", a - b},
                    {"higher_is_better", Task::higher_is_better(k)}});
  }
  return {{"model", model_type}, {"baseline", "tf-idf linear"}, {"run", dir}, {"rows", rows}};
}

/// What rank > 0 of a distributed job writes (its vocabulary, tokenizer files, log) goes to a
/// directory of its own, removed at the end: the run directory is rank 0's.
struct ScratchRun {
  std::string path;
  ~ScratchRun() {
    if (!path.empty()) remove_tree(path);
  }
};

// One process of a job of `local_world` on this host: 0 threads means its share of the cores.
int64_t threads_of(const Config& config, const dist::Group* group) {
  if (config.threads != 0 || !group) return config.threads;
  int64_t local = group->world();
  if (const char* v = std::getenv("LOCAL_WORLD_SIZE")) local = std::max<int64_t>(1, std::atoll(v));
  return std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()) / local);
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

TrainSummary run_training_phases(const Config& config, bool overwrite, bool resume, bool with_baseline, Phase& phase,
                                 std::shared_ptr<dist::Group> group = nullptr, int64_t until_epoch = 0) {
  const int rank = group ? group->rank() : 0;
  log::set_level(log::parse_level(config.log_level));
  if (rank > 0 && config.log_level != "debug") log::set_level(log::Level::warn);  // rank 0 tells the story
  // Everything that can fail on the config is checked before the run directory is touched.
  torch::Device device = resolve_device(config.device);
  if (group && device.is_cuda() && !device.has_index() && torch::cuda::device_count() > 0)  // one GPU a local rank
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(group->local_rank() % torch::cuda::device_count()));
  int threads = apply_threads(threads_of(config, group.get()));
  seed_everything(config.seed);
  for (auto [key, path] : {std::pair<const char*, const std::string*>{"data.train", &config.data.train},
                           {"data.valid", &config.data.valid},
                           {"data.test", &config.data.test}})
    if (!path->empty() && !std::filesystem::is_regular_file(*path))
      throw DataError("config key '" + std::string(key) + "': " + *path +
                      " does not exist (run ./scripts/data.sh to make the corpora)");

  ScratchRun scratch;
  if (rank > 0)
    scratch.path = (std::filesystem::temp_directory_path() / fmt::format("ltk-rank{}-{}", rank, getpid())).string();
  // On a resume every rank reads the run's files (a filesystem all hosts see); rank > 0 writes
  // only into its scratch directory.
  RunDirectory run = rank > 0   ? RunDirectory::create(scratch.path, true)
                     : resume ? RunDirectory::open(config.output_dir)
                              : RunDirectory::create(config.output_dir, overwrite);
  std::optional<RunDirectory> source_dir;
  if (rank > 0 && resume) source_dir = RunDirectory::open(config.output_dir);
  const RunDirectory& src = source_dir ? *source_dir : run;
  run.lock();  // one ltk-train per run directory
  if (rank == 0) log::set_file(run.log_path());
  struct CloseLog {
    ~CloseLog() { log::close_file(); }
  } close_log;
  write_file_atomic(run.config_path(), to_json(config).dump(2) + "\n");

  log::info("[config] {} -> {} (model {}, task {}, optimizer {} lr {}, {} epochs, batch {})", config.name,
            config.output_dir, config.model.type, config.task.type, config.optimizer.type, config.optimizer.lr,
            config.trainer.epochs, config.trainer.batch_size);
  log::info("[runtime] device {}, {} thread(s), BLAS: {}", device.str(), threads, describe_blas());
  if (blas_is_reference())
    log::warn("[runtime] the reference BLAS is slow; install an optimised one (scripts/setup.sh installs "
              "libopenblas0-openmp)");

  // Data: read, then the vocabulary and labels from the training split only.
  Split train = read_split(config.data.train, "train", config);
  throw_if_stop_requested();  // Ctrl-C while the data loads stops here, not after the first step
  const bool has_labels = task_has_labels(config.task.type);
  // A resumed run, and a run fine-tuned from another run, reuse that run's tokenizer and
  // vocabulary: the embedding rows must keep meaning the same tokens.
  std::string init_run = init_from_run_dir(config.model.init_from);
  const TokenizerConfig run_tok = run_tokenizer(config.data.tokenizer, resume ? src : run, train, init_run, resume, threads);
  const std::string tokenizer_dict = run_tok.dict;
  auto tokenizer = make_run_tokenizer(run_tok, config.model);
  LabelMap labels;
  if (has_labels) labels = resume ? LabelMap::load(src.labels_path()) : labels_from_examples(config.task, train.examples);
  // The task is built twice: first to learn how labels become targets, then with the class
  // weights that need the encoded training split.
  auto encoder_task = make_task(config.task, labels);
  TargetEncoder targets = encoder_task->target_encoder();
  Vocabulary vocab;
  TextDataset train_set;
  auto segmenter = word_segmenter(config.task);  // mlm whole-word masking over jieba words
  if (config.data.vocab.source == "tokenizer") {
    // A pretrained model's ids: its WordPiece vocab.txt as it is (kept in the run as vocab.txt).
    vocab = Vocabulary::load_wordpiece(resume ? src.vocab_path() : tokenizer_dict);
    train_set = encode_examples(train.examples, train.path, *tokenizer, vocab, &targets,
                                encode_options(config.data, vocab, &config.task, segmenter.get()));
  } else if (resume || !init_run.empty()) {
    vocab = Vocabulary::load(resume ? src.vocab_path() : RunDirectory::open(init_run).vocab_path());
    if (!resume) log::info("[data] vocabulary of {} reused ({} tokens)", init_run, vocab.size());
    train_set = encode_examples(train.examples, train.path, *tokenizer, vocab, &targets, encode_options(config.data, vocab));
  } else if (auto features = linear_features(config.model)) {
    // The linear model's features: n-gram terms chosen by document frequency (the counts are
    // document frequencies, the idf's).
    std::tie(vocab, train_set) = build_features_and_encode(train.examples, train.path, *tokenizer, features->selection,
                                                           &targets, encode_options(config.data, Vocabulary()));
    if (vocab.size() <= Vocabulary::kFirstWordId)
      throw ConfigError(fmt::format("config key 'model.min_df': no n-gram of {} is in {} or more texts; lower it",
                                    train.path, features->selection.min_df));
  } else {
    std::tie(vocab, train_set) = build_vocab_and_encode(train.examples, train.path, *tokenizer,
                                                        config.data.vocab.min_freq, config.data.vocab.max_size,
                                                        &targets, encode_options(config.data, Vocabulary()));
  }
  const EncodeOptions enc = encode_options(config.data, vocab, &config.task, segmenter.get());
  if (!resume) {  // a resumed run keeps its own files
    vocab.save(run.vocab_path());
    if (has_labels) labels.save(run.labels_path());
  }
  log::info("[data] vocabulary {} tokens (min_freq {}, max_size {}), {} labels", vocab.size(),
            config.data.vocab.min_freq, config.data.vocab.max_size, labels.size());
  train.examples.clear();
  train.examples.shrink_to_fit();
  log_dataset("train", train_set);
  throw_if_stop_requested();
  if (config.trainer.sampler == "balanced" && !has_labels)
    throw ConfigError("config key 'trainer.sampler': \"balanced\" needs classes; a regression task has none");
  std::vector<double> weights = resolve_class_weights(config.task, labels, train_set);
  auto task = make_task(config.task, labels, weights);
  if (vocab.fixed()) task->set_vocabulary(vocab);
  write_file_atomic(run.file("task.json"), nlohmann::json{{"class_weights", weights}}.dump() + "\n");
  if (!weights.empty()) log::info("[task] class weights {}", nlohmann::json(weights).dump());
  std::optional<TextDataset> valid_set, test_set;
  if (!config.data.valid.empty()) {
    valid_set = encode_examples(read_split(config.data.valid, "valid", config).examples, config.data.valid, *tokenizer, vocab,
                                &targets, enc);
    log_dataset("valid", *valid_set);
  }
  if (!config.data.test.empty()) {
    test_set = encode_examples(read_split(config.data.test, "test", config).examples, config.data.test, *tokenizer, vocab,
                               &targets, enc);
    log_dataset("test", *test_set);
  }

  throw_if_stop_requested();
  if (group) {
    if (valid_set && valid_set->size() < group->world())
      throw ConfigError(fmt::format("data.valid has {} sample(s), fewer than the {} processes that validate it",
                                    valid_set->size(), group->world()));
    // Every rank read and encoded the data itself: they must have built the same vocabulary and labels.
    const std::string mine = data_fingerprint(vocab, labels, train_set, valid_set ? &*valid_set : nullptr);
    auto all = group->all_gather_string("data", mine);
    for (int r = 1; r < group->world(); ++r)
      if (all[static_cast<size_t>(r)] != all[0])
        throw dist::DistError(fmt::format("rank {} read other data than rank 0 ({} against {}): every host must read the "
                                          "same data files",
                                          r, all[static_cast<size_t>(r)], all[0]));
    log::info("[dist] {} processes agree on the data ({}); each takes {} of every {} samples per step", group->world(),
              mine, config.trainer.batch_size, config.trainer.batch_size * group->world());
  }
  phase = Phase::training;
  // Model first, on its device; the optimiser is built from its parameters afterwards (P3).
  check_memory(config, vocab.size(), train_set, nullptr);
  auto model = build_model(config.model, ModelContext{vocab.size(), task->num_outputs(), vocab.pad_id(), &vocab,
                                                      config.task.type == "mlm", train_set.size()});
  const std::string pretrained_dir = config.model.options.value("pretrained_dir", std::string());
  if (!pretrained_dir.empty() && !resume && config.model.init_from.empty()) {
    PretrainedLoad loaded = load_hf_bert(*model, pretrained_dir);
    log::info("[model] {} tensors loaded from {}", loaded.loaded, loaded.file);
    if (!loaded.ignored.empty())
      log::info("[model] ignored {} tensor(s) a classifier does not use (pre-training heads, position ids): {}",
                loaded.ignored.size(), fmt::join(loaded.ignored, ", "));
    if (!loaded.initialised.empty())
      log::info("[model] newly initialised (not in the file): {}", fmt::join(loaded.initialised, ", "));
  }
  if (!config.model.init_from.empty() && !resume) {
    std::string weights = init_run.empty() ? config.model.init_from : RunDirectory::open(init_run).checkpoint("best");
    auto skipped = load_weights(*model, weights, config.model.init_strict);
    log::info("[model] initialised from {}{}", weights,
              skipped.empty() ? "" : fmt::format(" except {} parameter(s): {}", skipped.size(), fmt::join(skipped, "; ")));
  }
  if (auto* linear = dynamic_cast<LinearImpl*>(model.get()); linear && !config.model.init_from.empty() && !resume)
    linear->set_penalty(document_frequencies(train_set, vocab.size()));  // this split's, under this C
  freeze_parameters(*model, config.model.freeze);
  if (config.trainer.dtype == "float64") model->to(torch::kDouble);
  model->to(device);
  check_forward_outputs(*model, *task, train_set, device, config.model.type);
  int64_t n_params = 0, n_trainable = 0;
  for (const auto& p : model->parameters()) {
    n_params += p.numel();
    if (p.requires_grad()) n_trainable += p.numel();
  }
  log::info("[model] {} with {} parameters ({} trainable)", config.model.type, n_params, n_trainable);
  if (device.is_cpu()) check_memory(config, vocab.size(), train_set, model.get());

  Trainer trainer(config, model, *task, device, run, vocab.size());
  if (group) trainer.set_group(group);
  trainer.set_until_epoch(until_epoch);
  if (resume) {
    std::string last = src.checkpoint_dir("last");
    if (last.empty()) {
      log::warn("[resume] {} has no checkpoint yet: training starts from the beginning", run.path());
      if (std::filesystem::exists(run.metrics_path())) std::filesystem::resize_file(run.metrics_path(), 0);
    } else {
      trainer.restore(last);
      log::info("[resume] continuing from {} (epoch {}, step {})", last, trainer.state().epoch, trainer.state().step);
    }
  }
  TrainSummary summary = trainer.fit(train_set, valid_set ? &*valid_set : nullptr);
  if (group && summary.steps > 0)
    log::info("[dist] all-reduce: {:.2f}s of the {:.1f}s loop ({:.1f}%), {:.3g} MB of gradients a step, {:.0f} MB/s "
              "(waiting for slower ranks included)",
              summary.sync_seconds, summary.seconds, 100.0 * summary.sync_seconds / std::max(summary.seconds, 1e-9),
              summary.sync_bytes / 1e6,
              summary.sync_seconds > 0 ? summary.sync_bytes * static_cast<double>(summary.steps) / 1e6 / summary.sync_seconds : 0.0);
  if (group) {
    group->finish();
    if (rank > 0) return summary;  // the test, the report and the exports are rank 0's
  }
  if (summary.interrupted || summary.paused) return summary;
  log::info("[train] done: {} steps in {:.1f}s ({:.0f} samples/s), best: epoch {} step {}{}", summary.steps,
            summary.seconds, summary.samples_per_s, summary.best_epoch, summary.best_step,
            summary.early_stopped ? " (stopped early)" : "");
  // Where the time went: the batches (the loader) should be a small share of the steps.
  const double step_seconds = summary.seconds - summary.data_seconds - summary.eval_seconds;
  log::info("[train] time: steps {:.1f}s, making batches {:.2f}s ({:.1f}% of the loop), validation and "
            "checkpoints {:.1f}s",
            step_seconds, summary.data_seconds, 100.0 * summary.data_seconds / std::max(summary.seconds, 1e-9),
            summary.eval_seconds);

  phase = Phase::test;
  if (test_set) {
    load_weights(*model, run.checkpoint("best"));
    model->to(device);
    auto report = task->evaluate(predict(*model, *task, *test_set, config.trainer.eval_batch_size, device, vocab.size()));
    log::info("[test] best checkpoint (epoch {}): {} on {} samples", summary.best_epoch, report.summary(),
              test_set->size());
    nlohmann::json record = {{"kind", "test"}, {"epoch", summary.best_epoch}, {"step", summary.steps}};
    record.update(report.headline());
    run.append_metrics(record);
    summary.test = report;
  }
  // The report: the test split when there is one, else the validation split, with the best weights.
  std::vector<std::pair<std::string, std::string>> stats = {
      {"vocabulary", fmt::format("{} tokens", vocab.size())}, {"labels", fmt::format("{}", labels.size())}};
  for (const auto& [name, set] : {std::pair<const char*, const TextDataset*>{"train", &train_set},
                                  {"valid", valid_set ? &*valid_set : nullptr},
                                  {"test", test_set ? &*test_set : nullptr}})
    if (set) for (auto& row : dataset_stats(name, *set)) stats.push_back(row);
  std::optional<EvalReport> shown = summary.test;
  std::string shown_name = "test: " + config.data.test;
  if (!shown && valid_set) {
    load_weights(*model, run.checkpoint("best"));
    shown = task->evaluate(predict(*model, *task, *valid_set, config.trainer.eval_batch_size, device, vocab.size()));
    shown_name = "valid: " + config.data.valid;
  }
  summary.shown = shown;
  summary.shown_name = shown_name;
  if (config.task.type == "mlm") {
    // The pretrained encoder as a Hugging Face directory: model.pretrained_dir of a classifier.
    export_hf(load_run(run.path(), "best", "cpu"), run.file("bert"));
    log::info("[export] {} (BertForMaskedLM): fine-tune it with model.pretrained_dir", run.file("bert"));
  }
  const nlohmann::json resolved = to_json(config);
  const std::string evaluated = shown_name + " (best checkpoint)";
  std::string report_path = write_run_report(run.path(), resolved, shown ? &*shown : nullptr, evaluated, stats);
  if (with_baseline && shown) {
    // The article's first question, answered on the same split: how far above a traditional method?
    // The run is complete and reported before the baseline starts; a failed baseline costs only itself.
    const Config b = baseline_config(config);
    log::info("[baseline] training the tf-idf linear baseline on the same data into {}", b.output_dir);
    // The baseline's run closes its own log; this run's is reopened after it, whatever happens.
    auto reopen_log = [&] {
      try {
        log::set_file(run.log_path());
      } catch (const std::exception&) {  // the console still has every line
      }
    };
    try {
      Phase inner = Phase::data;
      TrainSummary bs = run_training_phases(b, /*overwrite=*/true, /*resume=*/false, /*with_baseline=*/false, inner);
      reopen_log();
      if (bs.interrupted) throw StopRequested(bs.interrupted);
      if (!bs.shown) throw Error("the baseline run has no evaluation of " + shown_name);
      nlohmann::json comparison = baseline_comparison(config.model.type, *shown, b.output_dir, *bs.shown);
      log::info("[baseline] {} (best checkpoints): {:<12} {:>10} {:>10} {:>10}", shown_name, "metric",
                config.model.type, "baseline", "difference");
      for (const auto& row : comparison["rows"])
        log::info("[baseline] {:<12} {:>10.4f} {:>10.4f} {:>+10.4f}", row["metric"].get<std::string>(),
                  row["model"].get<double>(), row["baseline"].get<double>(), row["difference"].get<double>());
      report_path = write_run_report(run.path(), resolved, &*shown, evaluated, stats, "", comparison);
      summary.baseline = comparison;
      summary.baseline["seconds"] = bs.seconds;
      summary.baseline["split"] = shown_name;
    } catch (const StopRequested& stop) {  // the run is complete: only the baseline is cut short
      reopen_log();
      log::progress_done();
      log::warn("[baseline] stopped by signal {} while the baseline trained; the run itself is complete in {}",
                stop.signal(), run.path());
    } catch (const std::exception& e) {
      reopen_log();
      log::warn("[baseline] the baseline failed ({}); the run itself is complete in {}", e.what(), run.path());
    }
  }
  log::info("[report] {}", report_path);
  return summary;
}

}  // namespace

Config baseline_config(const Config& config) {
  if (!task_has_labels(config.task.type) && config.task.type != "regression")
    throw ConfigError("--baseline: a " + config.task.type + " task has no labels to compare with a baseline");
  if (!config.data.text_pair_column.empty() || !config.data.text_pair_field.empty())
    throw ConfigError("--baseline: the linear baseline reads one text, and this run's data are sentence pairs");
  if (config.model.type == "linear") throw ConfigError("--baseline: this run is the linear baseline already");
  if (config.data.valid.empty() && config.data.test.empty())
    throw ConfigError("--baseline compares on data.test (or data.valid): this config has neither");
  nlohmann::json j = to_json(config);
  j["name"] = config.name + "-baseline";
  j["output_dir"] = (std::filesystem::path(config.output_dir) / "baseline").string();
  j["model"] = {{"type", "linear"}};  // its defaults: word 1-2 grams, C 1, adagrad
  j.erase("optimizer");
  j["scheduler"] = {{"type", "linear"}};
  j["trainer"] = {{"epochs", 10}, {"batch_size", 32}, {"eval_batch_size", config.trainer.eval_batch_size},
                  {"log_every", config.trainer.log_every}, {"progress", config.trainer.progress}};
  auto& data = j["data"];
  data["max_len"] = 0;
  data["vocab"] = nlohmann::json::object();
  data["special_tokens"] = false;
  const std::string tok = config.data.tokenizer.type;
  if (tok == "wordpiece" || tok == "sentencepiece")  // pieces of a model's own: words instead
    data["tokenizer"] = {{"type", "basic"}, {"lowercase", config.data.tokenizer.lowercase}};
  auto& task = j["task"];
  if (config.task.type != "regression") task["loss"] = "squared_hinge";  // LinearSVC
  task["label_smoothing"] = 0.0;
  return parse_config(j);
}

TrainSummary run_training(const Config& config, bool overwrite, bool resume, bool with_baseline, int64_t until_epoch) {
  if (with_baseline) baseline_config(config);  // refused before anything is trained
  const dist::Launch launch = dist::launch_from_env();
  std::shared_ptr<dist::Group> group;
  if (launch.world > 1) {
    if (with_baseline)
      throw ConfigError("--baseline trains in one process: run it without torchrun or --nproc");
    log::set_prefix(fmt::format("[rank {}] ", launch.rank));
    log::info("[dist] rank {} of {} (local rank {}), rendezvous at {}:{}", launch.rank, launch.world, launch.local_rank,
              launch.master_addr, launch.master_port);
    group = std::make_shared<dist::Group>(launch, config.trainer.dist_timeout_s);
  }
  Phase phase = Phase::data;
  try {
    return run_training_phases(config, overwrite, resume, with_baseline, phase, group, until_epoch);
  } catch (const StopRequested& stop) {
    if (group) group->fail(stop.what());
    log::progress_done();
    if (phase == Phase::test)
      log::warn("[test] stopped by signal {} during the final evaluation; training is complete. Evaluate the best "
                "checkpoint with: ltk-eval --run {} --data {}",
                stop.signal(), config.output_dir, config.data.test.empty() ? config.data.valid : config.data.test);
    else
      log::warn("[data] stopped by signal {} while the data loaded, before any step; {}", stop.signal(),
                resume ? "the run is as it was: resume it again with ltk-train --resume " + config.output_dir
                       : std::string("nothing was trained"));
    TrainSummary summary;
    summary.interrupted = stop.signal();
    return summary;
  } catch (const dist::DistError&) {
    if (group) group->fail("it lost the group");
    throw;
  } catch (const std::exception& e) {
    // Every rank learns why the job stops: the others name this rank and its error.
    if (group) group->fail(e.what());
    throw;
  }
}

}  // namespace ltk
