// The trainer's clock, internal to lib/ltk/train: seconds since the first call.
#pragma once

#include <chrono>

namespace ltk::train_detail {

inline double now_s() {
  using Clock = std::chrono::steady_clock;
  static const Clock::time_point start = Clock::now();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace ltk::train_detail
