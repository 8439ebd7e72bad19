// Writing and restoring resumable checkpoints: weights, optimiser, RNG and loop state.
#include "ltk/train/checkpointing.h"

#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/serialize.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "ltk/config/config.h"
#include "ltk/core/error.h"
#include "ltk/core/fault.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/dist/dist.h"
#include "ltk/io/checkpoint.h"

namespace ltk {

namespace fs = std::filesystem;

namespace {

// The generators whose states a checkpoint keeps, by key: the CPU's, and each CUDA device's when
// this LibTorch has CUDA (handles to the global generators).
std::vector<std::pair<std::string, at::Generator>> generators() {
  std::vector<std::pair<std::string, at::Generator>> out = {
      {"rng_cpu", at::globalContext().defaultGenerator(torch::kCPU)}};
  if (torch::cuda::is_available())
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i)
      out.emplace_back("rng_cuda_" + std::to_string(i), at::globalContext().defaultGenerator(
                                                            torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(i))));
  return out;
}

c10::Dict<std::string, torch::Tensor> rng_states() {
  c10::Dict<std::string, torch::Tensor> rng;
  for (const auto& [key, gen] : generators()) rng.insert(key, gen.get_state());
  return rng;
}

void restore_rng_states(const c10::Dict<std::string, torch::Tensor>& rng, const std::string& path) {
  for (auto& [key, gen] : generators()) {
    if (!rng.contains(key)) {
      if (key == "rng_cpu") throw CheckpointError(path + " holds no CPU RNG state; is it an ltk checkpoint?");
      // A GPU's state is missing when the checkpoint was written without CUDA.
      log::warn("[resume] {} holds no RNG state {}: its dropout and sampling on that device differ from an "
                "uninterrupted run",
                path, key);
      continue;
    }
    try {
      gen.set_state(rng.at(key));
    } catch (const c10::Error&) {
      throw CheckpointError(fmt::format("{}: the state of generator {} does not fit this LibTorch's generator; was "
                                        "the checkpoint written by another LibTorch version?",
                                        path, key));
    }
  }
}

}  // namespace

TrainState read_checkpoint_meta(const std::string& path) {
  nlohmann::json meta;
  try {
    meta = read_json_file(path);
  } catch (const ConfigError& e) {  // unreadable or not JSON: a damaged checkpoint, not a config
    throw CheckpointError(std::string(e.what()) + "; the checkpoint is damaged");
  }
  if (!meta.is_object() || !meta.contains("state") || !meta["state"].is_object())
    throw CheckpointError(path + " holds no loop state (an object \"state\"); is it an ltk checkpoint's meta.json?");
  TrainState s;
  try {
    s = TrainState::from_json(meta["state"]);
  } catch (const std::exception& e) {  // CheckpointError naming the field, or a JSON error
    throw CheckpointError(path + " is damaged: its loop state does not read (" + e.what() + ")");
  }
  std::string bad;
  if (s.epoch < 1) bad = "epoch";
  if (s.batch_pos < 0) bad = "batch_pos";
  if (s.step < 0) bad = "step";
  if (s.samples_seen < 0) bad = "samples_seen";
  if (s.window_steps < 0) bad = "window_steps";
  if (s.epoch_steps < 0) bad = "epoch_steps";
  if (s.bad_evals < 0) bad = "bad_evals";
  if (s.nonfinite_skipped < 0) bad = "nonfinite_skipped";
  if (s.world < 1) bad = "world";
  if (s.overflow_skipped < 0) bad = "overflow_skipped";
  if (!(s.loss_scale >= 0) || !std::isfinite(s.loss_scale)) bad = "loss_scale";
  if (s.loss_scale_growth < 0) bad = "loss_scale_growth";
  for (const auto& [value, step] : s.kept)
    if (step < 0) bad = "kept";
  if (!bad.empty()) throw CheckpointError(path + " is damaged: state." + bad + " is out of range");
  return s;
}

c10::Dict<std::string, torch::Tensor> read_rng_states(const std::string& path) {
  c10::Dict<std::string, torch::Tensor> rng;
  for (auto& [name, tensor] : read_tensor_dict(path, "an ltk checkpoint's state.pt")) {
    if (tensor.scalar_type() != torch::kByte || tensor.dim() != 1)
      throw CheckpointError(path + ": " + name + " is not a generator state (a byte tensor); is it an ltk checkpoint?");
    rng.insert_or_assign(name, tensor.contiguous());
  }
  return rng;
}

void Trainer::restore(const std::string& dir) {
  TrainState saved = read_checkpoint_meta(dir + "/meta.json");
  const int64_t world = group_ ? group_->world() : 1;
  if (saved.world != world)
    throw ConfigError(fmt::format(
        "{} was written by {} training process(es) and this job has {}: resume it with {} (ltk-train --nproc {}, or "
        "torchrun --nproc_per_node {}), since each process's share of every batch and its random state are in the "
        "checkpoint; or start a new run from it with model.init_from={}",
        dir, saved.world, world, saved.world, saved.world, saved.world, run_.path()));
  load_weights(*model_, dir + "/weights.pt");
  load_optimizer(*optimizer_, dir + "/optim.pt");
  state_ = saved;
  // A run that trained with a loss scaler goes on with its scale (one saved before it had one, or
  // a checkpoint of a run without one, starts from the initial scale).
  if (scaler_ && state_.loss_scale > 0) scaler_->restore(state_.loss_scale, state_.loss_scale_growth);
  if (scaler_) {
    state_.loss_scale = scaler_->current();
    state_.loss_scale_growth = scaler_->growth_tracker();
  }
  c10::Dict<std::string, torch::Tensor> rng = read_rng_states(dir + "/state.pt");
  if (group_ && group_->rank() > 0) {  // this rank's own generator (rng_cpu is rank 0's)
    const std::string mine = "rng_cpu_rank" + std::to_string(group_->rank());
    if (!rng.contains(mine)) throw CheckpointError(dir + "/state.pt holds no RNG state " + mine);
    rng.insert_or_assign("rng_cpu", rng.at(mine));
  }
  restore_rng_states(rng, dir + "/state.pt");
  last_checkpoint_step_ = state_.step;
  // Records written after this checkpoint belong to the lost part of the run: drop them.
  if (fs::exists(run_.metrics_path())) {
    std::error_code ec;
    const uint64_t have = fs::file_size(run_.metrics_path(), ec);
    if (ec) throw CheckpointError("cannot read the size of " + run_.metrics_path() + ": " + ec.message());
    if (have < state_.metrics_bytes)
      throw CheckpointError(fmt::format("{}/meta.json says metrics.jsonl held {} bytes at this checkpoint, but {} has "
                                        "only {}: the file was truncated or replaced; restore it or start a new run "
                                        "from this checkpoint with model.init_from",
                                        dir, state_.metrics_bytes, run_.metrics_path(), have));
    fs::resize_file(run_.metrics_path(), state_.metrics_bytes);
  }
}

void Trainer::write_checkpoint(bool improved) {
  auto rng = rng_states();
  if (group_) {
    // Every rank's CPU generator goes into rank 0's checkpoint, so that each resumes with its own.
    auto mine = rng.at("rng_cpu");
    auto all = torch::zeros({group_->world(), mine.numel()}, torch::kDouble);
    all[group_->rank()].copy_(mine.to(torch::kDouble));
    group_->all_reduce_sum({all});
    if (group_->rank() != 0) {  // only rank 0 writes
      last_checkpoint_step_ = state_.step;
      return;
    }
    for (int r = 1; r < group_->world(); ++r)
      rng.insert("rng_cpu_rank" + std::to_string(r), all[r].to(mine.scalar_type()).contiguous());
  }
  std::string name = RunDirectory::step_dir_name(state_.step);
  std::string dir = run_.file("checkpoints/" + name), tmp = dir + ".tmp";
  state_.metrics_bytes = fs::exists(run_.metrics_path()) ? fs::file_size(run_.metrics_path()) : 0;
  remove_tree(tmp);
  fs::create_directories(tmp);
  save_weights(*model_, tmp + "/weights.pt");
  fault_point("in_checkpoint", state_.step);
  save_optimizer(*optimizer_, tmp + "/optim.pt");
  auto bytes = torch::pickle_save(rng);
  write_file_atomic(tmp + "/state.pt", std::string_view(bytes.data(), bytes.size()));
  nlohmann::json meta = {{"step", state_.step}, {"epoch", state_.epoch}, {"state", state_.to_json()}};
  write_file_atomic(tmp + "/meta.json", meta.dump(2) + "\n");
  // Each file is on disk (write_file_atomic fsyncs); the rename of the directory is made durable
  // before the pointers move, so that after a power loss last.json never names a step-N directory
  // that is missing or partial.
  replace_directory_durable(tmp, dir);  // a resumed validation rewrites the step last.json names
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

}  // namespace ltk
