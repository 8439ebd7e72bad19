// Hugging Face model directories: a pretrained BERT read into an ltk model (model.pretrained_dir),
// and a trained bert run written back as one (ltk-eval --export-hf) that transformers'
// AutoModelForSequenceClassification and AutoTokenizer load as they are.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

#include "ltk/io/run.h"

namespace ltk {

/// The weights file of a Hugging Face directory: model.safetensors, else pytorch_model.bin; a
/// CheckpointError naming the directory when it has neither.
std::string hf_weights_file(const std::string& dir);

/// Every tensor of a weights file, by its stored name, converted to `dtype`: a safetensors file
/// (memory-mapped) or the zip archive torch.save writes. Errors name the file.
std::vector<std::pair<std::string, torch::Tensor>> read_weights_file(const std::string& path,
                                                                     torch::ScalarType dtype);

struct PretrainedLoad {
  std::string file;                      ///< the weights file read
  int64_t loaded = 0;                    ///< tensors copied into the model
  std::vector<std::string> initialised;  ///< the model's tensors the file lacks or shapes differently (head, pooler)
  std::vector<std::string> ignored;      ///< the file's pre-training heads (cls.*) and position-id buffers
};

/// Loads a Hugging Face BERT directory into a model with ltk's BERT names (bert.*, classifier.*).
/// Stored names may lack the "bert." prefix and may use LayerNorm gamma/beta; the pre-training
/// heads (cls.*) are ignored. The pooler and the classifier are kept as initialised when the file
/// lacks them (or, for the classifier, has another number of labels); any other missing tensor,
/// an unexpected one, or a shape mismatch is a CheckpointError naming the tensor, both shapes and
/// the file.
PretrainedLoad load_hf_bert(torch::nn::Module& model, const std::string& dir);

/// Writes a bert run as a Hugging Face directory: config.json (BertForSequenceClassification,
/// id2label, label2id, problem_type), vocab.txt, tokenizer_config.json and model.safetensors.
void export_hf(const LoadedRun& run, const std::string& dir);

}  // namespace ltk
