#include "ltk/core/fault.h"

#include <atomic>

namespace ltk {

namespace {
std::atomic<FaultHook> g_hook{nullptr};
}  // namespace

void set_fault_hook(FaultHook hook) noexcept { g_hook.store(hook); }

void fault_point(const char* point, int64_t step) {
  if (FaultHook hook = g_hook.load(std::memory_order_relaxed)) hook(point, step);
}

}  // namespace ltk
