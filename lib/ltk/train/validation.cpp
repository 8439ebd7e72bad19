// Validation: the selection metric, the best checkpoints kept, early stopping and the plateau schedule.
#include "ltk/train/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "ltk/core/log.h"
#include "ltk/core/stop.h"
#include "ltk/eval/evaluator.h"
#include "ltk/train/clock.h"

namespace ltk {

using train_detail::now_s;

void Trainer::validate_and_checkpoint(const TextDataset* valid, bool evaluate) {
  bool improved = false;
  if (valid && evaluate) {
    const double t0 = now_s();
    std::optional<EvalReport> evaluated;
    try {
      evaluated = task_.evaluate(predict_valid(*valid));
    } catch (const StopRequested&) {
      // Stopped mid-validation: checkpoint the state before it, marked so that a resumed run
      // validates first and goes on exactly as an uninterrupted one.
      state_.validation_pending = true;
      write_checkpoint(false);
      throw;
    }
    state_.validation_pending = false;
    const EvalReport& report = *evaluated;
    const double eval_seconds = now_s() - t0;
    double value = report.get(metric_);
    double delta = config_.trainer.min_delta;
    improved = !state_.has_best || (higher_better_ ? value > state_.best_value + delta : value < state_.best_value - delta);
    if (improved) {
      state_.has_best = true;
      state_.best_value = value;
      state_.best_step = state_.step;
      state_.best_epoch = state_.epoch;
      state_.bad_evals = 0;
    } else {
      ++state_.bad_evals;
    }
    log::info("[valid] epoch {} step {} {}{}", state_.epoch, state_.step, report.summary(),
              improved ? "  (best so far)" : fmt::format("  ({} without improvement)", state_.bad_evals));
    nlohmann::json record = {{"kind", "valid"}, {"epoch", state_.epoch}, {"step", state_.step}};
    record.update(report.headline());
    record["elapsed_s"] = now_s() - loop_start_;
    record["eval_samples_per_s"] = eval_seconds > 0 ? static_cast<double>(valid->num_texts()) / eval_seconds : 0.0;
    run_.append_metrics(record);
    // The k best checkpoints by the selection metric.
    state_.kept.emplace_back(value, state_.step);
    std::stable_sort(state_.kept.begin(), state_.kept.end(), [&](const auto& a, const auto& b) {
      return higher_better_ ? a.first > b.first : a.first < b.first;
    });
    if (static_cast<int64_t>(state_.kept.size()) > config_.trainer.keep_best)
      state_.kept.resize(static_cast<size_t>(config_.trainer.keep_best));
    if (config_.scheduler.type == "plateau" && !improved && state_.bad_evals > 0 &&
        state_.bad_evals % (config_.scheduler.patience + 1) == 0) {
      state_.plateau_scale *= config_.scheduler.factor;
      log::info("[train] validation plateau: lr scaled by {} (now x{:.3g})", config_.scheduler.factor,
                state_.plateau_scale);
    }
    if (config_.trainer.patience > 0 && state_.bad_evals >= config_.trainer.patience) {
      state_.early_stopped = true;
      log::info("[train] early stopping: {} validations without an improvement of {} beyond {:.4f} (step {})",
                state_.bad_evals, metric_, state_.best_value, state_.best_step);
    }
  } else if (!valid) {
    improved = true;  // without a validation split the latest checkpoint is the best
    state_.best_step = state_.step;
    state_.best_epoch = state_.epoch;
  }
  write_checkpoint(improved);
}

}  // namespace ltk
