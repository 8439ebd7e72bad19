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
#include <map>
#include <sstream>

#include "ltk/core/error.h"
#include "ltk/core/files.h"

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

void save_weights(const torch::nn::Module& model, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : named_state(model)) dict.insert(name, tensor.detach().to(torch::kCPU));
  std::vector<char> bytes = torch::pickle_save(dict);
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

std::vector<std::string> load_weights(torch::nn::Module& model, const std::string& path, bool strict) {
  if (!fs::exists(path)) throw CheckpointError("checkpoint " + path + " does not exist");
  std::string raw = read_file(path);
  c10::IValue value;
  try {
    value = torch::pickle_load(std::vector<char>(raw.begin(), raw.end()));
  } catch (const std::exception&) {
    throw CheckpointError("checkpoint " + path + " cannot be read: the file is truncated or is not an ltk "
                          "weights file");
  }
  if (!value.isGenericDict())
    throw CheckpointError("checkpoint " + path + " holds no name -> tensor dictionary; is it an ltk weights file?");
  std::map<std::string, torch::Tensor> stored;
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor())
      throw CheckpointError("checkpoint " + path + ": entries must map names to tensors");
    stored[item.key().toStringRef()] = item.value().toTensor();
  }
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
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : expected) {
    auto it = stored.find(name);
    if (it != stored.end() && it->second.sizes() == tensor.sizes()) tensor.copy_(it->second);
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
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    throw CheckpointError("optimizer state " + path + " cannot be loaded: " + e.what_without_backtrace());
  }
}

}  // namespace ltk
