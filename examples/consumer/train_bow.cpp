// Trains a bag-of-words model on a label<TAB>text file into a run directory, with the config
// written in code (the same keys as a JSON config file), through the public API (ltk/ltk.h).
//   train_bow TRAIN.tsv RUN_DIR
#include <iostream>

#include <ltk/ltk.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: train_bow TRAIN.tsv RUN_DIR\n";
    return 2;
  }
  try {
    ltk::Config config = ltk::parse_config({
        {"name", "consumer-bow"},
        {"device", "cpu"},
        {"threads", 1},
        {"output_dir", argv[2]},
        // data.valid picks the best checkpoint; a real project holds out a split of its own.
        {"data", {{"train", argv[1]}, {"valid", argv[1]}}},
        {"model", {{"type", "bow"}, {"embed_dim", 16}}},
        {"optimizer", {{"lr", 0.05}}},
        {"trainer", {{"epochs", 10}, {"batch_size", 8}, {"progress", "lines"}}},
    });
    ltk::TrainOptions options;
    options.overwrite = true;
    ltk::TrainResult result = ltk::train(config, options);
    std::cout << "trained " << result.steps << " steps into " << result.run_dir << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "train_bow: " << e.what() << "\n";
    return 1;
  }
}
