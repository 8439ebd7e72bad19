// Which ltk this is: its version, the commit it was built from, and the run-directory format it
// writes (and reads, with every older one).
#pragma once

#include <string>

namespace ltk {

/// The newest run-directory format this ltk writes; it reads runs of this format or older. Raised
/// when a run directory changes in a way an older ltk would misread. 2: deploy artifacts
/// (ltk-eval --quantize: deploy.json, bf16 or int8 weights); 3: int8 layers' calibrated activation
/// ranges (NAME.input_range).
inline constexpr int kRunFormat = 3;
/// The format of the runs ltk-train writes (an older ltk reads them).
inline constexpr int kTrainedRunFormat = 1;

/// ltk's version (the project's VERSION in CMakeLists.txt), e.g. "0.2.0".
const char* version();
/// The git commit the build was made from (with "-dirty" for uncommitted changes; "unknown"
/// outside a git checkout).
const char* git_commit();
/// One line for --version: ltk's version and commit, LibTorch's version and the BLAS in use.
std::string version_line();

}  // namespace ltk
