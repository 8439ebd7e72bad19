#include "ltk/serve/batcher.h"

#include <c10/core/InferenceMode.h>

#include "ltk/core/log.h"

namespace ltk::serve {

using Clock = std::chrono::steady_clock;

Batcher::Batcher(BatcherOptions options, ServeMetrics* metrics) : options_(options), metrics_(metrics) {}

Batcher::~Batcher() {
  stop();
}

void Batcher::start() {
  std::lock_guard<std::mutex> one_join(join_mutex_);
  if (!threads_.empty()) return;
  for (int i = 0; i < std::max(1, options_.workers); ++i) threads_.emplace_back([this] { loop(); });
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  std::lock_guard<std::mutex> one_join(join_mutex_);  // run() and the destructor may both stop it
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Batcher::hold(bool on) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    held_ = on;
  }
  cv_.notify_all();
}

int64_t Batcher::queued_texts() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queued_texts_;
}

Batcher::Arrival::Arrival(Batcher& batcher) : batcher_(batcher) {
  std::lock_guard<std::mutex> lock(batcher_.mutex_);
  ++batcher_.arriving_;
}

Batcher::Arrival::~Arrival() {
  if (!counted_) return;
  {
    std::lock_guard<std::mutex> lock(batcher_.mutex_);
    --batcher_.arriving_;
  }
  batcher_.cv_.notify_all();
}

Batcher::Submit Batcher::submit(const std::shared_ptr<BatchJob>& job, Arrival& arrival, std::string& error) {
  const int64_t n = job->data.num_texts();
  job->answers.resize(static_cast<size_t>(n));
  auto done = job->done.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --arriving_;  // queued (or refused) now, under the lock the model thread's wait reads it with
    arrival.counted_ = false;
    if (stopping_ || queued_texts_ + n > options_.max_queue) {
      cv_.notify_all();  // one fewer on its way: the model thread need not wait for it
      if (metrics_ && !stopping_) metrics_->texts(0, n);
      return stopping_ ? Submit::stopping : Submit::full;
    }
    job->arrived = Clock::now();
    queue_.push_back(job);
    queued_texts_ += n;
    if (metrics_) metrics_->queue_depth(queued_texts_);
  }
  cv_.notify_all();
  done.wait();
  if (!job->error.empty()) {
    error = job->error;
    return Submit::failed;
  }
  return Submit::answered;
}

bool Batcher::next_batch(std::vector<Part>& parts, int64_t& n) {
  const auto max_delay =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(options_.max_delay_ms));
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return (!queue_.empty() && (!held_ || stopping_)) || (stopping_ && queue_.empty()); });
    if (queue_.empty()) return false;  // stopping, and nothing left to answer
    // Wait for more texts until the batch is full, the first text has waited max_delay, or no
    // other request is on its way (so that a lone client never waits for nothing).
    const auto first = queue_.front();
    const auto deadline = first->arrived + max_delay;
    cv_.wait_until(lock, deadline, [&] {
      return queue_.empty() || queue_.front() != first || queued_texts_ >= options_.max_batch || arriving_ == 0 ||
             stopping_;
    });
    // Another model thread took that request meanwhile: wait for the next one from the start.
    if (!queue_.empty() && queue_.front() == first && (!held_ || stopping_)) break;
  }
  const auto model = queue_.front()->model;
  while (!queue_.empty() && n < options_.max_batch) {
    auto& job = queue_.front();
    if (job->model != model) break;  // a request that arrived after a reload: the next batch
    const int64_t take = std::min(job->data.num_texts() - job->taken, options_.max_batch - n);
    parts.push_back(Part{job, job->taken, take});
    job->taken += take;
    n += take;
    if (job->taken == job->data.num_texts()) queue_.pop_front();
  }
  queued_texts_ -= n;
  if (metrics_) metrics_->queue_depth(queued_texts_);
  if (!queue_.empty()) cv_.notify_all();  // the rest is another model thread's
  return true;
}

void Batcher::run_batch(const std::vector<Part>& parts, int64_t n) {
  const auto t0 = Clock::now();
  std::string error;
  try {
    TextDataset batch;
    std::vector<int64_t> top_k;
    top_k.reserve(static_cast<size_t>(n));
    for (const auto& p : parts)
      for (int64_t i = p.start; i < p.start + p.count; ++i) {
        infer::append_text(batch, p.job->data, i);
        top_k.push_back(p.job->top_k[static_cast<size_t>(i)]);
      }
    c10::InferenceMode inference;
    auto answers = parts.front().job->model->predictor.answer(batch, top_k, options_.max_batch);
    size_t row = 0;
    for (const auto& p : parts)
      for (int64_t i = p.start; i < p.start + p.count; ++i)
        p.job->answers[static_cast<size_t>(i)] = std::move(answers[row++]);
  } catch (const std::exception& e) {
    error = e.what();
    log::error("a batch of {} texts failed: {}", n, error);
  }
  if (metrics_) {
    metrics_->batch(n, std::chrono::duration<double>(Clock::now() - t0).count());
    metrics_->texts(error.empty() ? n : 0, 0);
  }
  std::lock_guard<std::mutex> lock(finish_mutex_);
  for (const auto& p : parts) {
    if (!error.empty()) p.job->error = error;
    p.job->finished += p.count;
    if (p.job->finished == p.job->data.num_texts()) p.job->done.set_value();
  }
}

void Batcher::loop() {
  for (;;) {
    std::vector<Part> parts;
    int64_t n = 0;
    if (!next_batch(parts, n)) return;
    run_batch(parts, n);
  }
}

}  // namespace ltk::serve
