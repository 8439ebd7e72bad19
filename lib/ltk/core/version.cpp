#include "ltk/core/version.h"

#include <fmt/format.h>
#include <torch/version.h>

#include "ltk/core/blas.h"

namespace ltk {

namespace detail {
extern const char* const kVersion;  // the generated version_info.cpp (cmake/version_info.cmake)
extern const char* const kCommit;
}  // namespace detail

const char* version() { return detail::kVersion; }
const char* git_commit() { return detail::kCommit; }

std::string version_line() {
  return fmt::format("ltk {} (commit {}, run format {}), LibTorch {}, BLAS: {}", version(), git_commit(), kRunFormat,
                     TORCH_VERSION, describe_blas());
}

}  // namespace ltk
