// ltk-serve: a loaded run behind HTTP. Requests are read by the HTTP server's event thread, validated
// and tokenised on a handler thread, merged into batches by one model thread (dynamic batching, batcher.h), and
// answered in their own order. The model can be swapped while serving (reload); each request is answered by the model
// that was current when it arrived.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ltk/infer/predictor.h"
#include "ltk/serve/batcher.h"
#include "ltk/serve/http.h"
#include "ltk/serve/prometheus.h"

namespace ltk::serve {

using infer::Predictor;
using infer::TextInput;

struct ServeOptions {
  HttpOptions http;
  std::string run_dir;
  std::string checkpoint = "best";
  std::string device;         ///< "" = the run's device
  std::string model_name;     ///< the KServe v2 model name; "" = the run directory's name
  int64_t max_batch = 64;     ///< texts per model batch
  double max_delay_ms = 5;    ///< how long the first text of a batch waits for more
  int64_t max_queue = 4096;   ///< texts waiting at most; more are refused with 503
  int workers = 1;            ///< model threads sharing the model, each running its own batches
  std::string admin_token;    ///< "": /admin/reload only from loopback; else "Authorization: Bearer TOKEN"
};

/// What reload() did: `version` is the one now served (the new one, or the old one on failure).
struct ReloadResult {
  bool ok = false;
  int64_t version = 0;
  std::string error;
  double seconds = 0;
};

class Server {
 public:
  /// Loads the run (errors as load_run's); binds nothing yet.
  explicit Server(ServeOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds the port (ServeError when it cannot) and starts the model thread.
  void bind();
  int port() const { return http_.port(); }
  /// Serves until shutdown(): then returns after every accepted request was answered and the
  /// queue drained.
  void run();
  /// Stops accepting (thread- and signal-thread-safe, idempotent); run() returns after draining.
  void shutdown();
  /// Loads `run_dir` ("" = the current one) at `checkpoint` ("": what the current model was loaded
  /// as, "best", "last"... re-read; "best" for another run) next to the model
  /// being served and swaps it in; a failure keeps the old model and says why. One at a time.
  ReloadResult reload(const std::string& run_dir = "", const std::string& checkpoint = "");
  /// Answers one request (the HTTP server's handler; tests call it directly too).
  HttpResponse handle(const HttpRequest& request);

  std::shared_ptr<const Servable> current() const;
  /// Holds the model thread (texts queue up, none is answered) until hold(false): maintenance, and
  /// tests that need a full queue or requests in flight at a known moment.
  void hold(bool on);
  /// Texts waiting in the queue now.
  int64_t queued_texts() const;
  const std::string& model_name() const { return name_; }
  /// The HTTP server's connection figures (also in /metrics).
  ConnectionStats connections() const { return http_.stats(); }

 private:
  HttpResponse predict_v1(const HttpRequest& request, const std::shared_ptr<const Servable>& model);
  HttpResponse infer_v2(const HttpRequest& request, const std::shared_ptr<const Servable>& model);
  HttpResponse admin_reload(const HttpRequest& request);
  /// Encodes the inputs without an error, queues them for the model and waits for their answers
  /// (in order, into `answers`); the response instead when they are refused (503 queue full or
  /// stopping, 500 the model failed).
  std::optional<HttpResponse> answer(const std::shared_ptr<const Servable>& model, const std::vector<TextInput>& inputs,
                                     int64_t top_k, Batcher::Arrival& arrival,
                                     std::vector<nlohmann::ordered_json>& answers);

  ServeOptions options_;
  std::string name_;
  ServeMetrics metrics_;
  HttpServer http_;

  mutable std::mutex model_mutex_;
  std::shared_ptr<const Servable> model_;
  std::mutex reload_mutex_;
  int64_t next_version_ = 1;

  std::atomic<bool> draining_{false};
  Batcher batcher_;
};

}  // namespace ltk::serve
