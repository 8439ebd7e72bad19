// Score-based metrics: ranking (ROC-AUC, average precision, threshold sweep), calibration and
// correlation. Each follows scikit-learn's (or SciPy's) definition; tests/metrics/check_sklearn.py
// checks them on random data.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace ltk {

/// Area under the ROC curve of `scores` for the binary `truth` (ties share their rank), as
/// sklearn.metrics.roc_auc_score. NaN when only one class is present.
double roc_auc(const std::vector<double>& scores, const std::vector<int>& truth);

/// Average precision, as sklearn.metrics.average_precision_score (the area under the
/// precision-recall curve as a step sum over distinct thresholds).
double average_precision(const std::vector<double>& scores, const std::vector<int>& truth);

struct ThresholdPoint {
  double threshold = 0, precision = 0, recall = 0, f1 = 0;
};

/// Precision, recall and F1 of predicting positive when score >= t, for each distinct score t
/// (descending); `best` is the point with the highest F1.
struct ThresholdSweep {
  std::vector<ThresholdPoint> points;
  ThresholdPoint best;
};
ThresholdSweep threshold_sweep(const std::vector<double>& scores, const std::vector<int>& truth);

struct ReliabilityBin {
  double lower = 0, upper = 0;
  int64_t count = 0;
  double confidence = 0;  ///< mean confidence in the bin
  double accuracy = 0;    ///< share of correct predictions in the bin
};

/// Expected calibration error over `bins` equal-width confidence bins on [0, 1]:
/// sum over bins of |accuracy - confidence| * count / N. A confidence of 1 falls in the last bin.
struct Calibration {
  double ece = 0;
  std::vector<ReliabilityBin> bins;
  nlohmann::json to_json() const;
};
Calibration calibration(const std::vector<double>& confidence, const std::vector<int>& correct, int bins = 10);

double pearson(const std::vector<double>& x, const std::vector<double>& y);
/// Pearson correlation of the average ranks (scipy.stats.spearmanr).
double spearman(const std::vector<double>& x, const std::vector<double>& y);
/// Coefficient of determination (sklearn.metrics.r2_score).
double r2_score(const std::vector<double>& truth, const std::vector<double>& predicted);

/// Average ranks (1-based; ties share the mean of their ranks).
std::vector<double> average_ranks(const std::vector<double>& x);

}  // namespace ltk
