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

#include <c10/util/Exception.h>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/core/version.h"

namespace ltk::app {

/// Runs an app's body: first the BLAS kernel check (which may re-execute the program, see
/// ltk/core/blas.h), then `fn`, turning its exceptions into one line and an exit code.
template <typename Fn>
int guarded_main(const char* name, char** argv, Fn&& fn) {
  try {
    ltk::ensure_blas_kernel(argv);
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
  } catch (const c10::Error& e) {
    std::cerr << name << ": error: " << e.what_without_backtrace() << "\n";
    return 1;
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
  if (result.count("version")) {
    std::cout << ltk::version_line() << std::endl;
    help = true;
  }
  if (!result.unmatched().empty()) throw ltk::UsageError("unexpected argument '" + result.unmatched()[0] + "'");
  return result;
}

}  // namespace ltk::app
