// A Hugging Face model directory's config.json (model.pretrained_dir), read into a bert model
// section on arbitrary bytes. Checks: what resolves has positive sizes (vocab_size 0: the vocabulary's).
#include <filesystem>

#include "../fuzz.h"
#include "ltk/models/registry.h"

LTK_FUZZ_TARGET(hf_config) {
  std::string dir = ltk::fuzz::scratch_dir() + "/hf";
  std::filesystem::create_directories(dir);
  ltk::fuzz::scratch_file("hf/config.json", input);
  ltk::ModelConfig m = ltk::resolve_model_config({{"type", "bert"}, {"pretrained_dir", dir}});
  for (const char* k : {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"})
    ltk::fuzz::fuzz_check(m.options.at(k).get<int64_t>() > 0, std::string(k) + " resolved to a non-positive size");
  ltk::fuzz::fuzz_check(m.options.at("vocab_size").get<int64_t>() >= 0, "a negative vocab_size resolved");  // 0: the vocabulary's
}
