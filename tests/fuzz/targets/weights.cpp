// The weights loader (checkpoints' weights.pt: torch::pickle_save of a name -> tensor dictionary)
// on arbitrary bytes, into a small model, strictly and not. Checks: a load that succeeds leaves the
// parameters' shapes as they were.
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "../fuzz.h"
#include "ltk/io/checkpoint.h"

namespace {
struct Small : torch::nn::Module {
  Small() {
    emb = register_module("emb", torch::nn::Embedding(5, 3));
    fc = register_module("fc", torch::nn::Linear(3, 2));
  }
  torch::nn::Embedding emb{nullptr};
  torch::nn::Linear fc{nullptr};
};
}  // namespace

LTK_FUZZ_TARGET(weights) {
  bool strict = ltk::fuzz::take_byte(input) & 1;
  Small m;
  ltk::load_weights(m, ltk::fuzz::scratch_file("weights.pt", input), strict);
  ltk::fuzz::fuzz_check(m.emb->weight.sizes() == torch::IntArrayRef({5, 3}) && m.fc->weight.sizes() == torch::IntArrayRef({2, 3}) &&
                            m.fc->bias.sizes() == torch::IntArrayRef({2}),
                        "a load changed a parameter's shape");
}
