// A small BERT run trained on the toy corpus, shared by the CLI and serving tests.
#pragma once

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>

#include "test_util.h"

namespace ltk::test {

// A BERT of 2 layers of 16 trained on the toy corpus (train.tsv, valid.tsv in `dir`): the run
// directory dir/run; `vocab` is its WordPiece vocabulary.
inline std::string trained_bert(const TempDir& dir, std::string& vocab) {
  ltk::test::write_file(dir.file("train.tsv"), ltk::test::toy_corpus(20, 1));
  ltk::test::write_file(dir.file("valid.tsv"), ltk::test::toy_corpus(5, 2));
  // A WordPiece vocabulary of the toy corpus: the words, and "##" pieces for a few of them.
  vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (const char* w :
       {"goal",  "match", "team",  "score",  "coach",    "league", "bread",  "cheese", "soup", "apple",
        "salad", "pasta", "linux", "kernel", "compiler", "cpu",    "memory", "bug",    "comp", "##iler"})
    vocab += std::string(w) + "\n";
  ltk::test::write_file(dir.file("vocab.txt"), vocab);
  nlohmann::json cfg = {
      {"name", "bert"},
      {"seed", 3},
      {"device", "cpu"},
      {"threads", 1},
      {"output_dir", dir.file("run")},
      {"data",
       {{"train", dir.file("train.tsv")},
        {"valid", dir.file("valid.tsv")},
        {"max_len", 12},
        {"tokenizer", {{"dict", dir.file("vocab.txt")}}}}},
      {"model",
       {{"type", "bert"},
        {"hidden_size", 16},
        {"num_hidden_layers", 2},
        {"num_attention_heads", 2},
        {"intermediate_size", 32},
        {"max_position_embeddings", 16},
        // A model this small learns from [CLS] in a few steps only with a wider init.
        {"initializer_range", 0.2}}},
      {"optimizer", {{"type", "adamw"}, {"lr", 0.003}, {"weight_decay", 0.01}, {"no_decay_bias_norm", true}}},
      {"scheduler", {{"type", "linear"}, {"warmup_ratio", 0.1}}},
      {"trainer", {{"epochs", 12}, {"batch_size", 8}, {"log_every", 50}}}};
  ltk::test::write_file(dir.file("bert.json"), cfg.dump(2));
  auto train = run_app("ltk-train", "--config '" + dir.file("bert.json") + "'");
  INFO(train.err);
  REQUIRE(train.code == 0);
  return dir.file("run");
}

}  // namespace ltk::test
