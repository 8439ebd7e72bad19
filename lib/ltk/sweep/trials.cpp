// A sweep's trial files: state, run directory, metrics, and whether a trial's trainer still runs.
#include "ltk/sweep/trials.h"

#include <signal.h>

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "ltk/core/error.h"
#include "ltk/core/files.h"

namespace fs = std::filesystem;

namespace ltk::sweep {

namespace detail {

std::string trial_path(const Plan& plan, const Trial& t, const std::string& suffix) {
  return plan.dir + "/trials/" + t.name + suffix;
}

TrialState read_state(const Plan& plan, const Trial& t) {
  const std::string path = trial_path(plan, t, ".state.json");
  if (!fs::exists(path)) return {};
  try {
    return TrialState::from_json(nlohmann::json::parse(read_file(path)));
  } catch (const std::exception& e) {
    throw Error(path + ": unreadable (" + e.what() + "); delete it to run the trial again");
  }
}

void write_state(const Plan& plan, const Trial& t, const TrialState& s) {
  write_file_atomic(trial_path(plan, t, ".state.json"), s.to_json().dump(1) + "\n");
}

std::vector<std::pair<int64_t, double>> valid_history(const std::string& run_dir, const std::string& metric) {
  std::vector<std::pair<int64_t, double>> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    nlohmann::json r;
    try {
      r = nlohmann::json::parse(line);
    } catch (const std::exception&) {
      continue;  // a line cut by a crash: the run's own resume truncates it
    }
    if (r.value("kind", "") == "valid" && r.contains(metric) && r[metric].is_number())
      out.emplace_back(r.value("epoch", int64_t{0}), r[metric].get<double>());
  }
  return out;
}

double best_valid(const std::vector<std::pair<int64_t, double>>& history, int64_t until_epoch, bool higher_better) {
  double best = std::nan("");
  for (const auto& [epoch, value] : history) {
    if (until_epoch > 0 && epoch > until_epoch) continue;
    if (std::isnan(best) || (higher_better ? value > best : value < best)) best = value;
  }
  return best;
}

bool trainer_alive(int64_t pid, const std::string& trial_name) {
  if (pid <= 0 || kill(static_cast<pid_t>(pid), 0) != 0) return false;
  std::string cmdline, stat;
  try {
    cmdline = read_file(fmt::format("/proc/{}/cmdline", pid));
    stat = read_file(fmt::format("/proc/{}/stat", pid));
  } catch (const std::exception&) {
    return false;
  }
  const auto close = stat.rfind(')');
  if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') return false;  // exited
  // ltk-train --resume DIR/trials/NAME or --config DIR/trials/NAME.config.json, and not a recycled pid
  const std::string dir_arg = "/trials/" + trial_name, config_arg = dir_arg + ".config.json";
  auto ends_with = [](const std::string& a, const std::string& b) {
    return a.size() >= b.size() && a.compare(a.size() - b.size(), b.size(), b) == 0;
  };
  size_t start = 0;
  while (start < cmdline.size()) {
    size_t end = cmdline.find('\0', start);
    if (end == std::string::npos) end = cmdline.size();
    const std::string arg = cmdline.substr(start, end - start);
    if (ends_with(arg, dir_arg) || ends_with(arg, config_arg)) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace detail

}  // namespace ltk::sweep
