// ltk's version and commit without LibTorch (the LibTorch-free ltk-predict writes them into runs'
// markers too); version.cpp adds LibTorch's version and the BLAS for --version.
#include "ltk/core/version.h"

namespace ltk {

namespace detail {
extern const char* const kVersion;  // the generated version_info.cpp (cmake/version_info.cmake)
extern const char* const kCommit;
}  // namespace detail

const char* version() {
  return detail::kVersion;
}
const char* git_commit() {
  return detail::kCommit;
}

}  // namespace ltk
