#include "ltk/core/parallel.h"

#include <sched.h>

#include <algorithm>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

namespace ltk {

namespace {
thread_local bool in_chunk = false;

/// Marks the current thread as running a chunk for as long as it lives.
struct ChunkScope {
  bool was = in_chunk;
  ChunkScope() { in_chunk = true; }
  ~ChunkScope() { in_chunk = was; }
};
}  // namespace

void parallel_chunks(int64_t n, int threads, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t chunks = in_chunk ? 1 : std::clamp<int64_t>(n / std::max<int64_t>(1, grain), 1, std::max(1, threads));
  if (chunks == 1) {
    ChunkScope scope;
    fn(0, n);
    return;
  }
  std::vector<std::exception_ptr> failures(static_cast<size_t>(chunks));
  auto run = [&](int64_t c) {
    ChunkScope scope;
    try {
      fn(n * c / chunks, n * (c + 1) / chunks);
    } catch (...) {
      failures[static_cast<size_t>(c)] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(chunks - 1));
  for (int64_t c = 1; c < chunks; ++c) {
    try {
      pool.emplace_back(run, c);
    } catch (const std::system_error&) {  // no thread to be had (a process or memory limit): here, then
      run(c);
    }
  }
  run(0);
  for (auto& t : pool) t.join();
  for (auto& failure : failures)
    if (failure) std::rethrow_exception(failure);
}

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace ltk
