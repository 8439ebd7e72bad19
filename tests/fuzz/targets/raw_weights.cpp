// The LibTorch-free reader of weights files (ltk/io/raw_tensors.h: what ltk-predict scores a linear
// run with) on arbitrary bytes. Checks: every tensor it returns lies inside the file (each element
// read, so that AddressSanitizer sees a view that does not), and data() is aligned.
#include <cstdint>
#include <cstring>

#include "../fuzz.h"
#include "ltk/io/raw_tensors.h"

LTK_FUZZ_TARGET(raw_weights) {
  const std::string bytes(input);
  for (const auto& [name, t] : ltk::read_raw_tensors(bytes, "weights.pt")) {
    const int64_t n = t.numel();
    ltk::fuzz::fuzz_check(t.sizes.size() == t.strides.size() && n >= 0, "a tensor's sizes and strides disagree");
    const bool inside_file =
        t.storage.data() >= bytes.data() && t.storage.data() + t.storage.size() <= bytes.data() + bytes.size();
    ltk::fuzz::fuzz_check(inside_file, "a tensor's storage lies outside the file");
    uint64_t sum = 0;
    for (int64_t i = 0; i < n && i < (1 << 20); ++i) {
      int64_t at = t.offset, rest = i;
      for (size_t d = t.sizes.size(); d-- > 0;) {
        at += (rest % t.sizes[d]) * t.strides[d];
        rest /= t.sizes[d];
      }
      ltk::fuzz::fuzz_check(at >= 0 && static_cast<uint64_t>(at + 1) * t.item_size <= t.storage.size(),
                            "an element of " + name + " lies outside its storage");
      unsigned char first = 0;
      std::memcpy(&first, t.storage.data() + at * static_cast<int64_t>(t.item_size), 1);
      sum += first;
    }
    if (const void* p = t.data(t.dtype))
      ltk::fuzz::fuzz_check(reinterpret_cast<uintptr_t>(p) % t.item_size == 0, "data() is misaligned");
    (void)sum;
  }
}
