#include "ltk/train/trainer.h"

#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/serialize.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>

#include "ltk/core/error.h"
#include "ltk/core/fault.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/stop.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/checkpoint.h"

namespace ltk {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
const Clock::time_point kStart = Clock::now();
double now_s() { return std::chrono::duration<double>(Clock::now() - kStart).count(); }

// The RNG states a checkpoint keeps: the CPU generator's, and each CUDA device's when there is one.
c10::Dict<std::string, torch::Tensor> rng_states() {
  c10::Dict<std::string, torch::Tensor> rng;
  rng.insert("rng_cpu", at::globalContext().defaultGenerator(torch::kCPU).get_state());
  if (torch::cuda::is_available())
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i)
      rng.insert("rng_cuda_" + std::to_string(i),
                 at::globalContext().defaultGenerator(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(i)))
                     .get_state());
  return rng;
}

void restore_rng_states(const c10::Dict<std::string, torch::Tensor>& rng, const std::string& path) {
  auto cpu = at::globalContext().defaultGenerator(torch::kCPU);  // a handle to the global generator
  cpu.set_state(rng.at("rng_cpu"));
  if (!torch::cuda::is_available()) return;
  for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
    const std::string key = "rng_cuda_" + std::to_string(i);
    if (!rng.contains(key)) {
      log::warn("[resume] {} holds no RNG state for cuda:{} (written without CUDA): its dropout and sampling "
                "differ from an uninterrupted run",
                path, i);
      continue;
    }
    auto gen = at::globalContext().defaultGenerator(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(i)));
    gen.set_state(rng.at(key));
  }
}

std::string format_duration(double s) {
  auto t = static_cast<int64_t>(s);
  return t >= 3600 ? fmt::format("{}:{:02d}:{:02d}", t / 3600, t / 60 % 60, t % 60)
                   : fmt::format("{}:{:02d}", t / 60, t % 60);
}

}  // namespace

nlohmann::json TrainState::to_json() const {
  nlohmann::json kept_json = nlohmann::json::array();
  for (const auto& [v, s] : kept) kept_json.push_back({v, s});
  return {{"epoch", epoch},
          {"batch_pos", batch_pos},
          {"step", step},
          {"samples_seen", samples_seen},
          {"window_loss", window_loss},
          {"window_steps", window_steps},
          {"epoch_loss", epoch_loss},
          {"epoch_steps", epoch_steps},
          {"plateau_scale", plateau_scale},
          {"bad_evals", bad_evals},
          {"has_best", has_best},
          {"best_value", has_best ? best_value : 0.0},
          {"best_step", best_step},
          {"best_epoch", best_epoch},
          {"kept", kept_json},
          {"nonfinite_skipped", nonfinite_skipped},
          {"early_stopped", early_stopped},
          {"epoch_closed", epoch_closed},
          {"last_epoch_loss", last_epoch_loss},
          {"metrics_bytes", metrics_bytes},
          {"validation_pending", validation_pending}};
}

TrainState TrainState::from_json(const nlohmann::json& j) {
  TrainState s;
  s.epoch = j.at("epoch");
  s.batch_pos = j.at("batch_pos");
  s.step = j.at("step");
  s.samples_seen = j.at("samples_seen");
  s.window_loss = j.at("window_loss");
  s.window_steps = j.at("window_steps");
  s.epoch_loss = j.at("epoch_loss");
  s.epoch_steps = j.at("epoch_steps");
  s.plateau_scale = j.at("plateau_scale");
  s.bad_evals = j.at("bad_evals");
  s.has_best = j.at("has_best");
  s.best_value = j.at("best_value");
  s.best_step = j.at("best_step");
  s.best_epoch = j.at("best_epoch");
  for (const auto& k : j.at("kept")) s.kept.emplace_back(k.at(0).get<double>(), k.at(1).get<int64_t>());
  s.nonfinite_skipped = j.at("nonfinite_skipped");
  s.early_stopped = j.at("early_stopped");
  s.epoch_closed = j.at("epoch_closed");
  s.last_epoch_loss = j.at("last_epoch_loss");
  s.metrics_bytes = j.at("metrics_bytes");
  s.validation_pending = j.value("validation_pending", false);  // absent in runs made before it existed
  return s;
}

Trainer::Trainer(const Config& config, std::shared_ptr<TextModel> model, const Task& task, torch::Device device,
                 const RunDirectory& run, int64_t vocab_size)
    : config_(config), model_(std::move(model)), task_(task), device_(device), run_(run), vocab_size_(vocab_size) {
  check_same_device(*model_, device_);  // P1, and P3: the optimiser comes after the move
  optimizer_ = make_optimizer(config_.optimizer, model_->parameters());
  metric_ = task_.selection_metric(config_.trainer.select_metric);
  const std::string& mode = config_.trainer.select_mode;
  higher_better_ = mode == "auto" ? Task::higher_is_better(metric_) : mode == "max";
  current_lr_ = config_.optimizer.lr;
}

void Trainer::restore(const std::string& dir) {
  load_weights(*model_, dir + "/weights.pt");
  load_optimizer(*optimizer_, dir + "/optim.pt");
  auto meta = read_json_file(dir + "/meta.json");
  state_ = TrainState::from_json(meta.at("state"));
  std::string raw = read_file(dir + "/state.pt");
  c10::Dict<std::string, torch::Tensor> rng;
  for (const auto& item : torch::pickle_load(std::vector<char>(raw.begin(), raw.end())).toGenericDict())
    rng.insert(item.key().toStringRef(), item.value().toTensor());
  restore_rng_states(rng, dir + "/state.pt");
  last_checkpoint_step_ = state_.step;
  // Records written after this checkpoint belong to the lost part of the run: drop them.
  if (fs::exists(run_.metrics_path())) fs::resize_file(run_.metrics_path(), state_.metrics_bytes);
}

double Trainer::train_step(const Batch& batch, int64_t step) {
  double loss = 0;
  if (micro_step(batch, 1.0, /*first=*/true, step, loss)) optimizer_->step();  // 5. update
  return loss;
}

bool Trainer::micro_step(const Batch& batch, double scale, bool first, int64_t step, double& loss_out) {
  auto outputs = model_->forward(batch);             // 1. output
  auto loss = task_.loss(outputs, batch.labels);     // 2. loss
  check_scalar_loss(loss);                           //    a scalar (P4)
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
  (scale == 1.0 ? loss : loss * scale).backward();   // 4. backward
  return true;
}

void Trainer::log_progress(int64_t total_steps, int64_t per_epoch, bool force) {
  const auto& tc = config_.trainer;
  double now = now_s();
  double secs = now - window_start_;
  double sps = secs > 0 ? static_cast<double>(window_samples_) / secs : 0.0;
  bool bar = tc.progress == "bar" || (tc.progress == "auto" && log::stderr_is_terminal());
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
  run_.append_metrics({{"kind", "train"},
                       {"epoch", state_.epoch},
                       {"step", state_.step},
                       {"loss", loss},
                       {"lr", current_lr_},
                       {"samples_per_s", sps}});
  state_.window_loss = 0;
  state_.window_steps = 0;
  window_samples_ = 0;
  window_start_ = now;
}

void Trainer::write_checkpoint(bool improved) {
  std::string name = RunDirectory::step_dir_name(state_.step);
  std::string dir = run_.file("checkpoints/" + name), tmp = dir + ".tmp";
  state_.metrics_bytes = fs::exists(run_.metrics_path()) ? fs::file_size(run_.metrics_path()) : 0;
  remove_tree(tmp);
  fs::create_directories(tmp);
  save_weights(*model_, tmp + "/weights.pt");
  fault_point("in_checkpoint", state_.step);
  save_optimizer(*optimizer_, tmp + "/optim.pt");
  auto bytes = torch::pickle_save(rng_states());
  write_file_atomic(tmp + "/state.pt", std::string(bytes.begin(), bytes.end()));
  nlohmann::json meta = {{"step", state_.step}, {"epoch", state_.epoch}, {"state", state_.to_json()}};
  write_file_atomic(tmp + "/meta.json", meta.dump(2) + "\n");
  // Each file is on disk (write_file_atomic fsyncs); the rename of the directory is made durable
  // before the pointers move, so that after a power loss last.json never names a step-N directory
  // that is missing or partial.
  remove_tree(dir);
  rename_durable(tmp, dir);
  fault_point("before_pointer", state_.step);
  nlohmann::json pointer = {{"dir", name}, {"step", state_.step}, {"epoch", state_.epoch}};
  write_file_atomic(run_.file("checkpoints/last.json"), pointer.dump() + "\n");
  if (improved) {
    nlohmann::json best = pointer;
    if (state_.has_best) best[metric_] = state_.best_value;
    write_file_atomic(run_.file("checkpoints/best.json"), best.dump() + "\n");
  }
  last_checkpoint_step_ = state_.step;
  // Keep the last, the best and the keep_best best; remove the rest.
  std::set<std::string> keep{name};
  std::string best_dir = run_.checkpoint_dir("best");
  if (!best_dir.empty()) keep.insert(fs::path(best_dir).filename().string());
  for (const auto& [v, s] : state_.kept) keep.insert(RunDirectory::step_dir_name(s));
  for (const auto& e : fs::directory_iterator(run_.file("checkpoints"))) {
    std::string f = e.path().filename().string();
    if (e.is_directory() && f.rfind("step-", 0) == 0 && !keep.count(f)) remove_tree(e.path().string());
  }
}

void Trainer::validate_and_checkpoint(const TextDataset* valid, bool evaluate) {
  bool improved = false;
  if (valid && evaluate) {
    const double t0 = now_s();
    std::optional<EvalReport> evaluated;
    try {
      evaluated = task_.evaluate(predict(*model_, task_, *valid, config_.trainer.eval_batch_size, device_, vocab_size_));
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
    record["eval_samples_per_s"] = eval_seconds > 0 ? static_cast<double>(valid->size()) / eval_seconds : 0.0;
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

TrainSummary Trainer::fit(const TextDataset& train, const TextDataset* valid) {
  const auto& tc = config_.trainer;
  BatchSampler sampler(train.size(), tc.batch_size, tc.shuffle, tc.drop_last, config_.seed);
  if (tc.sampler == "balanced") {
    std::vector<int64_t> classes(static_cast<size_t>(train.size()));
    for (int64_t i = 0; i < train.size(); ++i) classes[i] = train.label(i);
    sampler.set_balanced(std::move(classes));
  }
  if (tc.bucket_pool > 0 || tc.max_tokens > 0) {
    std::vector<int64_t> lengths(static_cast<size_t>(train.size()));
    for (int64_t i = 0; i < train.size(); ++i) lengths[i] = train.length(i);
    sampler.set_length_batching(std::move(lengths), tc.bucket_pool, tc.max_tokens);
  }
  const int64_t first_epoch_batches = sampler.batches_per_epoch();
  if (first_epoch_batches == 0)
    throw ConfigError(fmt::format("config key 'trainer.batch_size': {} is larger than the {} training samples and "
                                  "trainer.drop_last is true, so no batch is left",
                                  tc.batch_size, train.size()));
  // With max_tokens the batch count can differ by epoch; the schedule uses the first epoch's.
  const int64_t per_epoch = (first_epoch_batches + tc.accumulate - 1) / tc.accumulate;
  const int64_t total = per_epoch * tc.epochs;
  LrSchedule schedule(config_.scheduler, config_.optimizer.lr, total);
  PadCollate collate;
  const bool mean_reduction = config_.task.reduction == "mean";
  TrainSummary summary;
  const double start = now_s();
  window_start_ = start;
  loop_start_ = start;
  const int64_t samples_at_start = state_.samples_seen;
  try {
    if (state_.validation_pending) validate_and_checkpoint(valid, true);  // stopped during it last time
    model_->train();
    for (; state_.epoch <= tc.epochs && !state_.early_stopped; ++state_.epoch) {
      if (state_.epoch_closed) {  // resumed from the checkpoint written at this epoch's end
        state_.epoch_closed = false;
        state_.batch_pos = 0;
        continue;
      }
      auto order = sampler.epoch(state_.epoch);
      const auto batches = static_cast<int64_t>(order.size());
      while (state_.batch_pos < batches) {
        // One optimiser step over `accumulate` micro-batches; with a mean loss each is weighted by
        // its share of the samples, so the step equals one batch `accumulate` times larger.
        int64_t end = std::min(batches, state_.batch_pos + tc.accumulate);
        int64_t group_samples = 0;
        for (int64_t b = state_.batch_pos; b < end; ++b) group_samples += static_cast<int64_t>(order[b].size());
        double group_loss = 0;
        bool finite = true;
        for (int64_t b = state_.batch_pos; b < end && finite; ++b) {
          const double t_batch = now_s();
          Batch cpu = collate(train, order[b]);
          check_token_ids(cpu, vocab_size_, train);  // P8, before the device
          Batch batch = cpu.to(device_);              // P1: the one place batches move
          summary.data_seconds += now_s() - t_batch;
          double share = static_cast<double>(batch.size()) / static_cast<double>(group_samples);
          double loss = 0;
          finite = micro_step(batch, mean_reduction && end - state_.batch_pos > 1 ? share : 1.0,
                              b == state_.batch_pos, state_.step + 1, loss);
          group_loss += mean_reduction ? loss * share : loss;
        }
        state_.batch_pos = end;
        if (!finite) {
          optimizer_->zero_grad();
          ++state_.nonfinite_skipped;
          log::warn("[train] step {}: non-finite loss, batch skipped ({} so far)", state_.step + 1,
                    state_.nonfinite_skipped);
          continue;
        }
        clip_gradients(model_->parameters(), tc.clip_norm, tc.clip_value);
        current_lr_ = schedule.at(state_.step, state_.plateau_scale);
        set_lr(*optimizer_, current_lr_);
        optimizer_->step();  // 5. update
        ++state_.step;
        state_.samples_seen += group_samples;
        window_samples_ += group_samples;
        state_.window_loss += group_loss;
        ++state_.window_steps;
        state_.epoch_loss += group_loss;
        ++state_.epoch_steps;
        log_progress(total, per_epoch, state_.batch_pos == batches);
        fault_point("after_step", state_.step);
        bool epoch_end = state_.batch_pos == batches;
        const double t_eval = now_s();
        if (tc.eval_every > 0 && state_.step % tc.eval_every == 0) {
          validate_and_checkpoint(valid, true);
        } else if (tc.checkpoint_every > 0 && state_.step % tc.checkpoint_every == 0 && !epoch_end) {
          validate_and_checkpoint(valid, false);
        }
        summary.eval_seconds += now_s() - t_eval;
        if (state_.early_stopped) break;
        if (int sig = stop_signal()) {
          if (last_checkpoint_step_ != state_.step) validate_and_checkpoint(valid, false);
          log::progress_done();
          log::warn("[train] stopped by signal {} at step {}; checkpoint written. Resume with: ltk-train --resume {}", sig,
                    state_.step, run_.path());
          summary.interrupted = sig;
          break;
        }
      }
      if (summary.interrupted || state_.early_stopped) break;
      state_.last_epoch_loss = state_.epoch_loss / static_cast<double>(std::max<int64_t>(state_.epoch_steps, 1));
      state_.epoch_loss = 0;
      state_.epoch_steps = 0;
      state_.epoch_closed = true;
      // The end of an epoch: validate (per-epoch mode) and write a checkpoint (unless this step has one).
      const double t_eval = now_s();
      if (tc.eval_every == 0 || last_checkpoint_step_ != state_.step) validate_and_checkpoint(valid, tc.eval_every == 0);
      summary.eval_seconds += now_s() - t_eval;
      state_.epoch_closed = false;
      state_.batch_pos = 0;
    }
    log::progress_done();
    const double t_eval = now_s();
    if (!summary.interrupted && last_checkpoint_step_ != state_.step) validate_and_checkpoint(valid, valid != nullptr);
    summary.eval_seconds += now_s() - t_eval;
  } catch (const StopRequested& stop) {
    // A stop during a validation (validate_and_checkpoint wrote the checkpoint).
    log::progress_done();
    log::warn("[train] stopped by signal {} during the validation at step {} (it runs first when resumed); "
              "checkpoint written. Resume with: ltk-train --resume {}",
              stop.signal(), state_.step, run_.path());
    summary.interrupted = stop.signal();
  }
  summary.last_train_loss = state_.last_epoch_loss;
  summary.steps = state_.step;
  summary.epochs = std::min(state_.epoch, tc.epochs);
  summary.best_epoch = state_.best_epoch;
  summary.best_step = state_.best_step;
  summary.best_metric = state_.best_value;
  summary.early_stopped = state_.early_stopped;
  summary.nonfinite_skipped = state_.nonfinite_skipped;
  summary.seconds = now_s() - start;
  summary.samples_per_s =
      summary.seconds > 0 ? static_cast<double>(state_.samples_seen - samples_at_start) / summary.seconds : 0.0;
  return summary;
}

}  // namespace ltk
