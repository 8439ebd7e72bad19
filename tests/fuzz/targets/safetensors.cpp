// The safetensors reader (Hugging Face weights files) on arbitrary bytes: the header, then every
// tensor read as float32 and float64. Checks: each tensor has its header's shape.
#include "../fuzz.h"
#include "ltk/io/safetensors.h"

LTK_FUZZ_TARGET(safetensors) {
  ltk::SafeTensorsFile f(ltk::fuzz::scratch_file("model.safetensors", input));
  for (const auto& name : f.names()) {
    auto shape = f.shape(name);
    auto t = f.get(name, torch::kFloat32);
    ltk::fuzz::fuzz_check(t.sizes() == torch::IntArrayRef(shape), name + ": not the header's shape");
    f.get(name, torch::kFloat64);
  }
  for (const auto& [k, v] : f.metadata()) (void)k, (void)v;
}
