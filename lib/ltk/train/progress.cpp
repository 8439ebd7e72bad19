// Progress: the live bar, the progress lines and their metrics.jsonl records.
#include "ltk/train/trainer.h"

#include <fmt/format.h>

#include "ltk/core/log.h"
#include "ltk/dist/dist.h"
#include "ltk/train/clock.h"

namespace ltk {

using train_detail::now_s;

namespace {

std::string format_duration(double s) {
  auto t = static_cast<int64_t>(s);
  return t >= 3600 ? fmt::format("{}:{:02d}:{:02d}", t / 3600, t / 60 % 60, t % 60)
                   : fmt::format("{}:{:02d}", t / 60, t % 60);
}

}  // namespace

void Trainer::log_progress(int64_t total_steps, int64_t per_epoch, bool force) {
  const auto& tc = config_.trainer;
  double now = now_s();
  double secs = now - window_start_;
  double sps = secs > 0 ? static_cast<double>(window_samples_) / secs : 0.0;
  bool bar = tc.progress == "bar" || (tc.progress == "auto" && log::stderr_is_terminal());
  if (group_ && group_->rank() != 0) bar = false;  // one bar per job: rank 0's
  if (bar && (now - bar_shown_at_ > 0.2 || force)) {
    double frac = total_steps ? static_cast<double>(state_.step) / static_cast<double>(total_steps) : 0.0;
    int filled = static_cast<int>(frac * 20);
    double rate = state_.step > 0 ? now / static_cast<double>(state_.step) : 0.0;
    log::progress(fmt::format("epoch {}/{} step {}/{} [{}{}] loss {:.4f} lr {:.3g} ETA {}", state_.epoch, tc.epochs,
                              state_.step, total_steps, std::string(static_cast<size_t>(filled), '='),
                              std::string(static_cast<size_t>(20 - filled), ' '),
                              state_.window_steps ? state_.window_loss / static_cast<double>(state_.window_steps) : 0.0,
                              current_lr_, format_duration(rate * static_cast<double>(total_steps - state_.step))));
    bar_shown_at_ = now;
  }
  if (!(state_.step % tc.log_every == 0 || force) || state_.window_steps == 0) return;
  double loss = state_.window_loss / static_cast<double>(state_.window_steps);
  int64_t in_epoch = (state_.batch_pos + tc.accumulate - 1) / tc.accumulate;
  log::info("[train] epoch {}/{} step {}/{} ({}/{} in epoch) loss {:.4f} lr {:.3g} {:.0f} samples/s", state_.epoch,
            tc.epochs, state_.step, total_steps, in_epoch, per_epoch, loss, current_lr_, sps);
  nlohmann::json record = {{"kind", "train"}, {"epoch", state_.epoch}, {"step", state_.step},
                           {"loss", loss},    {"lr", current_lr_},     {"samples_per_s", sps}};
  if (scaler_) {  // fp16: the loss scale and the steps its overflows skipped so far
    record["loss_scale"] = scaler_->current();
    record["overflow_skipped"] = state_.overflow_skipped;
  }
  run_.append_metrics(record);
  state_.window_loss = 0;
  state_.window_steps = 0;
  window_samples_ = 0;
  window_start_ = now;
}

}  // namespace ltk
