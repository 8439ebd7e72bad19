#include "ltk/task/calibration.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "ltk/core/error.h"
#include "ltk/metrics/scores.h"

namespace ltk {

namespace {

// The minimum of a convex function of beta on [lo, hi].
double golden_section(const std::function<double(double)>& f, double lo, double hi) {
  const double r = (std::sqrt(5.0) - 1) / 2;
  double a = lo, b = hi, c = b - r * (b - a), d = a + r * (b - a);
  double fc = f(c), fd = f(d);
  for (int i = 0; i < 100 && b - a > 1e-9; ++i) {
    if (fc < fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - r * (b - a);
      fc = f(c);
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + r * (b - a);
      fd = f(d);
    }
  }
  return (a + b) / 2;
}

}  // namespace

std::vector<double> fit_temperature(const std::string& task_type, const torch::Tensor& logits,
                                    const torch::Tensor& targets) {
  torch::NoGradGuard no_grad;
  auto z = logits.to(torch::kFloat64).cpu();
  if (z.dim() == 1) z = z.unsqueeze(1);
  if (z.size(0) == 0) throw TrainError("temperature scaling: the validation split has no samples");
  constexpr double kLo = 1.0 / 20, kHi = 20;  // T from 0.05 to 20
  if (task_type == "multiclass") {
    auto y = targets.to(torch::kLong).cpu().reshape({-1, 1});
    auto nll = [&](double beta) {
      auto s = z * beta;
      return (torch::logsumexp(s, 1) - s.gather(1, y).squeeze(1)).mean().item<double>();
    };
    return {1 / golden_section(nll, kLo, kHi)};
  }
  auto y = targets.to(torch::kFloat64).cpu().reshape(z.sizes());
  std::vector<double> t;
  for (int64_t k = 0; k < z.size(1); ++k) {
    auto zk = z.select(1, k), yk = y.select(1, k);
    auto nll = [&](double beta) {
      auto s = zk * beta;
      return (torch::nn::functional::softplus(s) - yk * s).mean().item<double>();
    };
    t.push_back(1 / golden_section(nll, kLo, kHi));
  }
  return t;
}

namespace {

// F1 of predicting `score >= t` against `truth`.
double f1_at(const std::vector<double>& score, const std::vector<int>& truth, double t) {
  double tp = 0, fp = 0, fn = 0;
  for (size_t i = 0; i < score.size(); ++i) {
    const bool pred = score[i] >= t;
    if (pred && truth[i]) tp += 1;
    if (pred && !truth[i]) fp += 1;
    if (!pred && truth[i]) fn += 1;
  }
  return tp > 0 ? 2 * tp / (2 * tp + fp + fn) : 0.0;
}

}  // namespace

TunedThresholds tune_thresholds(const torch::Tensor& scores, const torch::Tensor& targets, int64_t min_positives,
                                double fallback) {
  auto s = scores.to(torch::kFloat64).cpu().contiguous();
  if (s.dim() == 1) s = s.unsqueeze(1);
  auto y = targets.to(torch::kFloat64).cpu().reshape(s.sizes()).contiguous();
  TunedThresholds out;
  for (int64_t k = 0; k < s.size(1); ++k) {
    auto sk = s.select(1, k).contiguous(), yk = y.select(1, k).contiguous();
    std::vector<double> score(sk.data_ptr<double>(), sk.data_ptr<double>() + sk.numel());
    std::vector<int> truth;
    for (int64_t i = 0; i < yk.numel(); ++i) truth.push_back(yk.data_ptr<double>()[i] >= 0.5);
    const auto positives = static_cast<int64_t>(std::count(truth.begin(), truth.end(), 1));
    double t = fallback;
    const bool tune = positives >= std::max<int64_t>(min_positives, 1);
    if (tune) {
      const double best = threshold_sweep(score, truth).best.threshold;
      double below = -1;  // the largest score under `best`
      for (double v : score)
        if (v < best) below = std::max(below, v);
      t = below >= 0 ? (best + below) / 2 : best / 2;
    }
    out.thresholds.push_back(t);
    out.f1.push_back(f1_at(score, truth, t));
    out.positives.push_back(positives);
    out.tuned.push_back(tune);
  }
  return out;
}

}  // namespace ltk
