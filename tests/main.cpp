#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <torch/utils.h>

#include "ltk/core/log.h"

int main(int argc, char** argv) {
  torch::set_num_threads(1);  // tests share the machine: one thread each
  ltk::log::set_level(ltk::log::Level::warn);
  return Catch::Session().run(argc, argv);
}
