// A stop request (SIGINT/SIGTERM) that the trainer honours at the next step boundary.
#pragma once

namespace ltk {

/// Records a stop request; async-signal-safe (a lock-free atomic store).
void request_stop(int signal) noexcept;
/// The signal of the pending stop request, or 0.
int stop_signal() noexcept;
void clear_stop() noexcept;

}  // namespace ltk
