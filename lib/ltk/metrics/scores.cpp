#include "ltk/metrics/scores.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace ltk {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Indices sorted by score, descending (stable).
std::vector<size_t> by_score_desc(const std::vector<double>& scores) {
  std::vector<size_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return idx;
}
}  // namespace

std::vector<double> average_ranks(const std::vector<double>& x) {
  std::vector<size_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> ranks(x.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && x[idx[j + 1]] == x[idx[i]]) ++j;
    double r = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) ranks[idx[k]] = r;
    i = j + 1;
  }
  return ranks;
}

double roc_auc(const std::vector<double>& scores, const std::vector<int>& truth) {
  auto ranks = average_ranks(scores);
  double pos = 0, rank_sum = 0;
  for (size_t i = 0; i < truth.size(); ++i)
    if (truth[i]) {
      pos += 1;
      rank_sum += ranks[i];
    }
  double neg = static_cast<double>(truth.size()) - pos;
  if (pos == 0 || neg == 0) return kNaN;
  return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);  // Mann-Whitney U / (pos * neg)
}

ThresholdSweep threshold_sweep(const std::vector<double>& scores, const std::vector<int>& truth) {
  ThresholdSweep sweep;
  double total_pos = static_cast<double>(std::count(truth.begin(), truth.end(), 1));
  auto idx = by_score_desc(scores);
  double tp = 0, fp = 0;
  sweep.best.f1 = -1;
  for (size_t i = 0; i < idx.size(); ++i) {
    (truth[idx[i]] ? tp : fp) += 1;
    if (i + 1 < idx.size() && scores[idx[i + 1]] == scores[idx[i]]) continue;  // one point per distinct score
    ThresholdPoint p;
    p.threshold = scores[idx[i]];
    p.precision = tp / (tp + fp);
    p.recall = total_pos > 0 ? tp / total_pos : 0.0;
    p.f1 = p.precision + p.recall > 0 ? 2 * p.precision * p.recall / (p.precision + p.recall) : 0.0;
    if (p.f1 > sweep.best.f1) sweep.best = p;
    sweep.points.push_back(p);
  }
  if (sweep.best.f1 < 0) sweep.best = ThresholdPoint{};
  return sweep;
}

double average_precision(const std::vector<double>& scores, const std::vector<int>& truth) {
  double total_pos = static_cast<double>(std::count(truth.begin(), truth.end(), 1));
  if (total_pos == 0) return kNaN;
  double ap = 0, prev_recall = 0;
  for (const auto& p : threshold_sweep(scores, truth).points) {
    ap += (p.recall - prev_recall) * p.precision;
    prev_recall = p.recall;
  }
  return ap;
}

nlohmann::json Calibration::to_json() const {
  nlohmann::json b = nlohmann::json::array();
  for (const auto& x : bins)
    b.push_back({{"lower", x.lower}, {"upper", x.upper}, {"count", x.count}, {"confidence", x.confidence},
                 {"accuracy", x.accuracy}});
  return {{"ece", ece}, {"bins", b}};
}

Calibration calibration(const std::vector<double>& confidence, const std::vector<int>& correct, int bins) {
  Calibration c;
  c.bins.resize(static_cast<size_t>(bins));
  for (int b = 0; b < bins; ++b) {
    c.bins[b].lower = static_cast<double>(b) / bins;
    c.bins[b].upper = static_cast<double>(b + 1) / bins;
  }
  for (size_t i = 0; i < confidence.size(); ++i) {
    int b = std::min(bins - 1, std::max(0, static_cast<int>(std::floor(confidence[i] * bins))));
    c.bins[b].count++;
    c.bins[b].confidence += confidence[i];
    c.bins[b].accuracy += correct[i];
  }
  double n = static_cast<double>(confidence.size());
  for (auto& b : c.bins) {
    if (b.count) {
      b.confidence /= static_cast<double>(b.count);
      b.accuracy /= static_cast<double>(b.count);
      c.ece += std::fabs(b.accuracy - b.confidence) * static_cast<double>(b.count) / n;
    }
  }
  return c;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  double n = static_cast<double>(x.size());
  if (x.size() < 2) return kNaN;
  double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : kNaN;
}

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  return pearson(average_ranks(x), average_ranks(y));
}

double r2_score(const std::vector<double>& truth, const std::vector<double>& predicted) {
  double n = static_cast<double>(truth.size());
  if (truth.empty()) return kNaN;
  double mean = std::accumulate(truth.begin(), truth.end(), 0.0) / n;
  double ss_res = 0, ss_tot = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    ss_res += (truth[i] - predicted[i]) * (truth[i] - predicted[i]);
    ss_tot += (truth[i] - mean) * (truth[i] - mean);
  }
  if (ss_tot == 0) return ss_res == 0 ? 1.0 : 0.0;
  return 1.0 - ss_res / ss_tot;
}

}  // namespace ltk
