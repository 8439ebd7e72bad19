// Reading the parts of a resumable checkpoint besides the weights and the optimiser: its loop
// state (meta.json) and its random generators (state.pt). Both check what they read: a damaged
// or foreign file is a CheckpointError naming it, never a bare JSON or pickle error.
#pragma once

#include <torch/types.h>

#include <string>

#include "ltk/train/trainer.h"

namespace ltk {

/// The loop state of a checkpoint's meta.json ({"state": {...}}), every field checked for its
/// type and range.
TrainState read_checkpoint_meta(const std::string& path);

/// The generator states of a checkpoint's state.pt (a pickled name -> byte tensor dictionary).
c10::Dict<std::string, torch::Tensor> read_rng_states(const std::string& path);

}  // namespace ltk
