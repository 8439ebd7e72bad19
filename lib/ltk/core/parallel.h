// Work split over threads without OpenMP: ltk is not compiled with -fopenmp, so LibTorch's
// at::parallel_for runs its body on the calling thread alone when ltk's own code calls it.
#pragma once

#include <cstdint>
#include <functional>

namespace ltk {

/// Runs fn(begin, end) over [0, n) in at most `threads` contiguous chunks of at least `grain`
/// items each, the first on the calling thread, and waits for all; then rethrows the exception of
/// the first chunk in order that threw (the one a serial run would have met first). Called from
/// inside a chunk, it runs fn(0, n) in place.
void parallel_chunks(int64_t n, int threads, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

/// The cores this process may run on (its CPU affinity: taskset, a cpuset), at least 1; what
/// "all cores" means for ltk's threads. (A cgroup CPU quota is not counted: give --threads there.)
int usable_cores();

}  // namespace ltk
