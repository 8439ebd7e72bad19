// The label set of a classification task, saved as labels.txt (one label per line, id order).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ltk/data/token_index.h"

namespace ltk {

class LabelMap {
 public:
  LabelMap() = default;
  /// Labels sorted by byte order, so the mapping does not depend on file order.
  static LabelMap from_labels(const std::vector<std::string>& labels);
  static LabelMap load(const std::string& path);
  void save(const std::string& path) const;

  /// The id of `label`, or -1.
  int64_t find(std::string_view label) const { return index_.find(label); }
  const std::string& name(int64_t id) const { return names_.at(static_cast<size_t>(id)); }
  int64_t size() const { return static_cast<int64_t>(names_.size()); }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<std::string> names_;
  TokenIndex index_;  ///< ids as names_'s (looked up once a sample when data is encoded)
};

}  // namespace ltk
