#include "ltk/io/run_dir.h"

#include <filesystem>
#include <algorithm>
#include <fstream>
#include <vector>

#include "ltk/core/error.h"
#include "ltk/core/files.h"

namespace ltk {

namespace fs = std::filesystem;

RunDirectory RunDirectory::create(const std::string& path, bool overwrite) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw Error("cannot create run directory " + path + ": " + ec.message());
  RunDirectory run(path);
  run.lock();  // before anything is deleted: another ltk-train may be writing there
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(path))
    if (e.path().filename() != ".lock") entries.push_back(e.path());
  if (!entries.empty()) {
    const bool ours = fs::exists(path + "/" + kMarker);
    if (!ours)
      throw ConfigError("output_dir " + path + " is not empty and was not made by ltk-train (it has no " + kMarker +
                        " file); nothing was changed there. Choose a new or empty directory, e.g. --set output_dir=" +
                        path + "/run");
    if (!overwrite)
      throw ConfigError("run directory " + path + " already holds a run; pass --overwrite to replace it, "
                        "or choose another output_dir (e.g. --set output_dir=" + path + "-2)");
    for (const auto& e : entries) remove_tree(e.string());
  }
  fs::create_directories(path + "/checkpoints", ec);
  if (ec) throw Error("cannot create run directory " + path + ": " + ec.message());
  write_file_atomic(path + "/" + kMarker, "made by ltk-train; ltk-train --overwrite may delete this directory\n");
  return run;
}

void RunDirectory::lock() {
  if (!lock_) lock_ = std::make_shared<DirectoryLock>(path_);
}

RunDirectory RunDirectory::open(const std::string& path) {
  if (!fs::is_directory(path)) throw CheckpointError("run directory " + path + " does not exist");
  for (const char* f : {"config.json", "vocab.txt"})
    if (!fs::exists(path + "/" + f))
      throw CheckpointError("run directory " + path + " has no " + f + "; is it an ltk run made by ltk-train?");
  return RunDirectory(path);
}

std::string RunDirectory::checkpoint_dir(const std::string& which) const {
  std::string pointer = file("checkpoints/" + which + ".json");
  if (!fs::exists(pointer)) return "";
  std::ifstream in(pointer);
  nlohmann::json j;
  try {
    in >> j;
    return file("checkpoints/" + j.at("dir").get<std::string>());
  } catch (const std::exception&) {
    throw CheckpointError(pointer + " is damaged; point it at a checkpoints/step-N directory or pass --checkpoint step-N");
  }
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

}  // namespace ltk
