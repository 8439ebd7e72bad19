#include "ltk/task/calibration.h"

#include <torch/torch.h>

#include <cmath>
#include <functional>

#include "ltk/core/error.h"

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

}  // namespace ltk
