#include "ltk/io/run_dir.h"

#include <filesystem>
#include <algorithm>
#include <fstream>
#include <vector>

#include "ltk/core/error.h"
#include "ltk/io/checkpoint.h"

namespace ltk {

namespace fs = std::filesystem;

RunDirectory RunDirectory::create(const std::string& path, bool overwrite) {
  std::error_code ec;
  if (fs::exists(path + "/config.json")) {
    if (!overwrite)
      throw ConfigError("run directory " + path + " already holds a run; pass --overwrite to replace it, "
                        "or choose another output_dir (e.g. --set output_dir=" + path + "-2)");
    remove_tree(path);
  }
  fs::create_directories(path + "/checkpoints", ec);
  if (ec) throw Error("cannot create run directory " + path + ": " + ec.message());
  return RunDirectory(path);
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
  std::ofstream out(metrics_path(), std::ios::app);
  out << record.dump() << '\n';
  if (!out) throw Error("cannot append to " + metrics_path());
}

}  // namespace ltk
