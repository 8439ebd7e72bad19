// Dynamic batching: requests' texts, already tokenised on a handler thread of the HTTP server, wait in one
// queue; model threads (`workers`, sharing the model's weights) each take batches of at most max_batch texts (waiting
// at most max_delay for more, and not at all when no other request is on its way) and answers each request's texts in
// their own order. Texts of requests that arrived after a reload go to the new model in a batch of their own.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ltk/infer/predictor.h"
#include "ltk/serve/prometheus.h"

namespace ltk::serve {

/// A model being served: the loaded run and the version it was given (1, then +1 per reload).
struct Servable {
  infer::Predictor predictor;
  int64_t version = 0;
  std::string run_dir, checkpoint;  ///< checkpoint: the weights file loaded
  std::string checkpoint_spec;      ///< what was asked for ("best", "last", step-N, a path)
};

/// One request's texts on their way through the batcher.
struct BatchJob {
  std::shared_ptr<const Servable> model;        ///< the model current when the request arrived
  TextDataset data;                             ///< its valid texts, encoded
  std::vector<int64_t> top_k;                   ///< per sample
  std::vector<nlohmann::ordered_json> answers;  ///< per sample, filled by the model thread
  int64_t taken = 0;                            ///< samples handed to a batch (queue lock)
  int64_t finished = 0;                         ///< samples answered (Batcher's finish lock)
  std::string error;                            ///< the model failed on a batch with this job (finish lock)
  std::chrono::steady_clock::time_point arrived;
  std::promise<void> done;
};

struct BatcherOptions {
  int64_t max_batch = 64;    ///< texts per model batch
  double max_delay_ms = 5;   ///< how long the first text of a batch waits for more
  int64_t max_queue = 4096;  ///< texts waiting at most; more are refused
  int workers = 1;           ///< model threads, each taking its own batches (the weights are shared)
};

class Batcher {
 public:
  /// `metrics` (may be null) counts batches, the queue's depth and refused texts.
  Batcher(BatcherOptions options, ServeMetrics* metrics);
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  /// Starts the model threads (idempotent).
  void start();
  /// Refuses new jobs, answers those queued, and joins the model threads (idempotent; any thread).
  void stop();

  /// Counts a request from its start until it is queued (or answered without the model): the
  /// model thread does not wait for more texts when none is on its way.
  class Arrival {
   public:
    explicit Arrival(Batcher& batcher);
    ~Arrival();
    Arrival(const Arrival&) = delete;
    Arrival& operator=(const Arrival&) = delete;

   private:
    friend class Batcher;
    Batcher& batcher_;
    bool counted_ = true;
  };

  enum class Submit { answered, full, stopping, failed };
  /// Queues `job` and waits for its answers (job->answers); `full` when the queue has no room for
  /// its texts, `stopping` after stop(), `failed` (with `error`) when the model failed on it.
  Submit submit(const std::shared_ptr<BatchJob>& job, Arrival& arrival, std::string& error);

  /// Holds the model thread (texts queue up, none is answered) until hold(false).
  void hold(bool on);
  /// Texts waiting in the queue now.
  int64_t queued_texts() const;
  const BatcherOptions& options() const { return options_; }

 private:
  struct Part {
    std::shared_ptr<BatchJob> job;
    int64_t start, count;
  };
  void loop();
  /// Waits for the next batch and takes it off the queue; false when stopping with nothing left.
  bool next_batch(std::vector<Part>& parts, int64_t& n);
  void run_batch(const std::vector<Part>& parts, int64_t n);

  BatcherOptions options_;
  ServeMetrics* metrics_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<BatchJob>> queue_;
  int64_t queued_texts_ = 0;
  int64_t arriving_ = 0;  ///< requests being read and tokenised (under mutex_)
  bool stopping_ = false;
  bool held_ = false;
  std::mutex finish_mutex_;  ///< a job's parts may be answered by several model threads
  std::mutex join_mutex_;    ///< start() and stop() from several threads
  std::vector<std::thread> threads_;
};

}  // namespace ltk::serve
