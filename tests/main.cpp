#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <torch/utils.h>

#include <cstdlib>

#include "ltk/core/log.h"
#include "test_util.h"

int main(int argc, char** argv) {
  torch::set_num_threads(1);  // tests share the machine: one thread each
  ltk::log::set_level(ltk::log::Level::warn);
  const int failed = Catch::Session().run(argc, argv);
  // Under ctest (one case a process, LTK_SKIP_EXIT set): a case that could not run here exits with
  // the skip code, and ctest reports it as skipped rather than passed.
  if (failed == 0 && !ltk::test::skip_reason().empty() && std::getenv("LTK_SKIP_EXIT")) return ltk::test::kSkipExitCode;
  return failed;
}
