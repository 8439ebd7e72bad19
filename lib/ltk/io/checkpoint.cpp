#include "ltk/io/checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/serialize.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/io/torch_archive.h"

namespace ltk {

namespace fs = std::filesystem;

namespace {

std::map<std::string, torch::Tensor> named_state(const torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& p : model.named_parameters(/*recurse=*/true)) state[p.key()] = p.value();
  for (const auto& b : model.named_buffers(/*recurse=*/true)) state[b.key()] = b.value();
  return state;
}

std::string shape_str(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

}  // namespace

void save_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : tensors) dict.insert(name, tensor.detach().to(torch::kCPU));
  std::vector<char> bytes = torch::pickle_save(dict);
  write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));  // no second 100 MB copy
}

void save_weights(const torch::nn::Module& model, const std::string& path) {
  auto state = named_state(model);
  save_tensors({state.begin(), state.end()}, path);
}

std::vector<std::pair<std::string, torch::Tensor>> read_weights(const std::string& path) {
  if (!fs::exists(path)) throw CheckpointError("checkpoint " + path + " does not exist");
  return read_tensor_dict(path, "an ltk weights file");
}

std::vector<std::string> load_weights(torch::nn::Module& model, const std::string& path, bool strict) {
  return load_weights(model, path, read_weights(path), strict);
}

namespace {

/// Whether `stored` can become `into`'s data rather than be copied into it: the same type on the
/// CPU, the whole of a storage no other tensor of the file or the model shares.
bool can_adopt(const torch::Tensor& into, const torch::Tensor& stored, const std::map<const void*, int>& storages) {
  if (!into.device().is_cpu() || !stored.device().is_cpu() || into.scalar_type() != stored.scalar_type() ||
      !stored.is_contiguous() || stored.storage_offset() != 0 || !stored.has_storage() || !into.has_storage())
    return false;
  if (stored.storage().nbytes() != static_cast<size_t>(stored.numel()) * static_cast<size_t>(stored.element_size()))
    return false;
  auto shared = [&](const torch::Tensor& t) {
    auto it = storages.find(t.storage().unsafeGetStorageImpl());
    return it == storages.end() || it->second != 1;
  };
  return !shared(stored) && !shared(into);
}

}  // namespace

std::vector<std::string> load_weights(torch::nn::Module& model, const std::string& path,
                                      std::vector<std::pair<std::string, torch::Tensor>> dict, bool strict) {
  std::map<std::string, torch::Tensor> stored;
  for (auto& [name, tensor] : dict)
    if (!stored.emplace(name, tensor).second)
      throw CheckpointError("checkpoint " + path + " holds " + name + " twice; is it an ltk weights file?");
  auto expected = named_state(model);
  std::vector<std::string> problems;
  for (const auto& [name, tensor] : expected) {
    auto it = stored.find(name);
    if (it == stored.end()) {
      problems.push_back(fmt::format("missing {} {}", name, shape_str(tensor)));
    } else if (it->second.sizes() != tensor.sizes()) {
      problems.push_back(fmt::format("{}: checkpoint {} vs model {}", name, shape_str(it->second), shape_str(tensor)));
    }
  }
  for (const auto& [name, tensor] : stored)
    if (!expected.count(name)) problems.push_back(fmt::format("unexpected {} {}", name, shape_str(tensor)));
  if (!problems.empty() && strict)
    throw CheckpointError(fmt::format("checkpoint {} does not match the model's structure ({}); it was saved "
                                      "from a different model config",
                                      path, fmt::join(problems, "; ")));
  dict.clear();
  // How many tensors (the file's and the model's) hold each storage: a tensor alone on its storage
  // takes the stored one as its data, without a copy (a linear model's table is tens of MB).
  std::map<const void*, int> storages;
  for (const auto* side : {&stored, &expected})
    for (const auto& [name, tensor] : *side)
      if (tensor.has_storage()) ++storages[tensor.storage().unsafeGetStorageImpl()];
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : expected) {
    auto it = stored.find(name);
    if (it == stored.end() || it->second.sizes() != tensor.sizes()) continue;
    if (can_adopt(tensor, it->second, storages))
      tensor.set_data(it->second);
    else
      tensor.copy_(it->second);
  }
  return problems;
}

void save_optimizer(torch::optim::Optimizer& optimizer, const std::string& path) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  write_file_atomic(path, out.str());
}

void load_optimizer(torch::optim::Optimizer& optimizer, const std::string& path) {
  std::string raw = read_file(path);
  check_torch_archive(raw, path);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(raw.data(), raw.size());
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    throw CheckpointError("optimizer state " + path + " cannot be loaded: " + e.what_without_backtrace());
  }
}

std::vector<std::pair<std::string, torch::Tensor>> read_tensor_dict(const std::string& path, const std::string& what) {
  const std::vector<char> raw = read_file_bytes(path);
  check_torch_archive(std::string_view(raw.data(), raw.size()), path);
  c10::IValue value;
  try {
    value = torch::pickle_load(raw);
  } catch (const std::exception& e) {
    std::string why = e.what();
    throw CheckpointError(path + " cannot be read (" + why.substr(0, why.find('\n')) + "); is it " + what + "?");
  }
  if (!value.isGenericDict()) throw CheckpointError(path + " holds no name -> tensor dictionary; is it " + what + "?");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor())
      throw CheckpointError(path + ": entries must map names to tensors; is it " + what + "?");
    const torch::Tensor& t = item.value().toTensor();
    // The view must lie inside its storage: LibTorch does not check what a damaged file says (a
    // storage record shorter than its tensors crashed a copy, found by the fuzz tests).
    if (t.numel() > 0) {
      bool fits = t.storage_offset() >= 0 && t.layout() == torch::kStrided && t.has_storage();
      uint64_t last = fits ? static_cast<uint64_t>(t.storage_offset()) : 0, step = 0, bytes = 0;
      for (int64_t d = 0; fits && d < t.dim(); ++d)
        fits = t.stride(d) >= 0 &&
               !__builtin_mul_overflow(static_cast<uint64_t>(t.size(d) - 1), static_cast<uint64_t>(t.stride(d)), &step) &&
               !__builtin_add_overflow(last, step, &last);
      fits = fits && !__builtin_add_overflow(last, uint64_t{1}, &last) &&
             !__builtin_mul_overflow(last, static_cast<uint64_t>(t.element_size()), &bytes);
      if (!fits || bytes > t.storage().nbytes() || (t.storage().nbytes() > 0 && !t.storage().data()))
        throw CheckpointError(path + ": tensor " + item.key().toStringRef() + " is larger than its stored data; the "
                              "file is truncated or damaged");
    }
    // Quantized and complex tensors are no weights ltk (or a Hugging Face BERT) has: a copy into a
    // float parameter threw a bare c10::Error (found by the fuzz tests).
    if (t.is_quantized() || t.is_complex())
      throw CheckpointError(path + ": tensor " + item.key().toStringRef() + " is " + std::string(t.dtype().name()) +
                            ", which no ltk model holds; is it " + what + "?");
    out.emplace_back(item.key().toStringRef(), t);
  }
  return out;
}

}  // namespace ltk
