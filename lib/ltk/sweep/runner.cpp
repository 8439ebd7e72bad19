// The runner of a sweep: its trials trained as ltk-train processes, several at once, resumed from
// their checkpoints, successive halving a rung at a time, and a stop passed on to them.
#include "ltk/sweep/sweep.h"

#include <signal.h>
#include <sys/wait.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ltk/config/config.h"
#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/process.h"
#include "ltk/core/strings.h"
#include "ltk/sweep/trials.h"

namespace fs = std::filesystem;

namespace ltk::sweep {

namespace {

using detail::describe;
using detail::read_state;
using detail::trial_path;
using detail::write_state;

// The signal that stops the sweep (SIGINT, SIGTERM), 0 while none came: recorded while the trials
// run (CapturedSignals in run()) and passed on to them.
int stop_signal_received() {
  return CapturedSignals::last();
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The trainer of a trial that outlives a killed sweep (it writes its checkpoint on the way out):
// wait for it rather than start a second one on the same run directory.
bool wait_for_leftover(const std::string& name, int64_t pid, const std::string& run_dir) {
  if (pid <= 0 && fs::exists(run_dir + "/.lock")) {
    // No pid recorded (the sweep died between fork and its note): the run directory's lock tells.
    for (int i = 0; i < 300 && !stop_signal_received(); ++i) {
      try {
        DirectoryLock probe(run_dir);
        break;
      } catch (const Error&) {
        if (i == 0) log::info("[sweep] waiting for the ltk-train that holds {} to exit", run_dir);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return !stop_signal_received();
  }
  for (int i = 0; detail::trainer_alive(pid, name); ++i) {
    if (stop_signal_received()) return false;
    if (i == 0)
      log::info("[sweep] waiting for the ltk-train of {} left by an earlier sweep (pid {}) to exit", name, pid);
    if (i > 6000) throw Error(fmt::format("the ltk-train of {} (pid {}) is still running; stop it first", name, pid));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

const char* const kAttemptMarker = "== ltk-sweep: attempt ";

// The last attempt's error line (or its last line) in a trial's log.
std::string last_error_line(const std::string& log_path) {
  std::ifstream in(log_path);
  std::string last, any;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(kAttemptMarker, 0) == 0) {
      last.clear();
      any.clear();
      continue;
    }
    if (line.find("error") != std::string::npos) last = line;
    if (!line.empty()) any = line;
  }
  return last.empty() ? any : last;
}

// The JSON summary ltk-train --json printed last; null when there is none.
nlohmann::json last_json_line(const std::string& path) {
  std::ifstream in(path);
  nlohmann::json out;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') continue;
    try {
      out = nlohmann::json::parse(line);
    } catch (const std::exception&) {
    }
  }
  return out;
}

struct Child {
  pid_t pid = -1;
  size_t trial = 0;
  double started = 0;
  int64_t until = 0;
};

class Runner {
 public:
  Runner(const Plan& plan, const RunOptions& options) : plan_(plan), options_(options) {}

  // Trains `trials` (each to `until` epochs, 0: to the end) with at most options.jobs at once.
  // Returns false when stopped by a signal.
  bool run_all(const std::vector<size_t>& trials, int64_t until) {
    size_t next = 0;
    bool forwarded = false;
    while ((next < trials.size() && !stop_signal_received()) || !children_.empty()) {
      if (stop_signal_received() && !forwarded) {
        forwarded = true;
        log::warn(
            "[sweep] stopped by signal {}: the running trials write a checkpoint; run the same command to "
            "continue",
            stop_signal_received());
        for (const auto& c : children_) kill(-c.pid, stop_signal_received());
      }
      while (!stop_signal_received() && next < trials.size() && static_cast<int>(children_.size()) < options_.jobs)
        launch(trials[next++], until);
      int status = 0;
      pid_t done = waitpid(-1, &status, WNOHANG);
      if (done <= 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      auto it = std::find_if(children_.begin(), children_.end(), [&](const Child& c) { return c.pid == done; });
      if (it == children_.end()) continue;
      finish(*it, status);
      children_.erase(it);
    }
    return stop_signal_received() == 0;
  }

  bool failed() const { return failed_; }

 private:
  void launch(size_t index, int64_t until) {
    const Trial& t = plan_.trials[index];
    const std::string run_dir = trial_path(plan_, t, "");
    const std::string config_path = trial_path(plan_, t, ".config.json");
    const std::string doc = escape_substitutions(t.document).dump(2) + "\n";  // ltk-train reads it as a config file
    if (!fs::exists(config_path) || read_file(config_path) != doc) write_file_atomic(config_path, doc);
    TrialState s = read_state(plan_, t);
    if (!wait_for_leftover(t.name, s.pid, run_dir)) return;  // stopped while waiting
    std::vector<std::string> args = {options_.trainer};
    // Resumed from its checkpoint when it has one; else (never started, or stopped before its first
    // checkpoint) trained from the beginning.
    const bool started = fs::exists(run_dir + "/checkpoints/last.json");
    if (started)
      args.insert(args.end(), {"--resume", run_dir});
    else
      args.insert(args.end(), {"--config", config_path, "--overwrite"});
    args.insert(args.end(), {"--set", fmt::format("threads={}", options_.threads), "--json"});
    if (until > 0) args.insert(args.end(), {"--until-epoch", std::to_string(until)});
    s.status = "running";
    ++s.attempts;
    log::info("[sweep] {} {} ({}{})", started ? "resume" : "start", t.name, describe(t.assignment),
              until > 0 ? fmt::format(", until epoch {}", until) : "");
    const std::string out_path = trial_path(plan_, t, ".summary.json"), err_path = trial_path(plan_, t, ".log");
    {
      std::ofstream log(err_path, std::ios::app);
      log << kAttemptMarker << s.attempts << ": " << join(args, " ") << "\n";
    }
    ChildSpec child;
    child.program = options_.trainer;
    child.argv = args;
    child.env = {"OMP_NUM_THREADS=" + std::to_string(options_.threads)};
    child.stdout_path = out_path;
    child.stderr_path = err_path;
    child.null_stdin = true;
    const pid_t pid = spawn_child(child);
    s.pid = pid;
    write_state(plan_, t, s);
    children_.push_back(Child{pid, index, now_s(), until});
  }

  void finish(const Child& c, int status) {
    const Trial& t = plan_.trials[c.trial];
    TrialState s = read_state(plan_, t);
    s.seconds += now_s() - c.started;
    s.pid = 0;
    const int code = exit_code_of(status);
    s.exit_code = code;
    const nlohmann::json summary = code == 0 ? last_json_line(trial_path(plan_, t, ".summary.json")) : nlohmann::json();
    if (code == 0 && !summary.is_object()) {
      s.status = "failed";
      s.error = "ltk-train exited 0 without its --json summary in " + trial_path(plan_, t, ".summary.json");
      failed_ = true;
      log::error("[sweep] {} failed: {}", t.name, s.error);
    } else if (code == 0) {
      s.epochs = summary.value("epochs", int64_t{0});
      s.status = summary.value("paused", false) ? "paused" : "done";
      s.error.clear();
      log::info("[sweep] {} {} ({} epochs, {:.1f}s)", t.name, s.status == "done" ? "done" : "paused", s.epochs,
                s.seconds);
    } else if (code == 128 + SIGINT || code == 128 + SIGTERM) {
      s.status = "interrupted";
    } else {
      s.status = "failed";
      s.error = last_error_line(trial_path(plan_, t, ".log"));
      if (code == 127) s.error = "could not run " + options_.trainer;
      failed_ = true;
      log::error("[sweep] {} failed (exit {}): {} (its log: {})", t.name, code, s.error, trial_path(plan_, t, ".log"));
    }
    write_state(plan_, t, s);
  }

  const Plan& plan_;
  RunOptions options_;
  std::vector<Child> children_;
  bool failed_ = false;
};

}  // namespace

int run(const Plan& plan, const Options& options, const RunOptions& run_options) {
  fs::create_directories(plan.dir + "/trials");
  CapturedSignals signals;
  Runner runner(plan, run_options);
  auto stopped = [&] { return 128 + stop_signal_received(); };

  if (options.strategy != "asha") {
    std::vector<size_t> todo;
    for (size_t i = 0; i < plan.trials.size(); ++i)
      if (read_state(plan, plan.trials[i]).status != "done") todo.push_back(i);
    log::info("[sweep] {} trials ({} configurations x {} seed(s){}): {} to train, {} at a time with {} thread(s) each",
              plan.trials.size(), plan.configs.size(), options.seeds,
              options.folds > 1 ? fmt::format(" x {} folds", options.folds) : "", todo.size(), run_options.jobs,
              run_options.threads);
    if (!runner.run_all(todo, 0)) return stopped();
    return runner.failed() ? 1 : 0;
  }

  // Successive halving, a rung at a time: every surviving configuration trains to the rung's epoch,
  // then the best 1/eta go on. Decided on the rung's validation metric alone, so the result does not
  // depend on --jobs or on which trial finished first.
  const auto rung_epochs = rungs(options.min_epochs, options.eta, plan.epochs);
  std::vector<size_t> active(plan.configs.size());
  for (size_t i = 0; i < active.size(); ++i) active[i] = i;
  log::info("[sweep] successive halving over {} configurations x {} seed(s): rungs at epochs {} (eta {})",
            plan.configs.size(), options.seeds, fmt::join(rung_epochs, ", "), options.eta);
  for (size_t r = 0; r < rung_epochs.size(); ++r) {
    const int64_t epoch = rung_epochs[r];
    const bool last = r + 1 == rung_epochs.size();
    std::vector<size_t> todo;
    for (size_t c : active)
      for (size_t i : plan.configs[c].trials) {
        TrialState s = read_state(plan, plan.trials[i]);
        const bool reached =
            s.status == "done" || (!last && (s.status == "paused" || s.status == "stopped") && s.epochs >= epoch);
        if (reached) continue;
        if (s.status == "stopped") {  // stopped at an earlier rung by another definition of the sweep (--extend)
          s.status = "paused";
          write_state(plan, plan.trials[i], s);
        }
        todo.push_back(i);
      }
    if (!runner.run_all(todo, last ? 0 : epoch)) return stopped();
    if (last) break;
    std::vector<std::pair<std::string, double>> scores;
    for (size_t c : active) {
      double sum = 0;
      int n = 0;
      bool failed = false;
      for (size_t i : plan.configs[c].trials) {
        const Trial& t = plan.trials[i];
        if (read_state(plan, t).status == "failed") failed = true;
        double v =
            detail::best_valid(detail::valid_history(trial_path(plan, t, ""), plan.metric), epoch, plan.higher_better);
        if (!std::isnan(v)) {
          sum += v;
          ++n;
        }
      }
      scores.emplace_back(plan.configs[c].id, failed || n == 0 ? std::nan("") : sum / n);
    }
    auto kept = promote(scores, options.eta, plan.higher_better);
    if (kept.empty()) {
      log::error(
          "[sweep] rung {} (epoch {}): no configuration has a validation {} to rank by (see the trials' logs "
          "and metrics.jsonl)",
          r + 1, epoch, plan.metric);
      return 1;
    }
    std::vector<size_t> next;
    for (size_t c : active) {
      if (std::find(kept.begin(), kept.end(), plan.configs[c].id) != kept.end()) {
        next.push_back(c);
        continue;
      }
      for (size_t i : plan.configs[c].trials) {
        TrialState s = read_state(plan, plan.trials[i]);
        if (s.status == "paused") {
          s.status = "stopped";
          s.stopped_at = epoch;
          write_state(plan, plan.trials[i], s);
        }
      }
    }
    log::info("[sweep] rung {} (epoch {}): {} of {} configurations go on: {}", r + 1, epoch, next.size(), active.size(),
              fmt::join(kept, ", "));
    active = next;
  }
  return runner.failed() ? 1 : 0;
}

}  // namespace ltk::sweep
