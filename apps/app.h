// What every ltk app shares: exceptions become one line on stderr and an exit code
// (0 success, 2 usage or config error, 1 anything else).
#pragma once

// A repeated option's value arrives whole: cxxopts would otherwise split every value of a vector
// option on commas, so `--set 'model.kernel_sizes=[3,4,5]'` became three broken overrides and a
// path with a comma two paths. A NUL byte cannot occur in an argument.
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

// ltk-predict is built without LibTorch (LTK_APP_WITHOUT_LIBTORCH, apps/CMakeLists.txt): it has no
// c10 errors, BLAS or LibTorch version of its own (it hands --version to ltk-predict-torch).
#ifndef LTK_APP_WITHOUT_LIBTORCH
#define LTK_APP_LIBTORCH 1
#include <c10/util/Exception.h>

#include "ltk/core/blas.h"
#include "ltk/core/version.h"
#endif

#include "ltk/core/error.h"

namespace ltk::app {

/// Runs an app's body: first the BLAS kernel check (which may re-execute the program, see
/// ltk/core/blas.h), then `fn`, turning its exceptions into one line and an exit code.
template <typename Fn>
int guarded_main(const char* name, char** argv, Fn&& fn) {
  try {
#ifdef LTK_APP_LIBTORCH
    ltk::ensure_blas_kernel(argv);
#endif
    return fn();
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << name << ": " << e.what() << " (see " << name << " --help)\n";
    return 2;
  } catch (const ltk::UsageError& e) {
    std::cerr << name << ": " << e.what() << " (see " << name << " --help)\n";
    return 2;
  } catch (const ltk::ConfigError& e) {
    std::cerr << name << ": error: " << e.what() << "\n";
    return 2;
#ifdef LTK_APP_LIBTORCH
  } catch (const c10::Error& e) {
    std::cerr << name << ": error: " << e.what_without_backtrace() << "\n";
    return 1;
#endif
  } catch (const std::exception& e) {
    std::cerr << name << ": error: " << e.what() << "\n";
    return 1;
  }
}

/// Parses argv; --help prints the help to stdout and sets `help`, as does --version (every app
/// has it: ltk's version and commit, LibTorch's version, the BLAS).
inline cxxopts::ParseResult parse(cxxopts::Options& options, int argc, char** argv, bool& help) {
  options.add_options()("version", "print ltk's version and commit, LibTorch's version and the BLAS in use");
  auto result = options.parse(argc, argv);
  help = result.count("help") > 0;
  if (help) std::cout << options.help() << std::flush;
#ifdef LTK_APP_LIBTORCH
  if (result.count("version")) {
    std::cout << ltk::version_line() << std::endl;
    help = true;
  }
#endif
  if (!result.unmatched().empty()) throw ltk::UsageError("unexpected argument '" + result.unmatched()[0] + "'");
  return result;
}

}  // namespace ltk::app
