// A tensor computed from parameters (their concatenation, a float copy of bf16 weights) and kept
// until one of them changes: in place (an optimiser step, a load_state_dict: the version counter)
// or replaced (model->to(), set_data: the storage, its type or shape). Shared by the threads that
// run one model (ltk-serve's workers), so get() locks. The key holds the sources' storages, so
// that a replaced one cannot be freed and another put at its address with the same version.
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
    std::lock_guard<std::mutex> lock(mutex_);
    if (!value_.defined() || !same_sources(from)) {
      value_ = make();
      sources_.clear();
      for (const auto& t : from) sources_.push_back(Source::of(t));
    }
    return value_;
  }

 private:
  struct Source {
    c10::Storage storage;  ///< held: its address cannot be reused while it is the key
    const void* data = nullptr;
    int64_t version = -1;  ///< an inference tensor has no version counter (nor can it change outside one)
    caffe2::TypeMeta dtype;
    std::vector<int64_t> sizes;
    static Source of(const torch::Tensor& t) {
      if (!t.defined()) return {};
      return {t.storage(), t.data_ptr(), t.is_inference() ? -1 : t._version(), t.dtype(), t.sizes().vec()};
    }
    bool matches(const torch::Tensor& t) const {
      if (!t.defined()) return !storage;
      return storage && t.storage().unsafeGetStorageImpl() == storage.unsafeGetStorageImpl() && t.data_ptr() == data &&
             (t.is_inference() ? -1 : t._version()) == version && t.dtype() == dtype && t.sizes().equals(sizes);
    }
  };

  bool same_sources(const std::vector<torch::Tensor>& from) const {
    if (from.size() != sources_.size()) return false;
    for (size_t i = 0; i < from.size(); ++i)
      if (!sources_[i].matches(from[i])) return false;
    return true;
  }

  std::mutex mutex_;
  std::vector<Source> sources_;
  torch::Tensor value_;
};

}  // namespace ltk
