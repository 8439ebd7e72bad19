// Device, threads and seeding: chosen once at start-up and passed down (the BLAS: blas.h).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace ltk {

/// Parses "auto", "cpu", "cuda" or "cuda:N". "auto" picks cuda when it is available.
/// Throws ltk::ConfigError naming `key` when the device is unknown or not available.
torch::Device resolve_device(const std::string& spec, const std::string& key = "device");

/// Sets LibTorch's intra-op threads: 0 means every core of the machine. Returns the count set.
int apply_threads(int64_t requested);

/// Seeds LibTorch's generators (CPU and, when present, CUDA).
void seed_everything(uint64_t seed);

/// Bytes of memory this process can still take without being killed: /proc/meminfo's
/// MemAvailable, or less when a cgroup (v2 memory.max, a container's limit) leaves less; -1 when
/// neither can be read.
int64_t available_memory_bytes();

}  // namespace ltk
