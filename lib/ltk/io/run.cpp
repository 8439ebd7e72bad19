#include "ltk/io/run.h"

#include <filesystem>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/runtime.h"
#include "ltk/io/checkpoint.h"
#include "ltk/models/linear.h"
#include "ltk/models/registry.h"

namespace ltk {

TextDataset LoadedRun::encode(const std::vector<Example>& examples, const std::string& source, bool labelled) const {
  TargetEncoder targets = task->target_encoder();
  auto segmenter = word_segmenter(config.task);
  return encode_examples(examples, source, *tokenizer, vocab, labelled ? &targets : nullptr,
                         encode_options(config.data, vocab, &config.task, segmenter.get()));
}

LoadedRun load_run(const std::string& dir, const std::string& checkpoint, const std::string& device) {
  LoadedRun run{RunDirectory::open(dir), Config{}, nullptr, Vocabulary{}, LabelMap{}, nullptr, nullptr, torch::kCPU, ""};
  try {
    run.config = parse_config(read_json_file(run.dir.config_path()));
  } catch (const ConfigError& e) {
    throw CheckpointError(run.dir.config_path() + ": " + e.what());
  }
  // The tokenizer's file as the run keeps it (runs made before ltk kept one use the configured path).
  const std::string resource = tokenizer_resource(run.config.data.tokenizer.type);
  if (!resource.empty() && std::filesystem::exists(run.dir.file(resource)))
    run.config.data.tokenizer.dict = run.dir.file(resource);
  run.tokenizer = make_run_tokenizer(run.config.data.tokenizer, run.config.model);
  run.vocab = run.config.data.vocab.source == "tokenizer" ? Vocabulary::load_wordpiece(run.dir.vocab_path())
                                                         : Vocabulary::load(run.dir.vocab_path());
  if (task_has_labels(run.config.task.type)) run.labels = LabelMap::load(run.dir.labels_path());
  std::vector<double> weights;
  if (std::filesystem::exists(run.dir.file("task.json"))) {
    auto j = read_json_file(run.dir.file("task.json"));
    weights = j.value("class_weights", std::vector<double>{});
  }
  run.task = make_task(run.config.task, run.labels, weights);
  if (run.vocab.fixed()) run.task->set_vocabulary(run.vocab);
  run.device = resolve_device(device.empty() ? run.config.device : device, device.empty() ? "device" : "--device");
  run.model = build_model(run.config.model,
                          ModelContext{run.vocab.size(), run.task->num_outputs(), run.vocab.pad_id(), nullptr,
                                       run.config.task.type == "mlm", 0});
  run.checkpoint_path = run.dir.checkpoint(checkpoint);
  load_weights(*run.model, run.checkpoint_path);
  run.model->to(run.device);
  run.model->eval();
  return run;
}

void export_run(const LoadedRun& run, const std::string& dir) {
  if (run.config.model.type == "linear")
    throw ConfigError("--export writes a model for bench/ltk_torch.py, which has no n-gram tokenizer for the linear "
                      "model; predict with ltk-predict or the library (its weights are " + run.checkpoint_path + ")");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create " + dir + ": " + ec.message());
  save_weights(*run.model, dir + "/weights.pt");
  nlohmann::json resolved = to_json(run.config);
  nlohmann::json spec = {{"model", run.config.model.options},
                         {"task", resolved["task"]},
                         {"class_weights", run.task->class_weights()},
                         {"vocab_size", run.vocab.size()},
                         {"num_outputs", run.task->num_outputs()},
                         {"checkpoint", run.checkpoint_path}};
  write_file_atomic(dir + "/model.json", spec.dump(2) + "\n");
  run.vocab.save(dir + "/vocab.txt");
  if (run.labels.size() > 0) run.labels.save(dir + "/labels.txt");
}

}  // namespace ltk
