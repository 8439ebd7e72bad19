#include "ltk/core/runtime.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "ltk/core/error.h"
#include "ltk/core/parallel.h"

namespace ltk {

torch::Device resolve_device(const std::string& spec, const std::string& key) {
  if (spec == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device("cpu");
  if (spec == "cpu") return torch::Device("cpu");
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      throw ConfigError("config key '" + key + "': '" + spec +
                        "' asked for, but this LibTorch sees no CUDA device; use \"cpu\" or \"auto\"");
    torch::Device device("cpu");
    try {
      device = torch::Device(spec);
    } catch (const std::exception&) {
      throw ConfigError("config key '" + key + "': cannot parse device '" + spec + "'; use cuda or cuda:N");
    }
    if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count()))
      throw ConfigError(fmt::format("config key '{}': '{}' asked for, but only {} CUDA device(s) exist",
                                    key, spec, torch::cuda::device_count()));
    // "cuda" means cuda:0: tensors moved there report index 0, and devices are compared exactly.
    return device.has_index() ? device : torch::Device(torch::kCUDA, 0);
  }
  throw ConfigError("config key '" + key + "': unknown device '" + spec +
                    "'; use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"");
}

int apply_threads(int64_t requested) {
  if (requested < 0) throw ConfigError("config key 'threads' must be >= 0 (0 = all cores)");
  int n = static_cast<int>(requested);
  if (n == 0) n = usable_cores();
  torch::set_num_threads(n);
  // OpenBLAS keeps a thread count of its own: make it agree.
  using SetThreadsFn = void (*)(int);
  if (auto set = reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(n);
  return n;
}

void seed_everything(uint64_t seed) { torch::manual_seed(seed); }

int64_t available_memory_bytes() {
  int64_t available = -1;
  {
    std::ifstream in("/proc/meminfo");
    std::string key;
    int64_t kb = 0;
    std::string unit;
    while (in >> key >> kb >> unit)
      if (key == "MemAvailable:") {
        available = kb * 1024;
        break;
      }
  }
  // cgroup v2: this process's group (/proc/self/cgroup "0::/PATH") and its limit.
  std::ifstream cg("/proc/self/cgroup");
  for (std::string line; std::getline(cg, line);) {
    if (line.rfind("0::", 0) != 0) continue;
    const std::string dir = "/sys/fs/cgroup" + line.substr(3);
    std::ifstream max_in(dir + "/memory.max"), cur_in(dir + "/memory.current");
    std::string max;
    int64_t current = 0;
    if (max_in >> max && max != "max" && cur_in >> current) {
      try {
        const int64_t left = std::max<int64_t>(0, std::stoll(max) - current);
        available = available < 0 ? left : std::min(available, left);
      } catch (const std::exception&) {
      }
    }
  }
  return available;
}

}  // namespace ltk
