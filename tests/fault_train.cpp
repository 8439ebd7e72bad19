// Linked into ltk-train-faults, a test-only build of ltk-train (never installed): it kills its own
// process with SIGKILL at the fault point that LTK_TEST_KILL names, as POINT:STEP (after_step:5,
// in_checkpoint:6, before_pointer:3; see ltk/core/fault.h), in every rank of a distributed job or
// in rank LTK_TEST_KILL_RANK only. LTK_TEST_SLOW_STEP_MS=N sleeps N ms after each step, so that a
// test's signal reliably lands mid-training. LTK_TEST_PAUSE=POINT:STEP with LTK_TEST_PAUSE_DIR=D
// stops there: it creates D/paused and waits (at most 5 minutes) for D/go, so that a test can fill
// the disk or make the run directory read-only at a known place. The shipped ltk-train has no hook.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>
#include <unistd.h>

#include "ltk/core/fault.h"

namespace {

std::string g_point;
int64_t g_step = -1;

int64_t g_slow_ms = 0;

std::string g_pause_point, g_pause_dir;
int64_t g_pause_step = -1;

void kill_at(const char* point, int64_t step) {
  if (g_slow_ms > 0 && std::string_view(point) == "after_step")
    std::this_thread::sleep_for(std::chrono::milliseconds(g_slow_ms));
  if (step == g_step && g_point == point) std::raise(SIGKILL);
  if (step == g_pause_step && g_pause_point == point) {
    std::fclose(std::fopen((g_pause_dir + "/paused").c_str(), "w"));
    for (int i = 0; i < 15000 && access((g_pause_dir + "/go").c_str(), F_OK) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool parse_point(const char* spec, std::string& point, int64_t& step) {
  if (!spec) return false;
  std::string s = spec;
  auto colon = s.find(':');
  if (colon == std::string::npos) return false;
  point = s.substr(0, colon);
  step = std::atoll(s.c_str() + colon + 1);
  return true;
}

struct InstallHook {
  InstallHook() {
    if (const char* slow = std::getenv("LTK_TEST_SLOW_STEP_MS")) {
      g_slow_ms = std::atoll(slow);
      ltk::set_fault_hook(kill_at);
    }
    if (const char* dir = std::getenv("LTK_TEST_PAUSE_DIR");
        dir && parse_point(std::getenv("LTK_TEST_PAUSE"), g_pause_point, g_pause_step)) {
      g_pause_dir = dir;
      ltk::set_fault_hook(kill_at);
    }
    const char* spec = std::getenv("LTK_TEST_KILL");
    if (!spec) return;
    // LTK_TEST_KILL_RANK=R: only rank R of a distributed job dies.
    const char* only = std::getenv("LTK_TEST_KILL_RANK");
    const char* rank = std::getenv("RANK");
    if (only && (!rank || std::string(only) != rank)) return;
    if (parse_point(spec, g_point, g_step)) ltk::set_fault_hook(kill_at);
  }
} install_hook;

}  // namespace
