// What a resume reads besides the weights: checkpoints/last.json (and best.json), a checkpoint's
// meta.json (the loop state) and state.pt (the random generators, a pickled dictionary). The first
// byte picks which. Checks: a pointer that reads resolves inside the run directory.
#include <filesystem>

#include "../fuzz.h"
#include "ltk/io/run_dir.h"
#include "ltk/train/checkpointing.h"

LTK_FUZZ_TARGET(checkpoint_state) {
  uint8_t which = ltk::fuzz::take_byte(input) % 3;
  if (which == 0) {
    std::string run = ltk::fuzz::scratch_dir() + "/run";
    std::filesystem::create_directories(run + "/checkpoints/step-1");
    ltk::fuzz::scratch_file("run/checkpoints/last.json", input);
    ltk::RunDirectory r = ltk::RunDirectory::open(run);
    std::string dir = r.checkpoint_dir("last");
    ltk::fuzz::fuzz_check(dir.rfind(run + "/checkpoints/", 0) == 0, "last.json points outside the run: " + dir);
  } else if (which == 1) {
    ltk::read_checkpoint_meta(ltk::fuzz::scratch_file("meta.json", input));
  } else {
    ltk::read_rng_states(ltk::fuzz::scratch_file("state.pt", input));
  }
}
