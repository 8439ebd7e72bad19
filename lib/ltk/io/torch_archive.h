// Validation of the files torch.save and torch::pickle_save write (a zip archive holding data.pkl
// and the tensors' storages) before LibTorch 1.13's readers parse them: those readers trust every
// record, offset and length (the fuzz tests found out-of-bounds reads, bad frees and 32 GB
// allocations from a damaged file).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ltk {

/// Checks the zip structure of `bytes` (read from `path`): every record and offset inside the file,
/// data.pkl's opcodes and lengths, and each storage it refers to backed by a record that large.
/// A CheckpointError names the file and what is wrong.
void check_torch_archive(std::string_view bytes, const std::string& path);

/// A record of such an archive: its name inside the archive's directory ("data.pkl", "data/0"),
/// and its bytes when it is stored (`stored`; a compressed record's bytes are empty).
struct ArchiveRecord {
  std::string name;
  std::string_view bytes;
  bool stored = true;
};

/// check_torch_archive(), and the records LibTorch reads (those in the first record's directory), in
/// the archive's order.
std::vector<ArchiveRecord> torch_archive_records(std::string_view bytes, const std::string& path);

}  // namespace ltk
