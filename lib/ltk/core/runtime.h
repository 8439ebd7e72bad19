// Device, threads, seeding and the BLAS in use: chosen once at start-up and passed down.
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

/// Which BLAS library this process loaded, and its thread count, e.g.
/// "OpenBLAS 0.3.21 (/usr/lib/.../openblas-openmp/libblas.so.3), 2 threads".
std::string describe_blas();

/// True when the loaded BLAS is the slow reference implementation.
bool blas_is_reference();

}  // namespace ltk
