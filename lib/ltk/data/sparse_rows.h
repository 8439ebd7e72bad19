// Rows of a sparse matrix (compressed sparse rows): the linear model's tf-idf features of a whole
// split, built once, as the exact solver reads them.
#pragma once

#include <cstdint>
#include <vector>

namespace ltk {

struct SparseRows {
  std::vector<int64_t> offsets{0};  ///< rows + 1: row r is [offsets[r], offsets[r + 1])
  std::vector<int32_t> cols;        ///< ascending within a row
  std::vector<double> values;
  int64_t num_cols = 0;

  int64_t rows() const { return static_cast<int64_t>(offsets.size()) - 1; }
};

}  // namespace ltk
