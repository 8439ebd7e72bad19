// How a training run starts: the flags of ltk-train (and of ltk::train) that are not config keys.
// No LibTorch here: the public facade (ltk/api/train.h) includes it.
#pragma once

#include <cstdint>

namespace ltk {

struct TrainOptions {
  /// Replace a run already in config.output_dir (ltk-train --overwrite); else such a run is refused.
  bool overwrite = false;
  /// Continue the run in config.output_dir from its last checkpoint (its vocabulary, labels and
  /// tokenizer files are reused); ltk-train --resume.
  bool resume = false;
  /// Train the tf-idf linear baseline on the same data afterwards and compare (ltk-train --baseline).
  bool baseline = false;
  /// > 0: pause at the end of this epoch with a checkpoint (no test, no report); a resume goes on
  /// exactly as a run never paused. ltk-train --until-epoch, ltk-sweep's successive halving.
  int64_t until_epoch = 0;
};

}  // namespace ltk
