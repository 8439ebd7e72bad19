// A tensor computed from parameters (their concatenation, a float copy of bf16 weights) and kept
// until one of them changes: in place (an optimiser step, a load_state_dict: the version counter)
// or replaced (model->to(), set_data: the storage). Shared by the threads that run one model
// (ltk-serve's workers), so get() locks.
#pragma once

#include <torch/types.h>

#include <mutex>
#include <utility>
#include <vector>

namespace ltk {

class DerivedTensor {
 public:
  DerivedTensor() = default;
  DerivedTensor(const DerivedTensor&) = delete;
  DerivedTensor& operator=(const DerivedTensor&) = delete;

  /// make() of `from`, made again only when one of `from` has changed since the last call.
  template <class Make>
  torch::Tensor get(const std::vector<torch::Tensor>& from, Make make) {
    std::vector<std::pair<const void*, int64_t>> key;
    key.reserve(from.size());
    for (const auto& t : from)  // an inference tensor has no version counter (nor can it change outside one)
      key.emplace_back(t.defined() ? t.data_ptr() : nullptr, t.defined() && !t.is_inference() ? t._version() : -1);
    std::lock_guard<std::mutex> lock(mutex_);
    if (!value_.defined() || key != key_) {
      value_ = make();
      key_ = std::move(key);
    }
    return value_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<const void*, int64_t>> key_;
  torch::Tensor value_;
};

}  // namespace ltk
