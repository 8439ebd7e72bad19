// Checkpoint files. Weights are a name -> tensor dictionary written with torch::pickle_save, so
// Python reads them with torch.load(path). Every file is written with write_file_atomic
// (ltk/core/files.h): a crash or power loss mid-write leaves the previous file intact.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <string>

namespace ltk {

/// Saves every parameter and buffer of `model` by its dotted name.
void save_weights(const torch::nn::Module& model, const std::string& path);

/// Loads weights saved by save_weights. A missing, truncated or foreign file is a CheckpointError
/// naming the file. With `strict`, parameter names or shapes that differ from the model's are a
/// CheckpointError listing the differences; otherwise the matching ones are loaded and the
/// differences returned.
std::vector<std::string> load_weights(torch::nn::Module& model, const std::string& path, bool strict = true);

void save_optimizer(torch::optim::Optimizer& optimizer, const std::string& path);
void load_optimizer(torch::optim::Optimizer& optimizer, const std::string& path);

}  // namespace ltk
