#include "ltk/io/run.h"

#include <algorithm>
#include <filesystem>
#include <future>
#include <system_error>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/runtime.h"
#include "ltk/io/checkpoint.h"
#include "ltk/models/linear.h"
#include "ltk/models/quantize.h"
#include "ltk/models/registry.h"

namespace ltk {

TextDataset LoadedRun::encode(const std::vector<Example>& examples, const std::string& source, bool labelled) const {
  TargetEncoder targets = task->target_encoder();
  auto segmenter = word_segmenter(config.task);
  return encode_examples(examples, source, *tokenizer, vocab, labelled ? &targets : nullptr,
                         encode_options(config.data, vocab, &config.task, segmenter.get()));
}

namespace {

/// A deploy artifact's precision (deploy.json, written by ltk-eval --quantize), "fp32" for a run.
std::string read_precision(const RunDirectory& dir) {
  const std::string path = dir.file("deploy.json");
  if (!std::filesystem::exists(path)) return "fp32";
  std::string precision;
  try {
    precision = read_json_file(path).at("precision").get<std::string>();
  } catch (const std::exception& e) {
    throw CheckpointError(path + " is damaged (" + e.what() + "); it should read {\"precision\": \"int8\", ...}");
  }
  if (precision != "bf16" && precision != "int8")
    throw CheckpointError(path + ": precision \"" + precision + "\" is none this ltk runs (bf16, int8)");
  return precision;
}

/// The stored weights into the run's model, built in the run's precision.
void load_model_weights(LoadedRun& run, std::vector<std::pair<std::string, torch::Tensor>> stored) {
  if (run.precision == "fp32") {
    load_weights(*run.model, run.checkpoint_path, std::move(stored));
    return;
  }
  Quantizable& q = quantizable(*run.model, run.config.model.type);
  if (run.precision == "bf16") {
    if (run.device.is_cpu() && !cpu_has_native_bf16())
      log::warn("{} holds bf16 weights, and {}: it runs, slowly; the float32 run it was made from is faster here",
                run.dir.path(), why_no_native_bf16());
    q.quantize("bf16");
    load_weights(*run.model, run.checkpoint_path, std::move(stored));
    return;
  }
  if (!run.device.is_cpu())
    throw ConfigError(run.dir.path() +
                      " is an int8 artifact, which runs on the CPU only: pass --device cpu (or make "
                      "a bf16 one for the GPU)");
  if (const std::string why = int8_unavailable(); !why.empty())
    throw ConfigError(run.dir.path() + " is an int8 artifact, and " + why.substr(0, why.find(';')) +
                      "; use the run it was made from (deploy.json names it) or a bf16 artifact");
  auto int8 = take_int8(stored, run.checkpoint_path);
  load_weights(*run.model, run.checkpoint_path, std::move(stored));
  q.load_int8(int8);
}

}  // namespace

LoadedRun load_run(const std::string& dir, const std::string& checkpoint, const std::string& device) {
  LoadedRun run{RunDirectory::open(dir), Config{}, nullptr, Vocabulary{}, LabelMap{}, nullptr, nullptr, torch::kCPU, ""};
  run.precision = read_precision(run.dir);
  try {
    run.config = parse_config(read_json_file(run.dir.config_path()));
  } catch (const ConfigError& e) {
    throw CheckpointError(run.dir.config_path() + ": " + e.what());
  }
  use_run_tokenizer_file(run.dir, run.config.data.tokenizer);
  // The weights are read on a thread of their own while the vocabulary is read and the model built
  // (the two largest files: together a second of ltk-predict's start-up for a linear model of
  // 370,000 features). A checkpoint name that names none is reported first; a damaged weights file
  // after the vocabulary's errors, as before. Where no thread can be started, they are read in turn.
  run.checkpoint_path = run.dir.checkpoint(checkpoint);
  auto read = [path = run.checkpoint_path] { return read_weights(path); };
  std::future<std::vector<std::pair<std::string, torch::Tensor>>> weights_read;
  try {
    weights_read = std::async(std::launch::async, read);
  } catch (const std::system_error&) {
    weights_read = std::async(std::launch::deferred, read);
  }
  run.tokenizer = make_run_tokenizer(run.config.data.tokenizer, run.config.model);
  run.vocab = run.config.data.vocab.source == "tokenizer" ? Vocabulary::load_wordpiece(run.dir.vocab_path())
                                                         : Vocabulary::load(run.dir.vocab_path());
  if (task_has_labels(run.config.task.type)) run.labels = LabelMap::load(run.dir.labels_path());
  const TaskFit fit = read_task_fit(run.dir, run.checkpoint_path);
  run.task = make_task(run.config.task, run.labels, fit.class_weights);
  if (run.vocab.fixed()) run.task->set_vocabulary(run.vocab);
  run.device = resolve_device(device.empty() ? run.config.device : device, device.empty() ? "device" : "--device");
  run.model =
      build_model(run.config.model, ModelContext{run.vocab.size(), run.task->num_outputs(), run.vocab.pad_id(), nullptr,
                                                 run.config.task.type == "mlm", 0, /*weights_follow=*/true});
  if (!fit.temperature.empty()) run.task->set_temperature(fit.temperature);
  if (!fit.thresholds.empty()) run.task->set_thresholds(fit.thresholds);
  load_model_weights(run, weights_read.get());
  run.model->to(run.device);
  run.model->eval();
  return run;
}

namespace {

// The files of --export, into `tmp`.
void write_export(const LoadedRun& run, const std::string& tmp) {
  save_weights(*run.model, tmp + "/weights.pt");
  nlohmann::json resolved = to_json(run.config);
  nlohmann::json spec = {{"model", run.config.model.options},          {"task", resolved["task"]},
                         {"class_weights", run.task->class_weights()}, {"temperature", run.task->temperature()},
                         {"thresholds", run.task->thresholds()},       {"vocab_size", run.vocab.size()},
                         {"num_outputs", run.task->num_outputs()},     {"checkpoint", run.checkpoint_path}};
  write_file_atomic(tmp + "/model.json", spec.dump(2) + "\n");
  run.vocab.save(tmp + "/vocab.txt");
  if (run.labels.size() > 0) run.labels.save(tmp + "/labels.txt");
}

}  // namespace

void check_float_run(const LoadedRun& run, const std::string& option) {
  if (run.precision != "fp32")
    throw ConfigError(run.dir.path() + " is a deploy artifact (" + run.precision + ", ltk-eval --quantize); " + option +
                      " writes float32 weights: give the run it was made from (deploy.json names it)");
}

std::string check_export_dir(const std::string& given, const std::vector<std::string>& files, const std::string& option) {
  namespace fs = std::filesystem;
  std::string dir = given;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const std::string base = fs::path(dir).filename().string();
  if (dir.empty() || dir == "/" || base == "." || base == "..")
    throw UsageError(option + " '" + given + "': give a directory of its own (it is replaced whole), e.g. " + option +
                     " exported/");
  std::error_code ec;
  if (!fs::exists(dir, ec)) return dir;
  if (!fs::is_directory(dir, ec)) throw UsageError(option + " " + dir + ": not a directory");
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (std::find(files.begin(), files.end(), name) == files.end())
      throw UsageError(option + " " + dir + " holds " + name + ", which an export does not write: the directory is "
                       "replaced whole, so give a new directory (or one an earlier " + option + " wrote)");
  }
  if (ec) throw Error("cannot list " + dir + ": " + ec.message());
  return dir;
}

void export_run(const LoadedRun& run, const std::string& given) {
  check_float_run(run, "--export");
  if (run.config.model.type == "linear")
    throw ConfigError("--export writes a model for bench/ltk_torch.py, which has no n-gram tokenizer for the linear "
                      "model; predict with ltk-predict or the library (its weights are " + run.checkpoint_path + ")");
  const std::string dir = check_export_dir(given, {"weights.pt", "model.json", "vocab.txt", "labels.txt"}, "--export");
  // Written beside, then swapped in whole (as --export-hf): a kill or a full disk leaves the old
  // export or the new one, never new weights beside an old model.json.
  const std::string tmp = dir + ".ltk-tmp";
  remove_tree(tmp);
  std::error_code ec;
  std::filesystem::create_directories(tmp, ec);
  if (ec) throw Error("cannot create " + tmp + ": " + ec.message());
  try {
    write_export(run, tmp);
  } catch (...) {
    remove_tree(tmp);  // (a full disk: the partial export goes, the old one stays)
    throw;
  }
  replace_directory_durable(tmp, dir);
}

}  // namespace ltk
