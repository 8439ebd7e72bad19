// Linked into ltk-train-faults, a test-only build of ltk-train (never installed): it kills its own
// process with SIGKILL at the fault point that LTK_TEST_KILL names, as POINT:STEP (after_step:5,
// in_checkpoint:6, before_pointer:3; see ltk/core/fault.h), in every rank of a distributed job or
// in rank LTK_TEST_KILL_RANK only. LTK_TEST_SLOW_STEP_MS=N sleeps N ms after each step, so that a
// test's signal reliably lands mid-training. The shipped ltk-train has no hook.
#include <csignal>
#include <cstdlib>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>

#include "ltk/core/fault.h"

namespace {

std::string g_point;
int64_t g_step = -1;

int64_t g_slow_ms = 0;

void kill_at(const char* point, int64_t step) {
  if (g_slow_ms > 0 && std::string_view(point) == "after_step")
    std::this_thread::sleep_for(std::chrono::milliseconds(g_slow_ms));
  if (step == g_step && g_point == point) std::raise(SIGKILL);
}

struct InstallHook {
  InstallHook() {
    if (const char* slow = std::getenv("LTK_TEST_SLOW_STEP_MS")) {
      g_slow_ms = std::atoll(slow);
      ltk::set_fault_hook(kill_at);
    }
    const char* spec = std::getenv("LTK_TEST_KILL");
    if (!spec) return;
    // LTK_TEST_KILL_RANK=R: only rank R of a distributed job dies.
    const char* only = std::getenv("LTK_TEST_KILL_RANK");
    const char* rank = std::getenv("RANK");
    if (only && (!rank || std::string(only) != rank)) return;
    std::string s = spec;
    auto colon = s.find(':');
    if (colon == std::string::npos) return;
    g_point = s.substr(0, colon);
    g_step = std::atoll(s.c_str() + colon + 1);
    ltk::set_fault_hook(kill_at);
  }
} install_hook;

}  // namespace
