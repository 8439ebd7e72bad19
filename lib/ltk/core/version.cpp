#include "ltk/core/version.h"

#include <fmt/format.h>
#include <torch/version.h>

#include "ltk/core/blas.h"

namespace ltk {

std::string version_line() {
  return fmt::format("ltk {} (commit {}, run format {}), LibTorch {}, BLAS: {}", version(), git_commit(), kRunFormat,
                     TORCH_VERSION, describe_blas());
}

}  // namespace ltk
