// Classification metrics computed from gold and predicted class ids.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ltk {

struct ClassScores {
  double precision = 0, recall = 0, f1 = 0;
  int64_t support = 0;  ///< gold samples of the class
  int64_t predicted = 0;
};

struct ClassificationMetrics {
  int64_t samples = 0;
  double accuracy = 0;
  /// Mean F1 over the classes present in the gold or predicted labels (scikit-learn's rule).
  double macro_f1 = 0;
  double loss = 0;  ///< mean loss per sample
  std::vector<ClassScores> per_class;
  std::vector<std::vector<int64_t>> confusion;  ///< [gold][predicted]

  nlohmann::json to_json(const std::vector<std::string>& labels) const;
  /// A fixed-width table: overall figures, then one row per class.
  std::string table(const std::vector<std::string>& labels) const;
};

ClassificationMetrics classification_metrics(const std::vector<int64_t>& gold,
                                             const std::vector<int64_t>& predicted, int64_t num_classes);

}  // namespace ltk
