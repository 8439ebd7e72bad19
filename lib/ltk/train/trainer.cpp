#include "ltk/train/trainer.h"

#include <fmt/format.h>

#include <csignal>
#include <cmath>
#include <optional>

#include "ltk/core/error.h"
#include "ltk/core/fault.h"
#include "ltk/core/log.h"
#include "ltk/core/stop.h"
#include "ltk/dist/dist.h"
#include "ltk/eval/evaluator.h"
#include "ltk/train/clock.h"
#include "ltk/train/precision.h"

namespace ltk {

using train_detail::now_s;

Trainer::Trainer(const Config& config, std::shared_ptr<TextModel> model, const Task& task, torch::Device device,
                 const RunDirectory& run, int64_t vocab_size)
    : config_(config), model_(std::move(model)), task_(task), device_(device), run_(run), vocab_size_(vocab_size) {
  check_same_device(*model_, device_);  // P1, and P3: the optimiser comes after the move
  optimizer_ = make_optimizer(config_.optimizer, model_->parameters(), lr_scales(config_.optimizer, *model_));
  lr_group_scales_ = group_lr_scales(*optimizer_, config_.optimizer.lr);
  metric_ = task_.selection_metric(config_.trainer.select_metric);
  higher_better_ = Task::selection_higher_better(metric_, config_.trainer.select_mode);
  current_lr_ = config_.optimizer.lr;
  const std::string precision = resolve_precision(config_, device_);
  autocast_ = precision != "fp32";
  if (precision == "fp16") {
    autocast_dtype_ = torch::kHalf;
    set_grad_scaler(GradScalerOptions{});
  }
  if (autocast_)
    log::info(
        "[precision] {} autocast on {}: matrix products in {}; weights, gradients, optimiser state and "
        "the loss in float32{}; validation in float32",
        precision, device_.is_cuda() ? "CUDA" : "a CPU with native bf16", precision,
        scaler_ ? ", scaled by a dynamic loss scale (a step whose gradients overflow is skipped)" : "");
}

void Trainer::note_overflow() {
  // A few skips while the scale settles are normal (2^16 is usually too high at first); one in a
  // hundred afterwards is reported, and a long run of them means no scale helps: the gradients
  // hold an inf or a NaN of their own (a halved scale reaches 0, which would turn them all NaN).
  const int64_t n = state_.overflow_skipped;
  const float scale = scaler_->current();
  if (n <= 3 || n % 100 == 0)
    log::warn(
        "[train] step {}: the fp16 gradients overflowed; step skipped, loss scale lowered to {:g} ({} skipped "
        "so far)",
        state_.step + 1, scale, n);
  const char* advice =
      "Lower optimizer.lr, set trainer.clip_norm, check the data, or train in \"bf16\" or \"fp32\" "
      "(trainer.precision)";
  if (++overflow_run_ >= kMaxOverflowRun)
    throw TrainError(
        fmt::format("the fp16 gradients overflowed at {} steps in a row (the loss scale is down to "
                    "{:g}): they hold an inf or a NaN whatever the scale. {}",
                    overflow_run_, scale, advice));
  if (!(scale >= kMinLossScale))
    throw TrainError(
        fmt::format("the fp16 loss scale has fallen to {:g} after {} steps skipped for overflow in all: "
                    "the gradients overflow whatever the scale. {}",
                    scale, n, advice));
}

bool Trainer::stop_at(int sig, const TextDataset* valid, TrainSummary& summary) {
  if (last_checkpoint_step_ != state_.step) validate_and_checkpoint(valid, false);
  log::progress_done();
  log::warn("[train] stopped by signal {} at step {}; checkpoint written. Resume with: ltk-train --resume {}", sig,
            state_.step, run_.path());
  summary.interrupted = sig;
  return false;
}

void Trainer::set_grad_scaler(const GradScalerOptions& options) {
  scaler_.emplace(options);
  state_.loss_scale = scaler_->current();
  state_.loss_scale_growth = 0;
}

bool Trainer::unscale_gradients() {
  if (!scaler_) return true;
  const bool finite = scaler_->unscale(model_->parameters());
  scaler_->update(!finite);
  state_.loss_scale = scaler_->current();
  state_.loss_scale_growth = scaler_->growth_tracker();
  return finite;
}

double Trainer::train_step(const Batch& batch, int64_t step) {
  double loss = 0;
  if (micro_step(batch, 1.0, /*first=*/true, step, loss) && unscale_gradients()) optimizer_->step();  // 5. update
  return loss;
}

bool Trainer::micro_step(const Batch& batch, double scale, bool first, int64_t step, double& loss_out) {
  torch::Tensor outputs;
  {
    AutocastGuard autocast(autocast_, device_, autocast_dtype_);
    outputs = model_->forward(batch);  // 1. output
  }
  if (autocast_ && outputs.is_floating_point()) outputs = outputs.to(torch::kFloat);  // the loss in float32
  auto loss = task_.loss(outputs, targets_like(batch.labels, outputs));  // 2. loss
  check_scalar_loss(loss);                           //    a scalar (P4)
  if (auto penalty = model_->penalty(batch); penalty.defined()) {
    // The model's regulariser, reduced as the loss is: a mean multilabel loss averages over the
    // labels too, so its per-sample penalty is shared by them (each label's problem has the same C).
    if (config_.task.type == "multilabel" && config_.task.reduction != "sum")
      penalty = penalty / static_cast<double>(task_.num_outputs());
    loss = loss + (config_.task.reduction == "sum" ? penalty.sum() : penalty.mean());
  }
  loss_out = loss.item<double>();
  if (!std::isfinite(loss_out)) {
    if (config_.trainer.on_nonfinite == "skip") return false;
    const int64_t* idx = batch.indices.data_ptr<int64_t>();
    std::string shown;
    for (int64_t i = 0; i < batch.size() && i < 16; ++i) shown += (i ? "," : "") + std::to_string(idx[i]);
    throw TrainError(fmt::format("non-finite loss {} at step {} (lr {:.3g}) on the batch of samples [{}{}]; lower "
                                 "optimizer.lr, set trainer.clip_norm, check those samples, or set "
                                 "trainer.on_nonfinite to \"skip\"",
                                 loss_out, step, optimizer_->param_groups()[0].options().get_lr(), shown,
                                 batch.size() > 16 ? ",..." : ""));
  }
  if (first) optimizer_->zero_grad();                // 3. clear gradients
  if (scale != 1.0) loss = loss * scale;
  (scaler_ ? scaler_->scale(loss) : loss).backward();  // 4. backward (fp16: of the loss times its scale)
  return true;
}

BatchSampler Trainer::make_sampler(const TextDataset& train) const {
  const auto& tc = config_.trainer;
  // Distributed: the epoch is cut into global batches of batch_size x world samples, exactly as one
  // process with that batch size would cut it; each rank takes its slice of every global batch.
  const int world = group_ ? group_->world() : 1;
  BatchSampler sampler(train.size(), tc.batch_size * world, tc.shuffle, tc.drop_last, config_.seed);
  if (tc.sampler == "balanced") {
    std::vector<int32_t> classes(static_cast<size_t>(train.size()));
    for (int64_t i = 0; i < train.size(); ++i) classes[i] = static_cast<int32_t>(train.label(i));
    sampler.set_balanced(classes);
  }
  if (tc.bucket_pool > 0 || tc.max_tokens > 0) {
    std::vector<int32_t> lengths(static_cast<size_t>(train.size()));
    for (int64_t i = 0; i < train.size(); ++i)  // (a shard's text may be longer than int32, uncut)
      lengths[i] = static_cast<int32_t>(std::min<int64_t>(train.length(i), std::numeric_limits<int32_t>::max()));
    sampler.set_length_batching(std::move(lengths), tc.bucket_pool, tc.max_tokens * world);
  }
  if (sampler.batches_per_epoch() == 0)
    throw ConfigError(fmt::format("config key 'trainer.batch_size': {}{} is larger than the {} training samples and "
                                  "trainer.drop_last is true, so no batch is left",
                                  tc.batch_size * world, world > 1 ? fmt::format(" ({} x {} processes)", tc.batch_size, world) : "",
                                  train.size()));
  return sampler;
}

void Trainer::join_group() {
  // Every rank starts from rank 0's weights (the same seed made them equal; this makes sure).
  std::vector<torch::Tensor> state;
  for (auto& p : model_->parameters()) state.push_back(p.data());
  for (auto& b : model_->buffers()) state.push_back(b);
  group_->broadcast(state);
  // Each rank its own random stream (dropout, sampling), as one process draws different masks for
  // the samples of one batch; a resumed run restored each rank's state from the checkpoint.
  const int rank = group_->rank();
  if (rank > 0 && state_.step == 0 && state_.batch_pos == 0)
    torch::manual_seed(config_.seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(rank)));
}

Trainer::StepInput Trainer::collect(const TextDataset& train, const EpochBatches& order, int64_t from,
                                    int64_t to) const {
  const int world = group_ ? group_->world() : 1, rank = group_ ? group_->rank() : 0;
  PadCollate collate;
  StepInput in;
  for (int64_t b = from; b < to; ++b) {
    const std::vector<int64_t> batch = order[b];
    in.samples += static_cast<int64_t>(batch.size());
    std::vector<int64_t> slice;
    if (world > 1) {  // every world-th sample from this rank's: a length-sorted batch's long
      // samples are shared out, and the slices' sizes differ by one at most
      for (size_t k = static_cast<size_t>(rank); k < batch.size(); k += static_cast<size_t>(world))
        slice.push_back(batch[k]);
      if (slice.empty()) continue;  // a last global batch smaller than the world
    }
    Batch cpu = collate(train, world > 1 ? slice : batch);
    check_token_ids(cpu, vocab_size_, train);  // P8, before the device
    // Task-made inputs (mlm masks) from (seed, epoch, sample) alone: a resumed run sees the
    // same, and so does a run that cuts the epoch into other batches.
    task_.prepare_batch(cpu, config_.seed * 0x100000001B3ull ^ (static_cast<uint64_t>(state_.epoch) << 40));
    in.weights.push_back(task_.batch_weight(cpu));
    in.weight += in.weights.back();
    in.batches.push_back(std::move(cpu));
  }
  return in;
}

bool Trainer::forward_backward(const StepInput& in, double& loss_out) {
  const bool mean_reduction = config_.task.reduction == "mean";
  bool finite = true;
  loss_out = 0;
  for (size_t i = 0; i < in.batches.size() && finite; ++i) {
    Batch batch = in.batches[i].to(device_);  // P1: the one place batches move
    double share = in.weight > 0 ? in.weights[i] / in.weight : 1.0 / static_cast<double>(in.batches.size());
    double loss = 0;
    finite = micro_step(batch, mean_reduction && in.batches.size() > 1 ? share : 1.0, i == 0, state_.step + 1, loss);
    loss_out += mean_reduction ? loss * share : loss;
  }
  return finite;
}

bool Trainer::step(const TextDataset& train, const TextDataset* valid, const EpochBatches& order,
                   const LrSchedule& schedule, int64_t total, int64_t per_epoch, TrainSummary& summary) {
  const auto& tc = config_.trainer;
  const auto batches = static_cast<int64_t>(order.size());
  // One optimiser step over `accumulate` micro-batches; with a mean loss each is weighted by its
  // share of what the loss averages over (samples; masked pieces for mlm), so the step equals one
  // batch `accumulate` times larger.
  const int64_t end = std::min(batches, state_.batch_pos + tc.accumulate);
  const double t_batch = now_s();
  const StepInput in = collect(train, order, state_.batch_pos, end);
  summary.data_seconds += now_s() - t_batch;
  double group_loss = 0;
  bool finite = forward_backward(in, group_loss);
  state_.batch_pos = end;
  int dist_stop = 0;
  if (group_) {
    if (in.batches.empty()) optimizer_->zero_grad();  // no sample of this step here: contributes nothing
    const double t_sync = now_s();
    StepSync s = sync_step(finite, finite ? in.weight : 0.0, group_loss);
    summary.sync_seconds += now_s() - t_sync;
    finite = s.finite;
    group_loss = s.loss;
    dist_stop = s.stop;
  }
  if (!finite) {
    optimizer_->zero_grad();
    ++state_.nonfinite_skipped;
    log::warn("[train] step {}: non-finite loss, batch skipped ({} so far)", state_.step + 1, state_.nonfinite_skipped);
    if (dist_stop) request_stop(dist_stop);  // every rank saw it: the next step's sync stops them all
    if (int sig = group_ ? 0 : stop_signal()) return stop_at(sig, valid, summary);  // (a run of skips)
    return true;
  }
  // fp16: the gradients divided by the loss scale before clipping; every rank holds the same
  // averaged gradients, so every rank skips alike.
  // A skipped step is not a step (as Hugging Face's Trainer): the schedule, eval_every and
  // checkpoint_every count the steps taken; its samples are consumed.
  if (!unscale_gradients()) {
    optimizer_->zero_grad();
    ++state_.overflow_skipped;
    note_overflow();
    if (dist_stop) request_stop(dist_stop);
    if (int sig = group_ ? 0 : stop_signal()) return stop_at(sig, valid, summary);
    return true;
  }
  overflow_run_ = 0;
  clip_gradients(model_->parameters(), tc.clip_norm, tc.clip_value);  // of the averaged gradients
  current_lr_ = schedule.at(state_.step, state_.plateau_scale);
  set_lr(*optimizer_, current_lr_, lr_group_scales_);
  optimizer_->step();  // 5. update
  ++state_.step;
  state_.samples_seen += in.samples;
  window_samples_ += in.samples;
  state_.window_loss += group_loss;
  ++state_.window_steps;
  state_.epoch_loss += group_loss;
  ++state_.epoch_steps;
  log_progress(total, per_epoch, state_.batch_pos == batches);
  fault_point("after_step", state_.step);
  const bool epoch_end = state_.batch_pos == batches;
  const double t_eval = now_s();
  if (tc.eval_every > 0 && state_.step % tc.eval_every == 0) {
    validate_and_checkpoint(valid, true);
  } else if (tc.checkpoint_every > 0 && state_.step % tc.checkpoint_every == 0 && !epoch_end) {
    validate_and_checkpoint(valid, false);
  }
  summary.eval_seconds += now_s() - t_eval;
  if (state_.early_stopped) return false;
  if (int sig = group_ ? dist_stop : stop_signal()) return stop_at(sig, valid, summary);
  return true;
}

bool Trainer::close_epoch(const TextDataset* valid, TrainSummary& summary) {
  const auto& tc = config_.trainer;
  state_.last_epoch_loss = state_.epoch_loss / static_cast<double>(std::max<int64_t>(state_.epoch_steps, 1));
  state_.epoch_loss = 0;
  state_.epoch_steps = 0;
  state_.epoch_closed = true;
  // The end of an epoch: validate (per-epoch mode) and write a checkpoint (unless this step has one).
  const double t_eval = now_s();
  if (tc.eval_every == 0 || last_checkpoint_step_ != state_.step) validate_and_checkpoint(valid, tc.eval_every == 0);
  summary.eval_seconds += now_s() - t_eval;
  if (until_epoch_ > 0 && state_.epoch >= until_epoch_ && state_.epoch < tc.epochs && !state_.early_stopped) {
    // The checkpoint just written holds this epoch as closed: a resumed run starts the next one.
    log::progress_done();
    log::info("[train] paused at the end of epoch {} (step {}); continue with: ltk-train --resume {}", state_.epoch,
              state_.step, run_.path());
    summary.paused = true;
    return true;
  }
  state_.epoch_closed = false;
  state_.batch_pos = 0;
  return false;
}

TrainSummary Trainer::fit(const TextDataset& train, const TextDataset* valid) {
  const auto& tc = config_.trainer;
  const BatchSampler sampler = make_sampler(train);
  // With max_tokens the batch count can differ by epoch; the schedule uses the first epoch's.
  const int64_t per_epoch = (sampler.batches_per_epoch() + tc.accumulate - 1) / tc.accumulate;
  const int64_t total = per_epoch * tc.epochs;
  const LrSchedule schedule(config_.scheduler, config_.optimizer.lr, total);
  TrainSummary summary;
  const double start = now_s();
  window_start_ = start;
  loop_start_ = start;
  const int64_t samples_at_start = state_.samples_seen;
  try {
    if (group_) join_group();
    if (state_.validation_pending) validate_and_checkpoint(valid, true);  // stopped during it last time
    model_->train();
    for (; state_.epoch <= tc.epochs && !state_.early_stopped; ++state_.epoch) {
      if (state_.epoch_closed && until_epoch_ > 0 && state_.epoch >= until_epoch_ && state_.epoch < tc.epochs) {
        summary.paused = true;  // resumed at a pause point it has reached already
        break;
      }
      if (state_.epoch_closed) {  // resumed from the checkpoint written at this epoch's end
        state_.epoch_closed = false;
        state_.batch_pos = 0;
        continue;
      }
      const auto order = sampler.epoch(state_.epoch);
      while (state_.batch_pos < static_cast<int64_t>(order.size()))
        if (!step(train, valid, order, schedule, total, per_epoch, summary)) break;
      if (summary.interrupted || state_.early_stopped) break;
      if (close_epoch(valid, summary)) break;
    }
    log::progress_done();
    const double t_eval = now_s();
    if (!summary.interrupted && !summary.paused && last_checkpoint_step_ != state_.step)
      validate_and_checkpoint(valid, valid != nullptr);
    summary.eval_seconds += now_s() - t_eval;
  } catch (const StopRequested& stop) {
    // A stop during a validation (validate_and_checkpoint wrote the checkpoint).
    log::progress_done();
    log::warn("[train] stopped by signal {} during the validation at step {} (it runs first when resumed); "
              "checkpoint written. Resume with: ltk-train --resume {}",
              stop.signal(), state_.step, run_.path());
    summary.interrupted = stop.signal();
  }
  summarize(summary, start, samples_at_start);
  return summary;
}

TrainSummary Trainer::record_solution(const TextDataset* valid, int64_t samples, double objective) {
  const double start = now_s();
  loop_start_ = start;
  state_.step = 1;  // the solution is one step: validated and checkpointed as one
  state_.samples_seen = samples;
  state_.epoch_closed = true;
  state_.last_epoch_loss = objective;
  run_.append_metrics({{"kind", "train"}, {"epoch", 1}, {"step", 1}, {"loss", objective}, {"lr", 0.0}});
  TrainSummary summary;
  try {
    validate_and_checkpoint(valid, valid != nullptr);
  } catch (const StopRequested& stop) {  // the checkpoint is written; a resumed run solves again
    log::progress_done();
    log::warn("[train] stopped by signal {} during the validation of the solution; checkpoint written", stop.signal());
    summary.interrupted = stop.signal();
  }
  summary.eval_seconds = now_s() - start;
  summarize(summary, start, 0);
  summary.model_is_best = summary.best_step == state_.step;  // the one checkpoint, written from this model
  return summary;
}

void Trainer::summarize(TrainSummary& summary, double start, int64_t samples_at_start) const {
  const auto& tc = config_.trainer;
  summary.last_train_loss = state_.last_epoch_loss;
  summary.steps = state_.step;
  summary.epochs = std::min(state_.epoch, tc.epochs);
  summary.best_epoch = state_.best_epoch;
  summary.best_step = state_.best_step;
  summary.best_metric = state_.best_value;
  summary.early_stopped = state_.early_stopped;
  summary.nonfinite_skipped = state_.nonfinite_skipped;
  summary.overflow_skipped = state_.overflow_skipped;
  summary.loss_scale = scaler_ ? scaler_->current() : 0.0;
  summary.seconds = now_s() - start;
  summary.sync_bytes = sync_bytes_;
  summary.samples_per_s =
      summary.seconds > 0 ? static_cast<double>(state_.samples_seen - samples_at_start) / summary.seconds : 0.0;
}

void Trainer::set_group(std::shared_ptr<dist::Group> group) {
  group_ = std::move(group);
  state_.world = group_ ? group_->world() : 1;
}

Trainer::StepSync Trainer::sync_step(bool finite, double group_weight, double group_loss) {
  const bool mean = config_.task.reduction == "mean";
  std::vector<torch::Tensor> grads, matrices, rest;
  std::vector<torch::Tensor*> slots;
  std::vector<double> had;  // 1 where this rank's backward reached the parameter
  for (auto& p : model_->parameters()) {
    if (!p.requires_grad()) continue;
    auto& g = p.mutable_grad();
    had.push_back(g.defined() ? 1.0 : 0.0);
    if (!g.defined()) g = torch::zeros_like(p);  // unused by this rank's samples
    if (g.is_sparse())
      throw ConfigError("distributed training all-reduces dense gradients, and this model's embedding makes sparse "
                        "ones: set model.sparse to false (and an optimizer other than sparse_adam)");
    // Matrices (embeddings above all) send only the rows their batches touched when those are few.
    (g.dim() == 2 && g.size(0) >= 16 ? matrices : rest).push_back(g);
    grads.push_back(g);
    slots.push_back(&g);
  }
  // The step's totals, whether any rank must skip or stop, and which parameters any rank's backward
  // reached travel with the first collective.
  const int sig = stop_signal();
  std::vector<double> head = {finite ? 0.0 : 1.0, group_weight, mean ? group_loss * group_weight : group_loss,
                              sig == SIGTERM ? 1.0 : 0.0, sig && sig != SIGTERM ? 1.0 : 0.0};
  head.insert(head.end(), had.begin(), had.end());
  auto stats = torch::tensor(head, torch::kDouble);
  StepSync out;
  auto scale = [&] {
    auto s = stats.accessor<double, 1>();
    out.finite = s[0] == 0;
    out.stop = s[3] > 0 ? SIGTERM : s[4] > 0 ? SIGINT : 0;
    const double total = s[1];
    out.loss = mean ? (total > 0 ? s[2] / total : 0.0) : s[2];
    if (!out.finite) return false;
    // The gradient of the global batch's loss: with a mean loss each rank's gradient weighs by its
    // share of what the loss averages over (samples; masked pieces for mlm), with a sum they add.
    if (mean)
      for (auto& g : grads) g.mul_(total > 0 ? group_weight / total : 0.0);
    return true;
  };
  const auto bucket = static_cast<int64_t>(config_.trainer.dist_bucket_mb * (1 << 20));
  sync_bytes_ = static_cast<double>(group_->all_reduce_rows(matrices, rest, stats, scale, bucket));
  // A parameter no rank's backward reached keeps no gradient, as in one process: the optimiser
  // leaves it alone (no weight decay, no momentum).
  auto s = stats.accessor<double, 1>();
  for (size_t i = 0; i < slots.size(); ++i)
    if (s[5 + static_cast<int64_t>(i)] == 0) *slots[i] = torch::Tensor();
  return out;
}

Predictions Trainer::predict_valid(const TextDataset& valid) {
  const int world = group_ ? group_->world() : 1, rank = group_ ? group_->rank() : 0;
  std::optional<StopDeferral> defer;  // every rank validates to the end; a stop acts at the next step
  if (group_) defer.emplace();
  Predictions p = predict(*model_, task_, valid, config_.trainer.eval_batch_size, device_, vocab_size_, rank, world);
  if (!group_) return p;
  // Each rank filled its own rows (zeros elsewhere): the sums are the whole split's results.
  auto stats = torch::tensor({p.loss_sum, static_cast<double>(p.correct), static_cast<double>(p.tokens)}, torch::kDouble);
  std::vector<torch::Tensor> parts{stats};
  if (p.scores.numel()) parts.push_back(p.scores);
  torch::Tensor targets;
  if (p.targets.defined() && p.targets.numel()) {
    targets = p.targets.to(torch::kDouble);
    parts.push_back(targets);
  }
  group_->all_reduce_sum(parts);
  auto s = stats.accessor<double, 1>();
  p.loss_sum = s[0];
  p.correct = static_cast<int64_t>(std::llround(s[1]));
  p.tokens = static_cast<int64_t>(std::llround(s[2]));
  p.samples = valid.num_texts();
  if (targets.defined()) p.targets = targets.to(p.targets.scalar_type());
  return p;
}

}  // namespace ltk
