#include "ltk/core/stop.h"

#include <atomic>

namespace ltk {

namespace {
std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free, "a signal handler needs a lock-free atomic");
}  // namespace

void request_stop(int signal) noexcept { g_stop.store(signal); }
int stop_signal() noexcept { return g_stop.load(); }
void clear_stop() noexcept { g_stop.store(0); }

namespace {
std::atomic<int> g_deferred{0};
}  // namespace

StopDeferral::StopDeferral() { ++g_deferred; }
StopDeferral::~StopDeferral() { --g_deferred; }

void throw_if_stop_requested() {
  if (g_deferred.load() > 0) return;
  if (int sig = g_stop.load()) throw StopRequested(sig);
}

}  // namespace ltk
