// Fuzz targets: one function per parser or loader, fed arbitrary bytes.
//
// Built two ways from the same sources (tests/fuzz/CMakeLists.txt):
//  - with clang's libFuzzer (cmake -DLTK_FUZZ=ON, scripts/fuzz.sh): one executable per target, every
//    ltk source instrumented for coverage, AddressSanitizer and UndefinedBehaviorSanitizer;
//  - in the normal build: one program, ltk_fuzz_replay, that feeds a target the files of its seed
//    corpus and of tests/fuzz/regressions/TARGET (each a past finding), as ordinary ctest entries.
//
// The contract a target checks: any input either works or ends in an ltk::Error (a message naming
// the file, line or key at fault). A crash, a hang, a leak, a sanitizer report, or any other
// exception escaping (a bare std::out_of_range or nlohmann "type_error.302" tells a user nothing)
// is a finding: fuzz_check() aborts with what went wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ltk::fuzz {

using TargetFn = void (*)(std::string_view input);

/// Registers a target (the replay program's table; unused in a libFuzzer build).
struct Register {
  Register(const char* name, TargetFn fn);
};

/// Runs `fn` on `input` under the contract above; aborts on a finding.
void run_target(const char* name, TargetFn fn, std::string_view input);

/// A scratch directory for this process (in /dev/shm when it exists), made once.
const std::string& scratch_dir();

/// Writes `data` to scratch_dir()/name and returns the path.
std::string scratch_file(const std::string& name, std::string_view data);

/// Aborts the run with `what` when `ok` is false: a property the target checks broke.
void fuzz_check(bool ok, const std::string& what);

/// Splits fuzz input into a selector byte and the rest (0 when empty).
inline uint8_t take_byte(std::string_view& input) {
  if (input.empty()) return 0;
  uint8_t b = static_cast<uint8_t>(input[0]);
  input.remove_prefix(1);
  return b;
}

}  // namespace ltk::fuzz

#define LTK_FUZZ_CAT2(a, b) a##b
#define LTK_FUZZ_CAT(a, b) LTK_FUZZ_CAT2(a, b)

#ifdef LTK_LIBFUZZER
// libFuzzer calls LLVMFuzzerTestOneInput; each target is its own executable.
#define LTK_FUZZ_TARGET(name)                                                          \
  static void ltk_fuzz_##name(std::string_view input);                                 \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {            \
    ::ltk::fuzz::run_target(#name, ltk_fuzz_##name,                                    \
                            std::string_view(reinterpret_cast<const char*>(data), size)); \
    return 0;                                                                          \
  }                                                                                    \
  static void ltk_fuzz_##name(std::string_view input)
#else
#define LTK_FUZZ_TARGET(name)                                                              \
  static void ltk_fuzz_##name(std::string_view input);                                     \
  static ::ltk::fuzz::Register LTK_FUZZ_CAT(ltk_fuzz_register_, name)(#name, ltk_fuzz_##name); \
  static void ltk_fuzz_##name(std::string_view input)
#endif
