// run_training: from a validated Config to a finished run directory.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/core/runtime.h"
#include "ltk/core/strings.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/checkpoint.h"
#include "ltk/models/registry.h"
#include "ltk/train/trainer.h"

namespace ltk {

namespace {

struct Split {
  std::vector<Example> examples;
  std::string path;
};

Split read_split(const std::string& path, const char* key) {
  try {
    return Split{read_tsv(path), path};
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

}  // namespace

TrainSummary run_training(const Config& config, bool overwrite) {
  log::set_level(log::parse_level(config.log_level));
  // Everything that can fail on the config is checked before the run directory is touched.
  torch::Device device = resolve_device(config.device);
  int threads = apply_threads(config.threads);
  seed_everything(config.seed);
  for (auto [key, path] : {std::pair<const char*, const std::string*>{"data.train", &config.data.train},
                           {"data.valid", &config.data.valid},
                           {"data.test", &config.data.test}})
    if (!path->empty() && !std::filesystem::is_regular_file(*path))
      throw DataError("config key '" + std::string(key) + "': " + *path +
                      " does not exist (run ./scripts/data.sh to make the corpora)");

  RunDirectory run = RunDirectory::create(config.output_dir, overwrite);
  log::set_file(run.log_path());
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
  Split train = read_split(config.data.train, "train");
  auto tokenizer = make_tokenizer(config.data.tokenizer);
  Vocabulary vocab = Vocabulary::build(count_tokens(train.examples, *tokenizer), config.data.vocab.min_freq,
                                       config.data.vocab.max_size);
  const bool has_labels = task_has_labels(config.task.type);
  LabelMap labels = has_labels ? labels_from_examples(config.task, train.examples) : LabelMap();
  vocab.save(run.vocab_path());
  if (has_labels) labels.save(run.labels_path());
  // The task is built twice: first to learn how labels become targets, then with the class
  // weights that need the encoded training split.
  auto encoder_task = make_task(config.task, labels);
  TargetEncoder targets = encoder_task->target_encoder();
  log::info("[data] vocabulary {} tokens (min_freq {}, max_size {}), {} labels", vocab.size(),
            config.data.vocab.min_freq, config.data.vocab.max_size, labels.size());

  EncodeOptions enc{config.data.max_len, config.data.truncation};
  TextDataset train_set = encode_examples(train.examples, train.path, *tokenizer, vocab, &targets, enc);
  train.examples.clear();
  train.examples.shrink_to_fit();
  log_dataset("train", train_set);
  std::vector<double> weights = resolve_class_weights(config.task, labels, train_set);
  auto task = make_task(config.task, labels, weights);
  write_file_atomic(run.file("task.json"), nlohmann::json{{"class_weights", weights}}.dump() + "\n");
  if (!weights.empty()) log::info("[task] class weights {}", nlohmann::json(weights).dump());
  std::optional<TextDataset> valid_set, test_set;
  if (!config.data.valid.empty()) {
    valid_set = encode_examples(read_split(config.data.valid, "valid").examples, config.data.valid, *tokenizer, vocab,
                                &targets, enc);
    log_dataset("valid", *valid_set);
  }
  if (!config.data.test.empty()) {
    test_set = encode_examples(read_split(config.data.test, "test").examples, config.data.test, *tokenizer, vocab,
                               &targets, enc);
    log_dataset("test", *test_set);
  }

  // Model first, on its device; the optimiser is built from its parameters afterwards (P3).
  auto model = build_model(config.model, ModelContext{vocab.size(), task->num_outputs(), Vocabulary::kPadId, &vocab});
  model->to(device);
  int64_t n_params = 0;
  for (const auto& p : model->parameters()) n_params += p.numel();
  log::info("[model] {} with {} parameters", config.model.type, n_params);

  Trainer trainer(config, model, *task, device, run, vocab.size());
  TrainSummary summary = trainer.fit(train_set, valid_set ? &*valid_set : nullptr);
  log::info("[train] done: {} steps in {:.1f}s ({:.0f} samples/s), best epoch {}", summary.steps, summary.seconds,
            summary.samples_per_s, summary.best_epoch);

  if (test_set) {
    load_weights(*model, run.checkpoint("best"));
    auto report = task->evaluate(predict(*model, *task, *test_set, config.trainer.eval_batch_size, device, vocab.size()));
    log::info("[test] best checkpoint (epoch {}): {} on {} samples", summary.best_epoch, report.summary(),
              test_set->size());
    nlohmann::json record = {{"kind", "test"}, {"epoch", summary.best_epoch}, {"step", summary.steps}};
    record.update(report.headline());
    run.append_metrics(record);
    summary.test = report;
  }
  return summary;
}

}  // namespace ltk
