#include "ltk/core/blas.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "ltk/core/error.h"
#include "ltk/core/log.h"

namespace ltk {

namespace {

constexpr const char* kGuard = "LTK_BLAS_REEXEC";

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

template <typename Fn>
Fn blas_symbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

std::string& note() {
  static std::string text;
  return text;
}

std::string loaded_blas_path() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto pos = line.find('/');
    if (pos == std::string::npos) continue;
    std::string path = line.substr(pos);
    std::string file = std::filesystem::path(path).filename().string();
    if (file.rfind("libblas", 0) == 0 || file.rfind("libopenblas", 0) == 0 || file.rfind("libmkl_rt", 0) == 0 ||
        file.rfind("libblis", 0) == 0) {
      std::error_code ec;
      auto real = std::filesystem::canonical(path, ec);
      return ec ? path : real.string();
    }
  }
  return "";
}

// Re-executes this program with OPENBLAS_CORETYPE=core; returns only when exec fails.
void reexec_with_core(char** argv, const std::string& core, const std::string& guard_value) {
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  setenv(kGuard, guard_value.c_str(), 1);
  execv("/proc/self/exe", argv);
  log::warn("[runtime] could not re-execute with OPENBLAS_CORETYPE={}: {}; continuing with OpenBLAS's own choice",
            core, std::strerror(errno));
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kGuard);
}

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx = __builtin_cpu_supports("avx");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
#endif
  // The kernel's flags also say the OS saves the registers (AMX needs its permission too, which
  // LibTorch's oneDNN asks for).
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) {
      f.avx512_bf16 = f.avx512_bf16 || w == "avx512_bf16";
      f.amx_bf16 = f.amx_bf16 || w == "amx_bf16";
      f.avx512_vnni = f.avx512_vnni || w == "avx512_vnni";
      f.avx_vnni = f.avx_vnni || w == "avx_vnni";
      f.amx_int8 = f.amx_int8 || w == "amx_int8";
    }
    break;
  }
  return f;
}

namespace {

// oneDNN's instruction sets in increasing order: the names its cap takes, 2.x's and 3.x's.
constexpr const char* kOnednnIsas[] = {"SSE41",
                                       "AVX",
                                       "AVX2",
                                       "AVX2_VNNI",
                                       "AVX2_VNNI_2",
                                       "AVX512_CORE",
                                       "AVX512_CORE_VNNI",
                                       "AVX512_CORE_BF16",
                                       "AVX512_CORE_FP16",
                                       "AVX512_CORE_AMX",
                                       "AVX512_CORE_AMX_FP16"};

// The cap's place in kOnednnIsas; -1 for none (unset, "ALL" or a name oneDNN does not know).
int onednn_isa_rank(const std::string& cap) {
  for (int i = 0; i < static_cast<int>(std::size(kOnednnIsas)); ++i)
    if (cap == kOnednnIsas[i]) return i;
  return -1;
}

}  // namespace

OnednnCap onednn_isa_cap() {
  OnednnCap out;
  for (const char* variable : {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"})
    if (const char* value = std::getenv(variable); value && *value) {
      out.variable = variable;
      out.value = value;
      break;
    }
  for (char& c : out.value) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool onednn_cap_allows_bf16(const std::string& cap) {
  const int rank = onednn_isa_rank(cap);
  return rank < 0 || rank >= onednn_isa_rank("AVX512_CORE_BF16");
}

bool onednn_cap_allows_vnni(const std::string& cap, const CpuFeatures& cpu) {
  const int rank = onednn_isa_rank(cap);
  if (rank < 0) return cpu.avx512_vnni || cpu.avx_vnni || cpu.amx_int8;
  // Two branches: the AVX2 one (AVX-VNNI) is not inside the AVX-512 one, nor the other way.
  if (cap == "AVX2_VNNI" || cap == "AVX2_VNNI_2") return cpu.avx_vnni;
  return rank >= onednn_isa_rank("AVX512_CORE_VNNI") && (cpu.avx512_vnni || cpu.amx_int8);
}

std::string why_no_native_bf16() {
  if (const char* forced = std::getenv("LTK_NATIVE_BF16"); forced && *forced)
    return std::string(forced) != "0" ? "" : "LTK_NATIVE_BF16=0 in the environment says this CPU has no native bf16";
  static const bool native = [] {
    const CpuFeatures f = detect_cpu_features();
    return f.avx512_bf16 || f.amx_bf16;
  }();
  if (!native) return "this CPU has no native bf16 (no AVX512_BF16 or AMX in /proc/cpuinfo)";
  if (const OnednnCap cap = onednn_isa_cap(); !onednn_cap_allows_bf16(cap.value))
    return cap.variable + "=" + cap.value +
           " in the environment holds oneDNN below AVX512_CORE_BF16, so that it does "
           "not use this CPU's native bf16";
  return "";
}

bool cpu_has_native_bf16() {
  return why_no_native_bf16().empty();
}

bool cpu_has_vnni() {
  if (const char* forced = std::getenv("LTK_VNNI"); forced && *forced) return std::string(forced) != "0";
  static const CpuFeatures cpu = detect_cpu_features();
  return onednn_cap_allows_vnni(onednn_isa_cap().value, cpu);
}

std::string best_openblas_core(const CpuFeatures& cpu) {
  if (cpu.avx512f && cpu.avx512bw && cpu.avx512dq && cpu.avx512vl && cpu.avx2 && cpu.fma) return "SkylakeX";
  if (cpu.avx2 && cpu.fma) return "Haswell";
  if (cpu.avx) return "Sandybridge";
  return "";
}

int openblas_core_rank(const std::string& core) {
  static const std::vector<std::pair<int, std::vector<const char*>>> ranks = {
      {0, {"katmai", "coppermine", "northwood", "prescott", "banias", "core2", "penryn", "dunnington", "nehalem",
           "atom", "athlon", "opteron", "opteron_sse3", "barcelona", "bobcat", "nano"}},
      {1, {"sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"}},
      {2, {"haswell", "zen"}},
      {3, {"skylakex", "cooperlake", "sapphirerapids"}},
  };
  const std::string name = lower(core);
  for (const auto& [rank, names] : ranks)
    for (const char* n : names)
      if (name == n) return rank;
  return -1;
}

BlasDecision decide_blas_core(const CpuFeatures& cpu, const std::string& chosen, const char* openblas_coretype,
                              const char* ltk_blas_coretype, const char* reexec_guard) {
  BlasDecision d;
  if (chosen.empty()) return d;  // not OpenBLAS
  if (reexec_guard && *reexec_guard) return d;  // this process is the re-executed one: never loop
  if (ltk_blas_coretype && std::string(ltk_blas_coretype) == "keep") return d;
  if (openblas_coretype && *openblas_coretype) return d;  // the user's or the system's choice stands
  const std::string best = best_openblas_core(cpu);
  const int have = openblas_core_rank(chosen), can = openblas_core_rank(best);
  if (best.empty() || have < 0 || have >= can) return d;
  d.reexec = true;
  d.core = best;
  d.reason = fmt::format("OpenBLAS chose its {} kernels on a CPU that runs {} ones; re-executing with "
                         "OPENBLAS_CORETYPE={} (LTK_BLAS_CORETYPE=keep turns this off)",
                         chosen, best, best);
  return d;
}

namespace {

constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;

template <typename T>
using CblasGemm = void (*)(int, int, int, int, int, int, T, const T*, int, const T*, int, T, T*, int);

template <typename T>
CblasGemm<T> cblas_gemm_symbol() {
  // Looked up once: the BLAS is loaded with LibTorch, before main, and stays.
  static const auto fn = blas_symbol<CblasGemm<T>>(std::is_same_v<T, float> ? "cblas_sgemm" : "cblas_dgemm");
  return fn;
}

template <typename T>
bool gemm(bool b_transposed, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b, int64_t ldb,
          T beta, T* c, int64_t ldc) {
  const auto fn = cblas_gemm_symbol<T>();
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  if (!fn || std::max({m, n, k, lda, ldb, ldc}) > kMax || std::min({m, n, k}) < 0) return false;
  // Row-major strides below a row's length: the BLAS would print an error and compute nothing.
  if (lda < std::max<int64_t>(1, k) || ldb < std::max<int64_t>(1, b_transposed ? k : n) ||
      ldc < std::max<int64_t>(1, n))
    return false;
  if (m == 0 || n == 0) return true;
  auto i = [](int64_t v) { return static_cast<int>(v); };
  fn(kCblasRowMajor, kCblasNoTrans, b_transposed ? kCblasTrans : kCblasNoTrans, i(m), i(n), i(k), alpha, a, i(lda), b,
     i(ldb), beta, c, i(ldc));
  return true;
}

}  // namespace

bool blas_gemm(bool b_transposed, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  return gemm(b_transposed, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

bool blas_gemm(bool b_transposed, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
               const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  return gemm(b_transposed, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

bool blas_has_gemm() {
  return cblas_gemm_symbol<float>() && cblas_gemm_symbol<double>();
}

bool blas_gemm_is_correct() {
  // cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
  using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*,
                         int);
  auto sgemm = blas_symbol<Sgemm>("cblas_sgemm");
  if (!sgemm) return true;
  constexpr int kRowMajor = 101, kNoTrans = 111;
  // Sizes past one register block of every kernel family, with edges that are not multiples of it.
  const int M = 37, N = 45, K = 67;
  std::vector<float> a(static_cast<size_t>(M * K)), b(static_cast<size_t>(K * N)), c(static_cast<size_t>(M * N));
  uint32_t x = 12345;
  auto next = [&x] {  // deterministic values in [-1, 1)
    x = x * 1664525u + 1013904223u;
    return static_cast<float>(x >> 8) / static_cast<float>(1u << 23) - 1.0f;
  };
  for (auto& v : a) v = next();
  for (auto& v : b) v = next();
  sgemm(kRowMajor, kNoTrans, kNoTrans, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
  // A float dot product of K terms is within K * u * sum|a_k b_k| of the exact one (u = 2^-24);
  // twice that bound allows for the inputs' own rounding. A wrong kernel is off by O(1).
  const double u = std::numeric_limits<float>::epsilon() / 2;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double exact = 0, magnitude = 0;
      for (int k = 0; k < K; ++k) {
        double p = static_cast<double>(a[i * K + k]) * static_cast<double>(b[k * N + j]);
        exact += p;
        magnitude += std::fabs(p);
      }
      double got = c[static_cast<size_t>(i * N + j)];
      if (!(std::fabs(got - exact) <= 2.0 * K * u * magnitude + 1e-30)) return false;
    }
  return true;
}

std::string openblas_core() {
  using CoreFn = char* (*)();
  auto core = blas_symbol<CoreFn>("openblas_get_corename");
  return core ? std::string(core()) : std::string();
}

void ensure_blas_kernel(char** argv) {
  const char* guard_env = std::getenv(kGuard);
  const std::string guard = guard_env ? guard_env : "";
  unsetenv(kGuard);  // this process's own: the programs it starts decide for themselves
  if (!guard.empty()) {
    // This process was re-executed with a kernel ltk chose (guard = the kernel OpenBLAS chose;
    // "fallback:" once the chosen one failed the check).
    const std::string& g = guard;
    if (g.rfind("fallback:", 0) == 0) {
      note() = fmt::format("OpenBLAS kernel {} computed a wrong GEMM; back on {}", g.substr(9), openblas_core());
      log::warn("[runtime] {}", note());
      return;
    }
    const std::string core = openblas_core();
    if (!blas_gemm_is_correct()) {
      log::warn("[runtime] the OpenBLAS {} kernels compute a wrong GEMM here; re-executing with OpenBLAS's own "
                "choice, {}",
                core, g);
      reexec_with_core(argv, g, "fallback:" + core);
      throw Error("the OpenBLAS " + core + " kernels compute a wrong GEMM on this machine and ltk could not "
                  "re-execute with OpenBLAS's own choice; run with OPENBLAS_CORETYPE=" + g);
    }
    note() = fmt::format("OpenBLAS kernel {} set by ltk (OpenBLAS chose {}; LTK_BLAS_CORETYPE=keep turns this off)",
                         core, g);
    return;
  }
  const std::string chosen = openblas_core();
  BlasDecision d = decide_blas_core(detect_cpu_features(), chosen, std::getenv("OPENBLAS_CORETYPE"),
                                    std::getenv("LTK_BLAS_CORETYPE"), nullptr);
  if (!d.reexec) return;
  log::info("[runtime] {}", d.reason);
  reexec_with_core(argv, d.core, chosen);
}

const std::string& blas_kernel_note() { return note(); }

std::string describe_blas() {
  std::string path = loaded_blas_path();
  std::string name = "unknown BLAS";
  using ConfigFn = char* (*)();
  using ThreadsFn = int (*)();
  if (auto cfg = blas_symbol<ConfigFn>("openblas_get_config")) {
    name = cfg();
    std::string core = openblas_core();
    if (!core.empty() && name.find(core) == std::string::npos) name += ", kernel " + core;
    if (auto th = blas_symbol<ThreadsFn>("openblas_get_num_threads")) name += fmt::format(", {} BLAS thread(s)", th());
  } else if (dlsym(RTLD_DEFAULT, "bli_info_get_version_str")) {
    name = "BLIS";
  } else if (dlsym(RTLD_DEFAULT, "mkl_get_max_threads")) {
    name = "MKL";
  } else if (!path.empty() && path.find("/blas/") != std::string::npos) {
    name = "reference BLAS (slow)";
  }
  if (!note().empty()) name += "; " + note();
  if (path.empty()) return name + " (no BLAS library mapped)";
  return name + " (" + path + ")";
}

bool blas_is_reference() {
  std::string path = loaded_blas_path();
  return !path.empty() && path.find("/blas/") != std::string::npos && !dlsym(RTLD_DEFAULT, "openblas_get_config");
}

}  // namespace ltk
