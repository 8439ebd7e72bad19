// Builds an ltk Config in code (no JSON file), trains a bag-of-words model on a label<TAB>text
// file and saves the run directory, through the library.
//   train_bow TRAIN.tsv RUN_DIR
#include <iostream>

#include "ltk/config/config.h"
#include "ltk/models/registry.h"
#include "ltk/train/trainer.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: train_bow TRAIN.tsv RUN_DIR\n";
    return 2;
  }
  try {
    ltk::Config config;
    config.name = "consumer-bow";
    config.device = "cpu";
    config.threads = 1;
    config.output_dir = argv[2];
    config.data.train = argv[1];
    config.data.valid = argv[1];  // picks the best checkpoint; a real project holds out a split
    config.model = ltk::resolve_model_config({{"type", "bow"}, {"embed_dim", 16}});
    config.optimizer.lr = 0.05;
    config.trainer.epochs = 10;
    config.trainer.batch_size = 8;
    config.trainer.progress = "lines";
    ltk::TrainSummary summary = ltk::run_training(config, /*overwrite=*/true);
    std::cout << "trained " << summary.steps << " steps into " << config.output_dir << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "train_bow: " << e.what() << "\n";
    return 1;
  }
}
