// run_training: the phases of a training run in order (phases.h), in one process or as one rank
// of a data-parallel job, and what a stop request at each phase means.
#include <fmt/format.h>
#include <torch/cuda.h>

#include <filesystem>

#include <unistd.h>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/parallel.h"
#include "ltk/core/runtime.h"
#include "ltk/core/stop.h"
#include "ltk/data/shards.h"
#include "ltk/dist/dist.h"
#include "ltk/train/corpus_shards.h"
#include "ltk/train/phases.h"
#include "ltk/train/precision.h"
#include "ltk/train/run_training.h"

namespace ltk {

namespace {

/// What rank > 0 of a distributed job writes (its vocabulary, tokenizer files, log) goes to a
/// directory of its own, removed at the end: the run directory is rank 0's.
struct ScratchRun {
  std::string path;
  ~ScratchRun() {
    if (!path.empty()) remove_tree(path);
  }
};

// One process of a job of `local_world` on this host: 0 threads means its share of the cores.
int64_t threads_of(const Config& config, const dist::Group* group) {
  if (config.threads != 0 || !group) return config.threads;
  int64_t local = group->world();
  if (const char* v = std::getenv("LOCAL_WORLD_SIZE")) local = std::max<int64_t>(1, std::atoll(v));
  return std::max<int64_t>(1, static_cast<int64_t>(usable_cores()) / local);
}

// Everything that can fail on the config is checked before the run directory is touched.
void check_data_files(const Config& config) {
  for (auto [key, path] : {std::pair<const char*, const std::string*>{"data.train", &config.data.train},
                           {"data.valid", &config.data.valid},
                           {"data.test", &config.data.test}})
    if (!path->empty() && std::filesystem::is_directory(*path) && !is_shard(*path))
      throw DataError("config key '" + std::string(key) + "': " + *path +
                      " is a directory, neither a data file (name the .tsv, .csv, .jsonl or .txt file in it) nor a "
                      "shard (ltk-data encode writes one, with its manifest.json)");
    else if (!path->empty() && !std::filesystem::exists(*path))
      throw DataError("config key '" + std::string(key) + "': " + *path +
                      " does not exist (run ./scripts/data.sh to make the corpora)");
  for (auto [key, path] : {std::pair<const char*, const std::string*>{"data.train", &config.data.train},
                           {"data.valid", &config.data.valid},
                           {"data.test", &config.data.test}})
    if (is_shard(*path)) check_shard_matches(*path, read_shard_manifest(*path), config, key);
  // A raw training file is read whole: the file, its examples and their ids take about four times
  // its size (measured: a 400 MB TSV of short texts peaked at 1.64 GB). Past what is available it
  // must be encoded once into shards, which are read mapped.
  const std::string& train = config.data.train;
  std::error_code ec;
  if (!config.trainer.memory_check || is_shard(train) || !std::filesystem::is_regular_file(train, ec)) return;
  const auto bytes = static_cast<double>(std::filesystem::file_size(train, ec));
  const int64_t available = available_memory_bytes();
  if (ec || available < 0 || 4 * bytes <= static_cast<double>(available)) return;
  throw ConfigError(fmt::format(
      "config key 'data.train': {} is {:.1f} GiB; reading it whole takes about 4x that and {:.1f} GiB is available. "
      "Encode it once into memory-mapped shards, read in constant memory: ltk-data encode --config CONFIG --out DIR, "
      "then set data.train to DIR/train (and data.valid, data.test to DIR/valid, DIR/test): the bow, textcnn, rnn, "
      "transformer and bert models read them. trainer.memory_check false skips this check",
      train, bytes / (1 << 30), static_cast<double>(available) / (1 << 30)));
}

torch::Device device_of(const Config& config, const dist::Group* group) {
  torch::Device device = resolve_device(config.device);
  if (group && device.is_cuda() && !device.has_index() && torch::cuda::device_count() > 0)  // one GPU a local rank
    device =
        torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(group->local_rank() % torch::cuda::device_count()));
  return device;
}

void log_start(const Config& config, const torch::Device& device, int threads) {
  log::info("[config] {} -> {} (model {}, task {}, optimizer {} lr {}, {} epochs, batch {})", config.name,
            config.output_dir, config.model.type, config.task.type, config.optimizer.type, config.optimizer.lr,
            config.trainer.epochs, config.trainer.batch_size);
  log::info("[runtime] device {}, {} thread(s), BLAS: {}", device.str(), threads, describe_blas());
  if (blas_is_reference())
    log::warn(
        "[runtime] the reference BLAS is slow; install an optimised one (scripts/setup.sh installs "
        "libopenblas0-openmp)");
}

/// The third phase: the Trainer over the prepared data, resumed from the run's last checkpoint
/// when asked.
TrainSummary fit(const RunContext& ctx, const PreparedData& data, const std::shared_ptr<TextModel>& model) {
  Trainer trainer(ctx.config, model, *data.task, ctx.device, ctx.run, data.vocab.size());
  if (ctx.group) trainer.set_group(ctx.group);
  trainer.set_until_epoch(ctx.options.until_epoch);
  if (ctx.options.resume) {
    std::string last = ctx.src.checkpoint_dir("last");
    if (last.empty()) {
      log::warn("[resume] {} has no checkpoint yet: training starts from the beginning", ctx.run.path());
      if (std::filesystem::exists(ctx.run.metrics_path())) std::filesystem::resize_file(ctx.run.metrics_path(), 0);
    } else {
      trainer.restore(last);
      log::info("[resume] continuing from {} (epoch {}, step {})", last, trainer.state().epoch, trainer.state().step);
    }
  }
  TrainSummary summary = trainer.fit(data.train, data.valid ? &*data.valid : nullptr);
  if (ctx.group && summary.steps > 0)
    log::info(
        "[dist] all-reduce: {:.2f}s of the {:.1f}s loop ({:.1f}%), {:.3g} MB of gradients a step, {:.0f} MB/s "
        "(waiting for slower ranks included)",
        summary.sync_seconds, summary.seconds, 100.0 * summary.sync_seconds / std::max(summary.seconds, 1e-9),
        summary.sync_bytes / 1e6,
        summary.sync_seconds > 0 ? summary.sync_bytes * static_cast<double>(summary.steps) / 1e6 / summary.sync_seconds
                                 : 0.0);
  return summary;
}

void log_fitted(const TrainSummary& summary) {
  log::info("[train] done: {} steps in {:.1f}s ({:.0f} samples/s), best: epoch {} step {}{}", summary.steps,
            summary.seconds, summary.samples_per_s, summary.best_epoch, summary.best_step,
            summary.early_stopped ? " (stopped early)" : "");
  if (summary.loss_scale > 0)
    log::info("[train] loss scale {:g} at the end; {} step(s) skipped because the fp16 gradients overflowed",
              summary.loss_scale, summary.overflow_skipped);
  // Where the time went: the batches (the loader) should be a small share of the steps.
  const double step_seconds = summary.seconds - summary.data_seconds - summary.eval_seconds;
  log::info(
      "[train] time: steps {:.1f}s, making batches {:.2f}s ({:.1f}% of the loop), validation and "
      "checkpoints {:.1f}s",
      step_seconds, summary.data_seconds, 100.0 * summary.data_seconds / std::max(summary.seconds, 1e-9),
      summary.eval_seconds);
}

}  // namespace

TrainSummary run_phases(const Config& config, const TrainOptions& options, std::shared_ptr<dist::Group> group,
                        Phase& phase) {
  const int rank = group ? group->rank() : 0;
  log::set_level(log::parse_level(config.log_level));
  if (rank > 0 && config.log_level != "debug") log::set_level(log::Level::warn);  // rank 0 tells the story
  const torch::Device device = device_of(config, group.get());
  const int threads = apply_threads(threads_of(config, group.get()));
  seed_everything(config.seed);
  check_data_files(config);
  // Precision the hardware cannot give is refused before any data is read ("auto" is decided by
  // the Trainer, which says so).
  if (config.trainer.precision == "bf16" || config.trainer.precision == "fp16") resolve_precision(config, device);

  ScratchRun scratch;
  if (rank > 0)
    scratch.path = (std::filesystem::temp_directory_path() / fmt::format("ltk-rank{}-{}", rank, getpid())).string();
  // On a resume every rank reads the run's files (a filesystem all hosts see); rank > 0 writes
  // only into its scratch directory.
  RunDirectory run = rank > 0         ? RunDirectory::create(scratch.path, true)
                     : options.resume ? RunDirectory::open(config.output_dir)
                                      : RunDirectory::create(config.output_dir, options.overwrite);
  std::optional<RunDirectory> source_dir;
  if (rank > 0 && options.resume) source_dir = RunDirectory::open(config.output_dir);
  const RunContext ctx{config, options, group, rank, device, threads, run, source_dir ? *source_dir : run};
  run.lock();  // one ltk-train per run directory
  if (rank == 0) log::set_file(run.log_path());
  struct CloseLog {
    ~CloseLog() { log::close_file(); }
  } close_log;
  write_file_atomic(run.config_path(), to_json(config).dump(2) + "\n");
  log_start(config, device, threads);

  PreparedData data = prepare_data(ctx);
  phase = Phase::training;
  const std::shared_ptr<TextModel> model = build_run_model(ctx, data);
  TrainSummary summary = config.optimizer.type == "dual_cd" ? solve_linear(ctx, data, model) : fit(ctx, data, model);
  if (group) {
    group->finish();
    if (rank > 0) return summary;  // the test, the report and the exports are rank 0's
  }
  if (summary.interrupted || summary.paused) return summary;
  log_fitted(summary);

  phase = Phase::test;
  calibrate(ctx, data, *model, summary);
  RunReport report = test_and_report(ctx, data, *model, summary);
  if (options.baseline) compare_baseline(ctx, summary, report);
  log::info("[report] {}", report.path);
  return summary;
}

TrainSummary run_training(const Config& config, const TrainOptions& options) {
  if (options.baseline) baseline_config(config);  // refused before anything is trained
  if (config.optimizer.type == "dual_cd") {
    // The exact solver has no epochs to stop between: a run is solved whole, in seconds.
    // A resumed one (ltk-sweep resumes every trial that has a checkpoint) is solved again: the same.
    if (options.resume) {
      log::info("[resume] optimizer.type \"dual_cd\" keeps no state between passes: {} is solved again from the start",
                config.output_dir);
      TrainOptions again = options;
      again.resume = false;
      again.overwrite = true;
      return run_training(config, again);
    }
    if (options.until_epoch > 0)
      throw ConfigError(
          "--until-epoch: optimizer.type \"dual_cd\" (the linear model's default where it applies) "
          "has no epochs to pause between; set optimizer.type \"adagrad\" to train in epochs");
    if (dist::launch_from_env().world > 1)
      throw ConfigError(
          "optimizer.type \"dual_cd\" (the linear model's default where it applies) solves in one process (its "
          "classes on every core of it): run it without torchrun or --nproc, or set optimizer.type \"adagrad\"");
  }
  const dist::Launch launch = dist::launch_from_env();
  std::shared_ptr<dist::Group> group;
  if (launch.world > 1) {
    if (options.baseline) throw ConfigError("--baseline trains in one process: run it without torchrun or --nproc");
    log::set_prefix(fmt::format("[rank {}] ", launch.rank));
    log::info("[dist] rank {} of {} (local rank {}), rendezvous at {}:{}", launch.rank, launch.world, launch.local_rank,
              launch.master_addr, launch.master_port);
    group = std::make_shared<dist::Group>(launch, config.trainer.dist_timeout_s);
  }
  Phase phase = Phase::data;
  try {
    return run_phases(config, options, group, phase);
  } catch (const StopRequested& stop) {
    if (group) group->fail(stop.what());
    log::progress_done();
    if (phase == Phase::test)
      log::warn(
          "[test] stopped by signal {} during the final evaluation; training is complete. Evaluate the best "
          "checkpoint with: ltk-eval --run {} --data {}",
          stop.signal(), config.output_dir, config.data.test.empty() ? config.data.valid : config.data.test);
    else
      log::warn("[data] stopped by signal {} while the data loaded, before any step; {}", stop.signal(),
                options.resume ? "the run is as it was: resume it again with ltk-train --resume " + config.output_dir
                               : std::string("nothing was trained"));
    TrainSummary summary;
    summary.interrupted = stop.signal();
    return summary;
  } catch (const dist::DistError&) {
    if (group) group->fail("it lost the group");
    throw;
  } catch (const std::exception& e) {
    // Every rank learns why the job stops: the others name this rank and its error.
    if (group) group->fail(e.what());
    throw;
  }
}

}  // namespace ltk
