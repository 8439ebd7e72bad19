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
void throw_if_stop_requested();

/// Records a stop request; async-signal-safe (a lock-free atomic store).
void request_stop(int signal) noexcept;
/// The signal of the pending stop request, or 0.
int stop_signal() noexcept;
void clear_stop() noexcept;

}  // namespace ltk
