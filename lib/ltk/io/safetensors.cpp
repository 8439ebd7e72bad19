#include "ltk/io/safetensors.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <limits>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/mapped_file.h"

namespace ltk {

namespace {

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  size_t bytes;
};

const DtypeInfo kDtypes[] = {
    {"F64", torch::kDouble, 8}, {"F32", torch::kFloat, 4}, {"F16", torch::kHalf, 2},  {"BF16", torch::kBFloat16, 2},
    {"I64", torch::kLong, 8},   {"I32", torch::kInt, 4},   {"I16", torch::kShort, 2}, {"I8", torch::kChar, 1},
    {"U8", torch::kByte, 1},    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo* find_dtype(torch::ScalarType type) {
  for (const auto& d : kDtypes)
    if (type == d.type) return &d;
  return nullptr;
}

}  // namespace

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
  try {
    file_ = MappedFile(path);
  } catch (const Error& e) {
    throw CheckpointError(e.what());
  }
  const size_t file_size = file_.size();
  if (file_size < 8)
    throw CheckpointError(
        fmt::format("{}: {} bytes, too short for a safetensors file (a header length of 8 bytes "
                    "comes first); the file is truncated",
                    path, file_size));
  try {
    const unsigned char* bytes = file_.data();
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    if (n > file_size - 8)
      throw CheckpointError(
          fmt::format("{}: the header claims {} bytes but the file holds {} after the length; the "
                      "file is truncated or not a safetensors file",
                      path, n, file_size - 8));
    nlohmann::ordered_json header;  // file order
    try {
      header = nlohmann::ordered_json::parse(reinterpret_cast<const char*>(bytes) + 8, reinterpret_cast<const char*>(bytes) + 8 + n);
    } catch (const nlohmann::json::exception& e) {
      throw CheckpointError(path + ": the header is not valid JSON (" + e.what() + "); not a safetensors file?");
    }
    if (!header.is_object()) throw CheckpointError(path + ": the header is not a JSON object");
    const size_t data_start = 8 + static_cast<size_t>(n);
    const size_t data_size = file_size - data_start;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        if (v.is_object())
          for (auto m = v.begin(); m != v.end(); ++m)
            if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
        continue;
      }
      auto bad = [&](const std::string& what) { return CheckpointError(path + ": tensor '" + name + "': " + what); };
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
        throw bad("expected {dtype, shape, data_offsets} in the header");
      if (!v["dtype"].is_string()) throw bad("dtype is not a string");
      Entry e;
      e.dtype = v["dtype"].get<std::string>();
      const DtypeInfo* d = find_dtype(e.dtype);
      if (!d) throw bad("unknown dtype '" + e.dtype + "' (ltk reads F64, F32, F16, BF16 and integer tensors)");
      if (!v["shape"].is_array()) throw bad("shape is not a list");
      uint64_t numel = 1;
      constexpr uint64_t kMaxElements = uint64_t{1} << 40;
      for (const auto& s : v["shape"]) {
        if (!s.is_number_unsigned()) throw bad("shape " + v["shape"].dump() + " is invalid");
        const uint64_t dim = s.get<uint64_t>();
        if (dim != 0 && numel > kMaxElements / dim) throw bad("shape " + v["shape"].dump() + " is too large");
        numel *= dim;  // checked above: no overflow
        e.shape.push_back(static_cast<int64_t>(dim));
      }
      const auto& off = v["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        throw bad("data_offsets must be [begin, end]");
      uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
      if (b > en || en > data_size)
        throw bad(fmt::format("data_offsets [{}, {}] lie outside the {} data bytes the file holds; the file is truncated",
                              b, en, data_size));
      if (en - b != numel * d->bytes)
        throw bad(fmt::format("{} bytes for shape {} of {} ({} expected)", en - b, v["shape"].dump(), e.dtype,
                              numel * d->bytes));
      e.begin = data_start + static_cast<size_t>(b);
      e.end = data_start + static_cast<size_t>(en);
      names_.push_back(name);
      entries_.emplace(name, std::move(e));
    }
  } catch (...) {
    file_ = MappedFile();
    throw;
  }
}

SafeTensorsFile::~SafeTensorsFile() = default;

const SafeTensorsFile::Entry& SafeTensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw CheckpointError(path_ + ": no tensor '" + name + "'");
  return it->second;
}

torch::Tensor SafeTensorsFile::get(const std::string& name, torch::ScalarType dtype) const {
  const Entry& e = entry(name);
  const DtypeInfo* d = find_dtype(e.dtype);
  // The bytes copied into an aligned tensor of the stored dtype (the file's offsets need not be
  // aligned), then converted: the result outlives the mapping.
  auto stored = torch::empty(e.shape, torch::TensorOptions().dtype(d->type));
  if (e.end > e.begin)
    std::memcpy(stored.data_ptr(), reinterpret_cast<const char*>(file_.data()) + e.begin, e.end - e.begin);
  if (d->type == torch::kBool) stored = stored.view(torch::kByte).ne(0);  // any nonzero byte is true
  return stored.to(dtype);
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  size_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (header.contains(name) || name == "__metadata__")
      throw Error("write_safetensors: tensor name '" + name + "' is taken (a duplicate, or __metadata__)");
    const DtypeInfo* d = find_dtype(tensor.scalar_type());
    if (!d) throw Error("write_safetensors: tensor '" + name + "' has a dtype safetensors does not store");
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    const size_t bytes = static_cast<size_t>(t.numel()) * d->bytes;
    header[name] = {{"dtype", d->name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(t);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h += ' ';  // the data starts 8-byte aligned
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += h;
  out.reserve(out.size() + offset);
  for (const auto& t : data) out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.nbytes()));
  write_file_atomic(path, out);
}

}  // namespace ltk
