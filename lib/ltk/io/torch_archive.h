// Validation of the files torch.save and torch::pickle_save write (a zip archive holding data.pkl
// and the tensors' storages) before LibTorch 1.13's readers parse them: those readers trust every
// record, offset and length (the fuzz tests found out-of-bounds reads, bad frees and 32 GB
// allocations from a damaged file).
#pragma once

#include <string>
#include <string_view>

namespace ltk {

/// Checks the zip structure of `bytes` (read from `path`): every record and offset inside the file,
/// data.pkl's opcodes and lengths, and each storage it refers to backed by a record that large.
/// A CheckpointError names the file and what is wrong.
void check_torch_archive(std::string_view bytes, const std::string& path);

}  // namespace ltk
