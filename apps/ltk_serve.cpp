// ltk-serve: a run behind HTTP (ltk/serve/server.h): /v1/predict, the Open Inference Protocol
// (KServe v2), /metrics, /admin/reload. SIGHUP reloads, SIGTERM and SIGINT drain and exit 0.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "app.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/parallel.h"
#include "ltk/core/runtime.h"
#include "ltk/serve/server.h"

namespace {

// The signal thread: SIGHUP reloads; SIGTERM or SIGINT stops accepting, and if the drain has not
// finished `drain_s` later (a queue of thousands of texts for a slow model), exits 1 anyway.
class SignalThread {
 public:
  SignalThread(ltk::serve::Server& server, const sigset_t& signals, double drain_s)
      : server_(server), signals_(signals), drain_s_(drain_s), thread_([this] { loop(); }) {}
  ~SignalThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      finished_ = true;
    }
    cv_.notify_all();
    if (!stopped_) pthread_kill(thread_.native_handle(), SIGTERM);  // wake sigwait: the server stopped on its own
    thread_.join();
  }

 private:
  void loop() {
    for (;;) {
      int sig = 0;
      if (sigwait(&signals_, &sig) != 0) continue;
      if (sig == SIGHUP) {
        ltk::log::info("SIGHUP: reloading");
        server_.reload();  // the result is logged; a failure keeps the model being served
        continue;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      if (finished_) return;
      stopped_ = true;
      ltk::log::info("{}: no new connections; answering the requests being handled",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT");
      lock.unlock();
      server_.shutdown();
      lock.lock();
      if (!cv_.wait_for(lock, std::chrono::duration<double>(drain_s_), [&] { return finished_; })) {
        ltk::log::error("the drain did not finish in {} s: exiting", drain_s_);
        std::_Exit(1);
      }
      return;
    }
  }

  ltk::serve::Server& server_;
  sigset_t signals_;
  double drain_s_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool finished_ = false;
  std::atomic<bool> stopped_{false};
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  // Signals go to one thread (sigwait), never into the middle of a request: blocked before any
  // thread starts (the BLAS check's and LibTorch's included), so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return ltk::app::guarded_main("ltk-serve", argv, [&] {
    cxxopts::Options options(
        "ltk-serve",
        "Serve a run over HTTP, with dynamic batching and hot reload.\n"
        "  POST /v1/predict {\"texts\": [...]} or {\"instances\": [{\"id\": ..., \"text\": ...}], \"top_k\": k}\n"
        "       -> {\"model_version\": N, \"predictions\": [...]}, each as ltk-predict prints it\n"
        "  GET /v1/model; the Open Inference Protocol (KServe v2): GET /v2/health/live, /v2/health/ready,\n"
        "       /v2/models/NAME, POST /v2/models/NAME/infer (a BYTES input \"text\")\n"
        "  GET /metrics (Prometheus); POST /admin/reload [{\"run\": DIR, \"checkpoint\": C}] or SIGHUP\n"
        "SIGTERM or SIGINT: stop accepting, answer the requests being handled, exit 0.");
    // clang-format off
    options.add_options()
        ("r,run", "run directory made by ltk-train", cxxopts::value<std::string>())
        ("checkpoint", "best, last, step-N, or a weights file", cxxopts::value<std::string>()->default_value("best"))
        ("device", "override the run's device (cpu, cuda, cuda:N)", cxxopts::value<std::string>()->default_value(""))
        ("host", "address to listen on (0.0.0.0: every interface)", cxxopts::value<std::string>()->default_value("127.0.0.1"))
        ("port", "port to listen on (0: any free port; see --port-file)", cxxopts::value<int>()->default_value("8080"))
        ("port-file", "write the port listened on to this file once listening", cxxopts::value<std::string>()->default_value(""))
        ("model-name", "the model's name in /v2/models/NAME (default: the run directory's name)",
         cxxopts::value<std::string>()->default_value(""))
        ("threads", "LibTorch threads of each model worker (0 = all cores)", cxxopts::value<int64_t>()->default_value("1"))
        ("workers", "model workers: threads that each run their own batches on the one copy of the weights "
                    "(0: the cores / --threads, at least 1)", cxxopts::value<int>()->default_value("0"))
        ("http-threads", "requests handled at once (a thread each while its answer is made; idle and incoming "
                         "connections hold none)", cxxopts::value<int>()->default_value("64"))
        ("max-batch", "texts per model batch (1: no batching)", cxxopts::value<int64_t>()->default_value("64"))
        ("max-delay-ms", "the longest a text waits for others to batch with (not at all when no other request "
                         "is being read)", cxxopts::value<double>()->default_value("5"))
        ("max-queue", "texts waiting at most; requests beyond it get 503 and Retry-After",
         cxxopts::value<int64_t>()->default_value("4096"))
        ("max-body", "largest request body in bytes (413 beyond)", cxxopts::value<int64_t>()->default_value("1048576"))
        ("header-timeout-s", "a request's line and headers must arrive within this (a new connection's: of its "
                             "accept); else 408 and closed", cxxopts::value<double>()->default_value("5"))
        ("body-timeout-s", "a request's body must arrive within this of its headers, and a response be read "
                           "within it; else 408 and closed", cxxopts::value<double>()->default_value("10"))
        ("idle-timeout-s", "a keep-alive connection without a request closes after this",
         cxxopts::value<double>()->default_value("5"))
        ("drain-timeout-s", "after SIGTERM/SIGINT, exit 1 if the requests that had arrived are not all answered "
                            "within this", cxxopts::value<double>()->default_value("30"))
        ("timeout-s", "sets --header-timeout-s, --body-timeout-s and --idle-timeout-s at once (those given "
                      "explicitly win)", cxxopts::value<double>())
        ("max-connections", "connections open at once (capped below the open-files limit, which is raised to its "
                            "hard limit); more are answered 503 and closed", cxxopts::value<int>()->default_value("10000"))
        ("max-connections-per-client", "connections open at once from one client address (0: no cap; behind a "
                                       "proxy, every client is the proxy); more are answered 503 and closed",
         cxxopts::value<int>()->default_value("256"))
        ("admin-token", "accept POST /admin/reload from anywhere with \"Authorization: Bearer TOKEN\" "
                        "(without it: from loopback only)", cxxopts::value<std::string>()->default_value(""))
        ("h,help", "show this help");
    // clang-format on
    bool help = false;
    auto args = ltk::app::parse(options, argc, argv, help);
    if (help) return 0;
    if (!args.count("run")) throw ltk::UsageError("--run is required");
    ltk::serve::ServeOptions o;
    o.run_dir = args["run"].as<std::string>();
    o.checkpoint = args["checkpoint"].as<std::string>();
    o.device = args["device"].as<std::string>();
    o.model_name = args["model-name"].as<std::string>();
    o.max_batch = args["max-batch"].as<int64_t>();
    o.max_delay_ms = args["max-delay-ms"].as<double>();
    o.max_queue = args["max-queue"].as<int64_t>();
    o.admin_token = args["admin-token"].as<std::string>();
    o.http.host = args["host"].as<std::string>();
    o.http.port = args["port"].as<int>();
    o.http.threads = args["http-threads"].as<int>();
    const int64_t max_body = args["max-body"].as<int64_t>();
    auto timeout = [&](const char* name) {
      const double t =
          args.count(name) || !args.count("timeout-s") ? args[name].as<double>() : args["timeout-s"].as<double>();
      if (!(t > 0 && t <= 3600)) throw ltk::UsageError(std::string("--") + name + " must be in (0, 3600] seconds");
      return t;
    };
    o.http.header_timeout_s = timeout("header-timeout-s");
    o.http.body_timeout_s = o.http.write_timeout_s = timeout("body-timeout-s");
    o.http.idle_timeout_s = timeout("idle-timeout-s");
    const double drain_s = timeout("drain-timeout-s");
    o.http.max_connections = args["max-connections"].as<int>();
    o.http.max_connections_per_client = args["max-connections-per-client"].as<int>();
    if (o.http.max_connections < 1) throw ltk::UsageError("--max-connections must be >= 1");
    if (o.http.max_connections_per_client < 0) throw ltk::UsageError("--max-connections-per-client must be >= 0");
    if (o.http.port < 0 || o.http.port > 65535) throw ltk::UsageError("--port must be in 0..65535");
    if (o.http.threads < 1 || o.http.threads > 4096) throw ltk::UsageError("--http-threads must be in 1..4096");
    if (o.max_batch < 1 || o.max_batch > 65536) throw ltk::UsageError("--max-batch must be in 1..65536");
    if (!(o.max_delay_ms >= 0 && o.max_delay_ms <= 60000)) throw ltk::UsageError("--max-delay-ms must be in 0..60000");
    if (o.max_queue < 1 || o.max_queue > (int64_t{1} << 30)) throw ltk::UsageError("--max-queue must be in 1..2^30");
    if (max_body < 1) throw ltk::UsageError("--max-body must be >= 1");
    o.http.max_body = static_cast<size_t>(max_body);
    const int per_worker = ltk::apply_threads(args["threads"].as<int64_t>());
    // Workers x threads stays within the cores unless both were asked for.
    const int cores = ltk::usable_cores();
    o.workers = args["workers"].as<int>();
    if (o.workers < 0 || o.workers > 256) throw ltk::UsageError("--workers must be in 0..256");
    if (o.workers == 0)
      o.workers = std::max(1, cores / std::max(1, per_worker));
    else if (o.workers * per_worker > cores)
      ltk::log::warn("--workers {} x {} LibTorch threads each is more than the {} cores: they will contend", o.workers,
                     per_worker, cores);

    ltk::serve::Server server(o);
    server.bind();
    const std::string port_file = args["port-file"].as<std::string>();
    if (!port_file.empty()) ltk::write_file_atomic(port_file, std::to_string(server.port()) + "\n");
    auto model = server.current();
    ltk::log::info("serving '{}' version {} ({}, {}) on http://{}:{} (max batch {}, max delay {} ms)",
                   server.model_name(), model->version, model->run_dir, model->checkpoint, o.http.host, server.port(),
                   o.max_batch, o.max_delay_ms);
    ltk::log::info("{} model worker(s) x {} LibTorch thread(s), sharing the weights", o.workers, per_worker);
    ltk::log::info(
        "connections: at most {} ({} per client address), request heads due in {} s, bodies in {} s, "
        "idle keep-alive closed after {} s; {} handler threads",
        server.connections().max_connections, o.http.max_connections_per_client, o.http.header_timeout_s,
        o.http.body_timeout_s, o.http.idle_timeout_s, o.http.threads);
    {
      // A signal that arrived while the model loaded is pending, and taken now: a SIGTERM then
      // stops the server before it serves (run() returns at once).
      SignalThread signal_thread(server, signals, drain_s);
      server.run();
    }
    ltk::log::info("stopped");
    return 0;
  });
}
