// The BLAS this process runs on, and the fix for OpenBLAS picking its slowest kernels.
//
// Debian's OpenBLAS (DYNAMIC_ARCH) chooses its kernels by CPU model when the library loads. On a
// virtual machine whose CPU reports an unknown model ("Intel(R) Xeon(R) Processor" with AVX-512)
// it falls back to its generic Prescott kernels: a 1024^3 matmul ran at 21 instead of 81-125
// GFLOP/s, transformer training 3.6x slower. The kernel can only change before the library loads,
// so an app that finds a weaker kernel than its CPU supports re-executes itself once with
// OPENBLAS_CORETYPE set.
#pragma once

#include <cstdint>
#include <string>

namespace ltk {

/// The x86 features that decide which OpenBLAS kernels a CPU can run.
struct CpuFeatures {
  bool avx = false, avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_bf16 = false, amx_bf16 = false;  ///< native bf16 arithmetic (the kernel's cpuinfo flags)
  bool avx512_vnni = false, avx_vnni = false, amx_int8 = false;  ///< int8 dot products (likewise)
};

/// This CPU's features (with the operating system's support for their registers).
CpuFeatures detect_cpu_features();

/// Whether this CPU computes bf16 natively (AVX512_BF16 or AMX-BF16), where bf16 autocast pays,
/// and oneDNN may use it (ONEDNN_MAX_CPU_ISA or DNNL_MAX_CPU_ISA, read as oneDNN reads them, does not
/// hold it below AVX512_CORE_BF16). The environment variable LTK_NATIVE_BF16 (0 or 1) overrides the
/// answer, so that tests run the fallback and the fast path on any CPU.
bool cpu_has_native_bf16();
/// Why bf16 is not native here, for an error or a warning ("" when it is).
std::string why_no_native_bf16();

/// Whether this CPU multiplies int8 with int32 accumulation (AVX512_VNNI, AVX_VNNI or AMX-INT8) and
/// oneDNN may use it (its instruction-set cap is not below AVX2_VNNI or AVX512_CORE_VNNI).
/// Without it, int8 kernels sum pairs of u8 x s8 products in int16, which saturates when both
/// operands use the full range. LTK_VNNI (0 or 1) overrides the answer.
bool cpu_has_vnni();

/// oneDNN's instruction-set cap from the environment: the variable set (ONEDNN_MAX_CPU_ISA, else
/// DNNL_MAX_CPU_ISA; "" when neither is) and its value, upper-cased (oneDNN reads it in any case).
struct OnednnCap {
  std::string variable, value;
};
OnednnCap onednn_isa_cap();
/// Whether a cap (a value of ONEDNN_MAX_CPU_ISA, upper-cased; "" or "ALL": none) lets oneDNN use
/// bf16 instructions. Names from oneDNN 2.x and 3.x; one oneDNN does not know caps nothing there.
bool onednn_cap_allows_bf16(const std::string& cap);
/// Whether oneDNN under a cap computes int8 dot products with VNNI on `cpu`: the AVX2_VNNI caps
/// with AVX-VNNI, AVX512_CORE_VNNI and above with AVX512_VNNI or AMX-INT8 (two branches, neither
/// inside the other), any VNNI of the CPU without a cap.
bool onednn_cap_allows_vnni(const std::string& cap, const CpuFeatures& cpu);

/// The strongest OpenBLAS kernel family the CPU runs: "SkylakeX" (AVX-512 F/BW/DQ/VL), "Haswell"
/// (AVX2 + FMA), "Sandybridge" (AVX), or "" (nothing beyond what every x86-64 runs).
std::string best_openblas_core(const CpuFeatures& cpu);

/// How capable an OpenBLAS core's kernels are: 0 (SSE: Prescott, Nehalem, ...), 1 (AVX), 2 (AVX2:
/// Haswell, Zen), 3 (AVX-512: SkylakeX, Cooperlake, SapphireRapids); -1 for a name not known
/// here, which is never judged weak. Case-insensitive.
int openblas_core_rank(const std::string& core);

/// What to do about the kernel OpenBLAS chose.
struct BlasDecision {
  bool reexec = false;   ///< re-execute with OPENBLAS_CORETYPE=core
  std::string core;      ///< the kernel to ask for
  std::string reason;    ///< one line for the log (empty when there is nothing to say)
};

/// The decision, from its inputs alone (tested on every combination): the CPU, the kernel OpenBLAS
/// chose ("" = no OpenBLAS loaded), and the environment: OPENBLAS_CORETYPE (a value the user or the
/// system set is never overridden: some machines set it because newer kernels misbehave there),
/// LTK_BLAS_CORETYPE ("keep" turns the fix off) and LTK_BLAS_REEXEC (set by ltk on the re-executed
/// process: it never re-executes twice). A null pointer is an unset variable.
BlasDecision decide_blas_core(const CpuFeatures& cpu, const std::string& chosen, const char* openblas_coretype,
                              const char* ltk_blas_coretype, const char* reexec_guard);

/// C = alpha * A * op(B) + beta * C on row-major arrays, by the loaded BLAS's cblas_sgemm or
/// cblas_dgemm (op(B) = B^T when `b_transposed`): A [m, k] with rows `lda` apart, op(B) [k, n], C
/// [m, n]. False, with nothing done, when the BLAS has no such function or a size or stride does
/// not fit its 32-bit integers; the caller then computes another way.
bool blas_gemm(bool b_transposed, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
bool blas_gemm(bool b_transposed, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
               const double* b, int64_t ldb, double beta, double* c, int64_t ldc);
/// Whether blas_gemm can run here (the loaded BLAS has cblas_sgemm and cblas_dgemm).
bool blas_has_gemm();

/// Checks a small single-precision GEMM of the loaded BLAS against a plain loop in double; true
/// when every element is within the rounding bound of its dot product (or no BLAS is loaded).
bool blas_gemm_is_correct();

/// Call first thing in every app's main(), before LibTorch runs anything. Applies
/// decide_blas_core (re-executing /proc/self/exe with the same arguments when it says so) and, in
/// a process re-executed with a kernel ltk chose, checks that kernel's GEMM: a wrong result
/// re-executes once more with the kernel OpenBLAS had chosen itself, and warns. Returns when the
/// process keeps its kernel.
void ensure_blas_kernel(char** argv);

/// What ensure_blas_kernel did, for the log ("" when it changed nothing).
const std::string& blas_kernel_note();

/// Which BLAS library this process loaded, its kernel and thread count, e.g.
/// "OpenBLAS 0.3.21 ... Haswell ..., 2 BLAS thread(s) (/usr/lib/.../libblas.so.3)".
std::string describe_blas();

/// The kernel OpenBLAS runs ("Haswell", ...), or "" without OpenBLAS.
std::string openblas_core();

/// True when the loaded BLAS is the slow reference implementation.
bool blas_is_reference();

}  // namespace ltk
