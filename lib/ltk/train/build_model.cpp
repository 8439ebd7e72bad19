// The second phase of a training run: the model, built for the data and placed on its device
// (phases.h).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/core/runtime.h"
#include "ltk/core/strings.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/checkpoint.h"
#include "ltk/io/hf.h"
#include "ltk/models/linear.h"
#include "ltk/models/registry.h"
#include "ltk/train/phases.h"

namespace ltk {

namespace {

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
      throw ConfigError("config key 'model.freeze': '" + prefix + "' matches no parameter" +
                        did_you_mean(prefix, candidates) + "; parameters: " + join(names, ", "));
    log::info("[model] frozen: {} ({} tensor(s))", prefix, matched);
  }
}

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
  const double states = opt == "adam" || opt == "adamw" ? 3
                        : opt == "adagrad"              ? 2
                        : config.optimizer.momentum > 0 ? 1
                                                        : 0;
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
  double tokens =
      static_cast<double>(std::min<int64_t>(config.trainer.batch_size, train.size())) * static_cast<double>(longest);
  if (config.trainer.max_tokens > 0)
    tokens = std::max(static_cast<double>(longest), std::min(tokens, static_cast<double>(config.trainer.max_tokens)));
  const bool per_token = config.model.type != "bow" && config.model.type != "linear";
  const double activations = per_token ? 2 * tokens * width * elem : 0;
  // Once the model is built its parameters are already taken from what is available.
  const double need = (model ? 0 : params) + trainable * (grads + states) + activations;
  if (need <= static_cast<double>(available)) return;
  auto gib = [](double b) { return fmt::format("{:.1f} GiB", b / (1024.0 * 1024 * 1024)); };
  throw ConfigError(fmt::format(
      "this run needs at least {} of memory and {} is available: parameters {} ({} tokens in the vocabulary x width "
      "{:.0f}"
      "{}), their gradients and {}'s state {}, the token embeddings of the largest batch ({:.0f} tokens) {}. Lower "
      "data.vocab.max_size or raise data.vocab.min_freq, or lower data.max_len (the longest text has {} tokens), "
      "trainer.batch_size or trainer.max_tokens, or the model's width; trainer.memory_check false skips this check",
      gib(need), gib(static_cast<double>(available)), gib(params), vocab_size, width, model ? ", as built" : "", opt,
      gib(trainable * (grads + states)), tokens, gib(activations), longest));
}

/// The pretrained encoder of model.pretrained_dir (a Hugging Face directory), or the weights of
/// model.init_from (a run's best checkpoint, or a weights file), into a fresh model.
void initialise(const RunContext& ctx, const PreparedData& data, TextModel& model) {
  const Config& config = ctx.config;
  if (ctx.options.resume) return;  // the checkpoint's weights come in Trainer::restore
  const std::string pretrained_dir = config.model.options.value("pretrained_dir", std::string());
  if (!pretrained_dir.empty() && config.model.init_from.empty()) {
    PretrainedLoad loaded = load_hf_bert(model, pretrained_dir);
    log::info("[model] {} tensors loaded from {}", loaded.loaded, loaded.file);
    if (!loaded.ignored.empty())
      log::info("[model] ignored {} tensor(s) a classifier does not use (pre-training heads, position ids): {}",
                loaded.ignored.size(), fmt::join(loaded.ignored, ", "));
    if (!loaded.initialised.empty())
      log::info("[model] newly initialised (not in the file): {}", fmt::join(loaded.initialised, ", "));
  }
  if (config.model.init_from.empty()) return;
  std::string weights =
      data.init_run.empty() ? config.model.init_from : RunDirectory::open(data.init_run).checkpoint("best");
  auto skipped = load_weights(model, weights, config.model.init_strict);
  log::info(
      "[model] initialised from {}{}", weights,
      skipped.empty() ? "" : fmt::format(" except {} parameter(s): {}", skipped.size(), fmt::join(skipped, "; ")));
  if (auto* linear = dynamic_cast<LinearImpl*>(&model))
    linear->set_penalty(document_frequencies(data.train, data.vocab.size()));  // this split's, under this C
}

}  // namespace

std::shared_ptr<TextModel> build_run_model(const RunContext& ctx, const PreparedData& data) {
  const Config& config = ctx.config;
  // Model first, on its device; the optimiser is built from its parameters afterwards (P3).
  check_memory(config, data.vocab.size(), data.train, nullptr);
  auto model = build_model(config.model, ModelContext{data.vocab.size(), data.task->num_outputs(), data.vocab.pad_id(),
                                                      &data.vocab, config.task.type == "mlm", data.train.size()});
  initialise(ctx, data, *model);
  freeze_parameters(*model, config.model.freeze);
  if (config.trainer.dtype == "float64") model->to(torch::kDouble);
  model->to(ctx.device);
  check_forward_outputs(*model, *data.task, data.train, ctx.device, config.model.type);
  int64_t n_params = 0, n_trainable = 0;
  for (const auto& p : model->parameters()) {
    n_params += p.numel();
    if (p.requires_grad()) n_trainable += p.numel();
  }
  log::info("[model] {} with {} parameters ({} trainable)", config.model.type, n_params, n_trainable);
  if (ctx.device.is_cpu()) check_memory(config, data.vocab.size(), data.train, model.get());
  return model;
}

}  // namespace ltk
