// Checkpoint files. Weights are a name -> tensor dictionary written with torch::pickle_save, so
// Python reads them with torch.load(path). Every file is written with write_file_atomic
// (ltk/core/files.h): a crash or power loss mid-write leaves the previous file intact.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <string>
#include <utility>
#include <vector>

namespace ltk {

/// Saves every parameter and buffer of `model` by its dotted name.
void save_weights(const torch::nn::Module& model, const std::string& path);

/// Saves name -> tensor pairs as save_weights does (a deploy artifact's tensors).
void save_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const std::string& path);

/// Loads weights saved by save_weights. A missing, truncated or foreign file is a CheckpointError
/// naming the file. With `strict`, parameter names or shapes that differ from the model's are a
/// CheckpointError listing the differences; otherwise the matching ones are loaded and the
/// differences returned.
std::vector<std::string> load_weights(torch::nn::Module& model, const std::string& path, bool strict = true);
/// The same, from the tensors read_weights(path) returned (read while the model was built).
std::vector<std::string> load_weights(torch::nn::Module& model, const std::string& path,
                                      std::vector<std::pair<std::string, torch::Tensor>> stored, bool strict = true);
/// The tensors of a weights file save_weights wrote; a missing or damaged file is a CheckpointError.
std::vector<std::pair<std::string, torch::Tensor>> read_weights(const std::string& path);

void save_optimizer(torch::optim::Optimizer& optimizer, const std::string& path);
/// Loads an optimiser state written by save_optimizer; a damaged file is a CheckpointError.
void load_optimizer(torch::optim::Optimizer& optimizer, const std::string& path);

/// Reads a name -> tensor dictionary that torch.save or torch::pickle_save wrote (weights.pt,
/// state.pt, pytorch_model.bin). A damaged or foreign file is a CheckpointError naming `path` and
/// saying it should hold `what`.
std::vector<std::pair<std::string, torch::Tensor>> read_tensor_dict(const std::string& path, const std::string& what);

}  // namespace ltk
