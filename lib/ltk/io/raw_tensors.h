// The tensors of an ltk weights file (a name -> tensor dict that torch::pickle_save wrote, as
// torch.load reads it), read without LibTorch: what the LibTorch-free ltk-predict scores a linear
// run with. Views into the file's bytes; nothing is copied.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ltk {

/// One tensor of the file, as its bytes in the archive say.
struct RawTensor {
  std::string dtype;             ///< "float32", "float64", "int64", ... (from the storage's type)
  size_t item_size = 0;          ///< bytes per element
  std::vector<int64_t> sizes;    ///< the shape
  std::vector<int64_t> strides;  ///< in elements
  int64_t offset = 0;            ///< the first element's index in the storage
  std::string_view storage;      ///< the storage's bytes, inside the file

  int64_t numel() const;
  /// Row-major with no gaps.
  bool contiguous() const;
  /// The first element (contiguous() tensors: all of them, in order), when the tensor is of
  /// `dtype`, contiguous and aligned for its type; null otherwise.
  const void* data(const std::string& dtype) const;
};

/// The name -> tensor dict of `bytes` (the file at `path`, for errors), in the file's order of
/// names, by name. The archive is checked first (check_torch_archive); a pickle that is not such a dict, an
/// opcode this reader does not know, or a tensor whose elements lie outside its storage is a
/// CheckpointError naming the file: LibTorch's reader may still read such a file.
std::map<std::string, RawTensor> read_raw_tensors(std::string_view bytes, const std::string& path);

}  // namespace ltk
