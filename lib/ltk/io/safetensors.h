// The safetensors format (Hugging Face's weights files): an 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the raw tensor
// bytes. Read memory-mapped, every offset checked against the file before a byte is touched; a
// truncated file or a header that lies is an error naming the file and the tensor.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ltk/core/mapped_file.h"

namespace ltk {

class SafeTensorsFile {
 public:
  /// Maps `path` and checks its header; CheckpointError naming the file on any fault.
  explicit SafeTensorsFile(const std::string& path);
  ~SafeTensorsFile();
  SafeTensorsFile(const SafeTensorsFile&) = delete;
  SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;

  const std::string& path() const { return path_; }
  /// Tensor names in file order.
  const std::vector<std::string>& names() const { return names_; }
  std::vector<int64_t> shape(const std::string& name) const { return entry(name).shape; }
  const std::string& dtype(const std::string& name) const { return entry(name).dtype; }
  /// A copy of tensor `name` converted to `dtype` (F64, F32, F16, BF16 and the integer types).
  torch::Tensor get(const std::string& name, torch::ScalarType dtype) const;
  /// The header's "__metadata__" (string -> string), empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Entry {
    std::string dtype;
    std::vector<int64_t> shape;
    size_t begin = 0, end = 0;  // absolute offsets in the file
  };
  const Entry& entry(const std::string& name) const;

  std::string path_;
  MappedFile file_;
  std::vector<std::string> names_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

/// Writes tensors (CPU, contiguous copies made here) as a safetensors file, atomically
/// (write_file_atomic). Names must be unique; dtypes F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace ltk
