// ltk::train over run_training: the summary as a TrainResult.
#include "ltk/api/train.h"

#include "ltk/train/run_training.h"

namespace ltk {

TrainResult train(const Config& config, const TrainOptions& options) {
  const TrainSummary s = run_training(config, options);
  TrainResult r;
  r.run_dir = config.output_dir;
  r.steps = s.steps;
  r.epochs = s.epochs;
  r.best_epoch = s.best_epoch;
  r.best_step = s.best_step;
  r.best_metric = s.best_metric;
  r.seconds = s.seconds;
  r.samples_per_s = s.samples_per_s;
  r.early_stopped = s.early_stopped;
  r.paused = s.paused;
  r.interrupted = s.interrupted;
  if (s.test) r.test = s.test->headline();
  r.baseline = s.baseline;
  return r;
}

}  // namespace ltk
