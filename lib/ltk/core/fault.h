// Fault injection points for the crash tests. The shipped apps never set a hook: a point costs a
// load and a branch. The test build's ltk-train (tests/fault_train.cpp, not installed) sets one
// that kills its own process at a chosen point, so the kill tests exercise the real binary's
// code path while no shipped binary reads a test switch.
#pragma once

#include <cstdint>

namespace ltk {

/// Called at every fault point with its name and the optimiser step.
using FaultHook = void (*)(const char* point, int64_t step);

/// Installs `hook` (nullptr removes it).
void set_fault_hook(FaultHook hook) noexcept;

/// A named place where a crash must leave a usable run: "after_step" (the optimiser stepped),
/// "in_checkpoint" (half of a checkpoint written), "before_pointer" (the checkpoint directory
/// complete, last.json not yet moved); or a usable shard directory (ltk-data encode; the step is
/// the samples written so far): "shard_append" (a piece appended), "shard_remap" (ids rewritten to
/// the vocabulary's, classes not yet), "shard_rename" (DIR.partial complete, DIR not yet replaced);
/// and "dir_swapped" (replace_directory_durable: the new directory swapped in, the old one, now
/// at the new one's former path or at TO.ltk-old, not yet removed).
void fault_point(const char* point, int64_t step);

}  // namespace ltk
