// ltk-train: trains a model from a JSON config into a run directory.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include "app.h"
#include "ltk/config/config.h"
#include "ltk/core/log.h"
#include "ltk/core/process.h"
#include "ltk/core/stop.h"
#include "ltk/models/registry.h"
#include "ltk/train/run_training.h"

namespace {

// The first SIGINT/SIGTERM asks the trainer to stop after the current step and write a
// checkpoint; a second one exits at once.
extern "C" void on_signal(int sig) {
  if (ltk::stop_signal() != 0) _exit(128 + sig);
  ltk::request_stop(sig);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// ltk-train --nproc N: N local workers of one data-parallel job, each this program with torchrun's
// environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
// A free port for the workers' rendezvous.
int rendezvous_port() {
  const int port = ltk::free_local_port();
  if (port <= 0) throw ltk::Error("--nproc: cannot find a free local port for the rendezvous; set MASTER_PORT");
  return port;
}

int launch_workers(int nproc, int argc, char** argv, double timeout_s) {
  if (std::getenv("WORLD_SIZE"))
    throw ltk::UsageError("--nproc starts the workers itself: drop it under torchrun (WORLD_SIZE is set)");
  std::vector<std::string> args;  // this command without --nproc
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--nproc") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0) continue;
    args.push_back(a);
  }
  const std::string port = std::getenv("MASTER_PORT") ? std::getenv("MASTER_PORT") : std::to_string(rendezvous_port());
  const std::string addr = std::getenv("MASTER_ADDR") ? std::getenv("MASTER_ADDR") : "127.0.0.1";
  ltk::CapturedSignals signals;  // passed on to the workers
  std::vector<pid_t> pids;
  for (int r = 0; r < nproc; ++r) {
    ltk::ChildSpec child;
    child.program = "/proc/self/exe";
    child.argv = {argv[0]};
    child.argv.insert(child.argv.end(), args.begin(), args.end());
    child.env = {"RANK=" + std::to_string(r),
                 "LOCAL_RANK=" + std::to_string(r),
                 "WORLD_SIZE=" + std::to_string(nproc),
                 "LOCAL_WORLD_SIZE=" + std::to_string(nproc),
                 "MASTER_ADDR=" + addr,
                 "MASTER_PORT=" + port};
    try {
      pids.push_back(ltk::spawn_child(child));
    } catch (const ltk::Error&) {
      for (pid_t p : pids) kill(p, SIGKILL);
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      throw ltk::Error("--nproc: fork failed");
    }
  }
  std::cerr << "ltk-train: started " << nproc << " workers (rendezvous at " << addr << ":" << port << ")\n";
  int first_failure = 0, live = nproc;
  using Clock = std::chrono::steady_clock;
  Clock::time_point failed_at{};
  int term_sent = 0;
  while (live > 0) {
    if (int sig = ltk::CapturedSignals::take())
      for (pid_t p : pids)
        if (p > 0) kill(p, sig);
    int status = 0;
    pid_t done = waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      for (size_t r = 0; r < pids.size(); ++r) {
        if (pids[r] != done) continue;
        pids[r] = -1;
        --live;
        const int code = ltk::exit_code_of(status);
        if (code != 0) {
          if (code == 127 && WIFEXITED(status))
            std::cerr << "ltk-train: rank " << r << " (pid " << done << ") could not start (exec of /proc/self/exe failed)\n";
          else if (WIFSIGNALED(status))
            std::cerr << "ltk-train: rank " << r << " (pid " << done << ") was killed by signal " << WTERMSIG(status) << "\n";
          else
            std::cerr << "ltk-train: rank " << r << " (pid " << done << ") exited with " << code << "\n";
          if (!first_failure) {
            first_failure = code;
            failed_at = Clock::now();
          }
        }
      }
      continue;
    }
    if (first_failure && live > 0) {
      // The others notice a lost rank by themselves at their next collective (or, before the
      // rendezvous completes, at trainer.dist_timeout_s): past a short grace, stop them.
      const double grace = std::min(timeout_s, 15.0) + 5;
      double waited = std::chrono::duration<double>(Clock::now() - failed_at).count();
      int want = waited > grace + 5 ? 2 : waited > grace ? 1 : 0;
      for (; term_sent < want; ++term_sent)
        for (pid_t p : pids) if (p > 0) kill(p, term_sent == 0 ? SIGTERM : SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return first_failure;
}

std::string app_name() {
  const char* rank = std::getenv("RANK");
  const char* world = std::getenv("WORLD_SIZE");
  if (rank && world && std::string(world) != "1") return std::string("ltk-train [rank ") + rank + "]";
  return "ltk-train";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name = app_name();
  return ltk::app::guarded_main(name.c_str(), argv, [&] {
    cxxopts::Options options("ltk-train", "Train a text classifier from a JSON config into a run directory.");
    options.add_options()
        ("c,config", "experiment config (JSON)", cxxopts::value<std::string>())
        ("resume", "continue the run in DIR from its last checkpoint (its config, with any --set)",
         cxxopts::value<std::string>())
        ("s,set", "override a config key, e.g. --set trainer.epochs=3 (repeatable)",
         cxxopts::value<std::vector<std::string>>())
        ("dump-config", "print the resolved config (every default filled in) and exit")
        ("overwrite", "replace an existing run in the output directory")
        ("json", "print a JSON summary of the run on stdout")
        ("nproc", "train with N local processes (data-parallel, one share of the cores each); for several "
                  "hosts use torchrun (README)", cxxopts::value<int>())
        ("baseline", "also train the tf-idf linear baseline on the same data (into RUN/baseline) and compare "
                     "them on the test split, in the log, report.html and --json")
        ("until-epoch", "pause after the checkpoint at the end of epoch N (exit 0, no test evaluation); "
                        "--resume continues exactly as an uninterrupted run (ltk-sweep's successive halving)",
         cxxopts::value<int64_t>())
        ("h,help", "show this help");
    bool help = false;
    auto args = ltk::app::parse(options, argc, argv, help);
    if (help) return 0;
    bool resume = args.count("resume") > 0;
    if (!args.count("config") && !resume) throw ltk::UsageError("--config (or --resume DIR) is required");
    if (args.count("config") && resume) throw ltk::UsageError("--resume takes the run's own config; drop --config");
    std::vector<std::string> overrides;
    if (args.count("set")) overrides = args["set"].as<std::vector<std::string>>();
    ltk::Config config = resume ? ltk::resume_config(args["resume"].as<std::string>(), overrides)
                                : ltk::load_config(args["config"].as<std::string>(), overrides);
    if (args.count("dump-config")) {
      std::cout << ltk::escape_substitutions(ltk::to_json(config)).dump(2) << std::endl;
      return 0;
    }
    if (args.count("nproc")) {
      int n = args["nproc"].as<int>();
      if (n < 1) throw ltk::UsageError("--nproc must be >= 1");
      if (n > 1) return launch_workers(n, argc, argv, config.trainer.dist_timeout_s);
    }
    install_signal_handlers();
    ltk::TrainOptions train;
    train.overwrite = args.count("overwrite") > 0;
    train.resume = resume;
    train.baseline = args.count("baseline") > 0;
    if (args.count("until-epoch")) {
      train.until_epoch = args["until-epoch"].as<int64_t>();
      if (train.until_epoch < 1) throw ltk::UsageError("--until-epoch must be >= 1");
    }
    ltk::TrainSummary s = ltk::run_training(config, train);
    if (s.interrupted) return 128 + s.interrupted;
    if (!s.paused) ltk::log::info("run directory: {} (evaluate: ltk-eval --run {} --data FILE)", config.output_dir,
                   config.output_dir);
    const char* rank = std::getenv("RANK");
    if (args.count("json") && (!rank || std::string(rank) == "0")) {
      nlohmann::json j = {{"run", config.output_dir},     {"steps", s.steps},
                          {"epochs", s.epochs},           {"best_epoch", s.best_epoch},
                          {"paused", s.paused},           {"early_stopped", s.early_stopped},
                          {"seconds", s.seconds},         {"samples_per_s", s.samples_per_s},
                          {"train_loss", s.last_train_loss}, {"data_seconds", s.data_seconds},
                          {"eval_seconds", s.eval_seconds},
                          {"sync_seconds", s.sync_seconds},
                          {"sync_mb_per_step", s.sync_bytes / 1e6},
                          {"blas_core", ltk::openblas_core()},
                          {"train_samples_per_s", s.seconds > s.eval_seconds ? s.samples_per_s * s.seconds / (s.seconds - s.eval_seconds) : 0.0}};
      if (s.test) j["test"] = s.test->headline();
      if (!s.baseline.is_null()) j["baseline"] = s.baseline;
      std::cout << j.dump() << std::endl;
    }
    return 0;
  });
}
