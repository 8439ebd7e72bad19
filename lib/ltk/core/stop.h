// A stop request (SIGINT/SIGTERM) that the trainer honours at the next step boundary.
#pragma once

#include "ltk/core/error.h"

namespace ltk {

/// Thrown where long work (data loading, validation, the final evaluation) polls the stop flag
/// and finds a request: the caller decides what is kept (the trainer keeps its last checkpoint).
class StopRequested : public Error {
 public:
  explicit StopRequested(int signal) : Error("stopped by signal " + std::to_string(signal)), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

/// Throws StopRequested when a stop is pending.
/// Throws StopRequested when a stop was requested, unless a StopDeferral is alive.
void throw_if_stop_requested();

/// While alive, throw_if_stop_requested() does not throw: the request waits for a point where
/// every process of a distributed job stops together (the trainer's step boundary).
class StopDeferral {
 public:
  StopDeferral();
  ~StopDeferral();
  StopDeferral(const StopDeferral&) = delete;
  StopDeferral& operator=(const StopDeferral&) = delete;
};

/// Records a stop request; async-signal-safe (a lock-free atomic store).
void request_stop(int signal) noexcept;
/// The signal of the pending stop request, or 0.
int stop_signal() noexcept;
void clear_stop() noexcept;

}  // namespace ltk
