#include "ltk/io/run_dir.h"

#include <filesystem>
#include <fstream>

#include "ltk/core/error.h"

namespace ltk {

namespace fs = std::filesystem;

RunDirectory RunDirectory::create(const std::string& path, bool overwrite) {
  std::error_code ec;
  if (fs::exists(path + "/config.json")) {
    if (!overwrite)
      throw ConfigError("run directory " + path + " already holds a run; pass --overwrite to replace it, "
                        "or choose another output_dir (e.g. --set output_dir=" + path + "-2)");
    fs::remove_all(path, ec);
    if (ec) throw Error("cannot remove " + path + ": " + ec.message());
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

std::string RunDirectory::checkpoint(const std::string& which) const {
  if (which == "best" || which == "last") return file("checkpoints/" + which + ".pt");
  return which;
}

void RunDirectory::append_metrics(const nlohmann::json& record) const {
  std::ofstream out(metrics_path(), std::ios::app);
  out << record.dump() << '\n';
  if (!out) throw Error("cannot append to " + metrics_path());
}

}  // namespace ltk
