#include "ltk/io/run_dir.h"

#include <fmt/format.h>

#include <filesystem>
#include <algorithm>
#include <fstream>
#include <vector>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/version.h"
#include "ltk/data/tokenizer.h"

namespace ltk {

namespace fs = std::filesystem;

namespace {

/// Which ltk made a run, and the format of its files (ltk.json): a newer format is refused by open().
void write_made_by(const RunDirectory& run) {
  write_file_atomic(
      run.file("ltk.json"),
      nlohmann::json{{"ltk_version", version()}, {"commit", git_commit()}, {"run_format", kTrainedRunFormat}}.dump(2) +
          "\n");
}

// The entries ltk-train writes into a run directory: --overwrite removes these and nothing else.
bool made_by_ltk(const std::string& name) {
  static const char* const kNames[] = {
      "config.json",         "vocab.txt",   "labels.txt", "task.json", "metrics.jsonl", "train.log",
      "report.html",         "checkpoints", "eval",       "spm.model", "spm.vocab",     "jieba_dict.txt",
      "wordpiece_vocab.txt", "ltk.json",    "baseline",   "bert",      "deploy.json"};
  for (const char* n : kNames)
    if (name == n || name == std::string(n) + ".tmp") return true;
  return false;
}

}  // namespace

RunDirectory RunDirectory::create(const std::string& path, bool overwrite) {
  // Whose directory is it? Decided before anything is written there.
  const bool marked = fs::exists(path + "/" + kMarker);
  // A run made before ltk marked its runs: its config, vocabulary and checkpoints.
  const bool legacy = fs::exists(path + "/config.json") && fs::exists(path + "/vocab.txt") &&
                      fs::is_directory(path + "/checkpoints");
  const bool is_run = marked || legacy;
  if (!is_run && fs::exists(path + "/config.json"))
    throw ConfigError("output_dir " + path + " holds a config.json that ltk-train did not write (there is no " +
                      kMarker + " marker); nothing was changed there. Choose another output_dir, e.g. --set "
                      "output_dir=" + path + "/run");
  if (is_run && !overwrite)
    throw ConfigError("run directory " + path + " already holds a run; pass --overwrite to replace it, "
                      "or choose another output_dir (e.g. --set output_dir=" + path + "-2)");
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw Error("cannot create run directory " + path + ": " + ec.message());
  RunDirectory run(path);
  run.lock();  // before anything is deleted (another ltk-train may be writing there); marks the directory
  if (is_run)  // --overwrite: ltk's own files go; anything else in the directory stays
    for (const auto& e : fs::directory_iterator(path))
      if (made_by_ltk(e.path().filename().string())) remove_tree(e.path().string());
  fs::create_directories(path + "/checkpoints", ec);
  if (ec) throw Error("cannot create run directory " + path + ": " + ec.message());
  write_made_by(run);
  return run;
}

void RunDirectory::lock() {
  if (lock_) return;
  lock_ = std::make_shared<DirectoryLock>(path_);
  // A run made before runs were marked (resumed here) becomes a marked one.
  if (!fs::exists(file(kMarker)))
    write_file_atomic(file(kMarker), "made by ltk-train; ltk-train --overwrite replaces its files here\n");
  if (!fs::exists(file("ltk.json"))) write_made_by(*this);  // a run made before ltk 0.2 (format 1), resumed here
}

RunDirectory RunDirectory::open(const std::string& path) {
  if (!fs::is_directory(path)) throw CheckpointError("run directory " + path + " does not exist");
  for (const char* f : {"config.json", "vocab.txt"})
    if (!fs::exists(path + "/" + f))
      throw CheckpointError("run directory " + path + " has no " + f + "; is it an ltk run made by ltk-train?");
  const std::string made_by = path + "/ltk.json";  // runs made before ltk 0.2 have none: format 1
  if (fs::exists(made_by)) {
    int format = 1;
    std::string made_with = "?";
    try {
      const auto j = nlohmann::json::parse(read_file(made_by));
      format = j.value("run_format", 1);
      made_with = j.value("ltk_version", made_with);
    } catch (const std::exception& e) {
      throw CheckpointError(made_by + " is damaged (" + e.what() + "); it should read {\"run_format\": 1, ...}");
    }
    if (format > kRunFormat)
      throw CheckpointError(fmt::format("run directory {} was made by ltk {} (run format {}); this ltk {} reads run "
                                        "formats up to {}: use that ltk or a newer one",
                                        path, made_with, format, version(), kRunFormat));
  }
  return RunDirectory(path);
}

std::string RunDirectory::checkpoint_dir(const std::string& which) const {
  std::string pointer = file("checkpoints/" + which + ".json");
  if (!fs::exists(pointer)) return "";
  std::ifstream in(pointer);
  nlohmann::json j;
  std::string dir;
  try {
    in >> j;
    dir = j.at("dir").get<std::string>();
  } catch (const std::exception&) {
  }
  // A checkpoint directory's name: never a path that leaves checkpoints/.
  if (dir.empty() || dir.find('/') != std::string::npos || dir == "." || dir == "..")
    throw CheckpointError(pointer + " is damaged; point it at a checkpoints/step-N directory or pass --checkpoint step-N");
  return file("checkpoints/" + dir);
}

std::string RunDirectory::checkpoint(const std::string& which) const {
  if (which == "best" || which == "last") {
    std::string dir = checkpoint_dir(which);
    if (dir.empty())
      throw CheckpointError("run " + path_ + " has no " + which + " checkpoint yet (checkpoints/" + which +
                            ".json is missing); was training interrupted before its first checkpoint?");
    return dir + "/weights.pt";
  }
  if (which.rfind("step-", 0) == 0 && which.find('/') == std::string::npos) {
    std::string dir = file("checkpoints/" + which);
    if (!fs::is_directory(dir)) {
      std::vector<std::string> have;
      for (const auto& e : fs::directory_iterator(file("checkpoints")))
        if (e.is_directory()) have.push_back(e.path().filename().string());
      std::sort(have.begin(), have.end());
      std::string listed;
      for (const auto& h : have) listed += (listed.empty() ? "" : ", ") + h;
      throw CheckpointError("run " + path_ + " has no checkpoint " + which + " (it has: " + listed + ")");
    }
    return dir + "/weights.pt";
  }
  if (fs::is_directory(which)) return which + "/weights.pt";
  return which;
}

void RunDirectory::append_metrics(const nlohmann::json& record) const {
  append_file_durable(metrics_path(), record.dump() + "\n");
}

TaskFit read_task_fit(const RunDirectory& dir, const std::string& checkpoint_path) {
  TaskFit fit;
  if (!std::filesystem::exists(dir.file("task.json"))) return fit;
  const auto j = read_json_file(dir.file("task.json"));
  fit.class_weights = j.value("class_weights", std::vector<double>{});
  fit.temperature = j.value("temperature", std::vector<double>{});
  fit.thresholds = j.value("thresholds", std::vector<double>{});
  if (fit.temperature.empty() && fit.thresholds.empty()) return fit;
  std::string best;
  try {
    best = dir.checkpoint("best");
  } catch (const Error&) {
  }
  if (best == checkpoint_path) return fit;
  const char* what = fit.temperature.empty()  ? "tuned thresholds"
                     : fit.thresholds.empty() ? "temperature"
                                              : "temperature and tuned thresholds";
  log::warn("{}: task.json's {} fit the best checkpoint; {} is answered without them", dir.path(), what,
            checkpoint_path);
  fit.temperature.clear();
  fit.thresholds.clear();
  return fit;
}

void use_run_tokenizer_file(const RunDirectory& dir, TokenizerConfig& tokenizer) {
  const std::string resource = tokenizer_resource(tokenizer.type);
  if (!resource.empty() && std::filesystem::exists(dir.file(resource))) tokenizer.dict = dir.file(resource);
}

}  // namespace ltk
