#include "ltk/train/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/checkpoint.h"

namespace ltk {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool better(const std::string& metric, double candidate, double best) {
  return Task::higher_is_better(metric) ? candidate > best : candidate < best;
}
}  // namespace

Trainer::Trainer(const Config& config, std::shared_ptr<TextModel> model, const Task& task, torch::Device device,
                 const RunDirectory& run, int64_t vocab_size)
    : config_(config), model_(std::move(model)), task_(task), device_(device), run_(run), vocab_size_(vocab_size) {
  check_same_device(*model_, device_);  // P1, and P3: the optimiser comes after the move
  optimizer_ = make_optimizer(config_.optimizer, model_->parameters());
}

double Trainer::train_step(const Batch& batch, int64_t step) {
  auto logits = model_->forward(batch);              // 1. output
  auto loss = task_.loss(logits, batch.labels);      // 2. loss
  check_scalar_loss(loss);
  double value = loss.item<double>();
  if (!std::isfinite(value)) {
    std::vector<int64_t> idx(batch.indices.data_ptr<int64_t>(), batch.indices.data_ptr<int64_t>() + batch.size());
    std::string shown;
    for (size_t i = 0; i < idx.size() && i < 16; ++i) shown += (i ? "," : "") + std::to_string(idx[i]);
    throw TrainError(fmt::format("non-finite loss {} at step {} (lr {:.3g}) on the batch of samples [{}{}]; "
                                 "lower optimizer.lr or check those samples",
                                 value, step, optimizer_->param_groups()[0].options().get_lr(), shown,
                                 idx.size() > 16 ? ",..." : ""));
  }
  optimizer_->zero_grad();                           // 3. clear gradients
  loss.backward();                                   // 4. backward
  optimizer_->step();                                // 5. update
  return value;
}

void Trainer::save_checkpoint(const std::string& which, const nlohmann::json& meta) {
  save_weights(*model_, run_.checkpoint(which));
  save_optimizer(*optimizer_, run_.file("checkpoints/" + which + ".optim.pt"));
  write_file_atomic(run_.file("checkpoints/" + which + ".json"), meta.dump(2) + "\n");
}

TrainSummary Trainer::fit(const TextDataset& train, const TextDataset* valid) {
  const auto& tc = config_.trainer;
  BatchSampler sampler(train.size(), tc.batch_size, tc.shuffle, tc.drop_last, config_.seed);
  const int64_t per_epoch = sampler.batches_per_epoch();
  if (per_epoch == 0)
    throw ConfigError(fmt::format("config key 'trainer.batch_size': {} is larger than the {} training samples "
                                  "and trainer.drop_last is true, so no batch is left",
                                  tc.batch_size, train.size()));
  const int64_t total = per_epoch * tc.epochs;
  LrSchedule schedule(config_.scheduler, config_.optimizer.lr, total);
  PadCollate collate;
  TrainSummary summary;
  std::string metric = task_.selection_metric(tc.select_metric);
  double best = Task::higher_is_better(metric) ? -INFINITY : INFINITY;
  int64_t step = 0;
  auto start = Clock::now();
  int64_t samples_seen = 0;
  double train_seconds = 0;  // the training loop alone, validation and checkpoints excluded
  model_->train();
  for (int64_t epoch = 1; epoch <= tc.epochs; ++epoch) {
    double epoch_loss = 0, window_loss = 0;
    int64_t window_steps = 0, window_samples = 0, epoch_steps = 0;
    auto window_start = Clock::now();
    auto epoch_start = Clock::now();
    int64_t in_epoch = 0;
    for (const auto& indices : sampler.epoch(epoch)) {
      Batch cpu = collate(train, indices);
      check_token_ids(cpu, vocab_size_, train);
      Batch batch = cpu.to(device_);
      double lr = schedule.at(step);
      set_lr(*optimizer_, lr);
      double loss = train_step(batch, step + 1);
      ++step;
      ++in_epoch;
      ++epoch_steps;
      epoch_loss += loss;
      window_loss += loss;
      ++window_steps;
      window_samples += batch.size();
      samples_seen += batch.size();
      if (step % tc.log_every == 0 || in_epoch == per_epoch) {
        double secs = seconds_since(window_start);
        double sps = secs > 0 ? static_cast<double>(window_samples) / secs : 0.0;
        log::info("[train] epoch {}/{} step {}/{} ({}/{} in epoch) loss {:.4f} lr {:.3g} {:.0f} samples/s", epoch,
                  tc.epochs, step, total, in_epoch, per_epoch, window_loss / static_cast<double>(window_steps), lr,
                  sps);
        run_.append_metrics({{"kind", "train"},
                             {"epoch", epoch},
                             {"step", step},
                             {"loss", window_loss / static_cast<double>(window_steps)},
                             {"lr", lr},
                             {"samples_per_s", sps}});
        window_loss = 0;
        window_steps = 0;
        window_samples = 0;
        window_start = Clock::now();
      }
    }
    train_seconds += seconds_since(epoch_start);
    summary.last_train_loss = epoch_loss / static_cast<double>(std::max<int64_t>(epoch_steps, 1));
    nlohmann::json meta = {{"epoch", epoch}, {"step", step}, {"train_loss", summary.last_train_loss}};
    if (valid) {
      auto report = task_.evaluate(predict(*model_, task_, *valid, tc.eval_batch_size, device_, vocab_size_));
      double value = report.get(metric);
      bool improved = better(metric, value, best);
      log::info("[valid] epoch {} {}{}", epoch, report.summary(), improved ? "  (best so far)" : "");
      nlohmann::json record = {{"kind", "valid"}, {"epoch", epoch}, {"step", step}};
      record.update(report.headline());
      run_.append_metrics(record);
      meta["valid"] = report.headline();
      if (improved) {
        best = value;
        summary.best_epoch = epoch;
        summary.best_metric = value;
        save_checkpoint("best", meta);
      }
    } else {
      summary.best_epoch = epoch;  // without a validation split the last epoch is the best
      save_checkpoint("best", meta);
    }
    save_checkpoint("last", meta);
  }
  summary.steps = step;
  summary.epochs = tc.epochs;
  summary.seconds = seconds_since(start);
  summary.samples_per_s = train_seconds > 0 ? static_cast<double>(samples_seen) / train_seconds : 0.0;
  return summary;
}

}  // namespace ltk
