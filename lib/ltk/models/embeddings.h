// What every model shares about its word embeddings: starting from pretrained vectors
// (word2vec/GloVe text format) and freezing them.
#pragma once

#include <torch/types.h>

#include <initializer_list>
#include <string>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/data/vocab.h"

namespace ltk {

/// Reads the shared keys `pretrained` (path, "" = none) and `freeze_embeddings` (bool) into `out`.
void resolve_embedding_keys(JsonReader& r, nlohmann::json& out);

/// Statistics of a pretrained-vector load.
struct PretrainedStats {
  int64_t found = 0;    ///< vocabulary tokens that got a vector
  int64_t missing = 0;  ///< vocabulary tokens without one (they keep the model's initialisation)
};

/// Copies the vectors of `path` into the rows of `weight` [V, D] whose token is in `vocab`.
/// The file holds "token v1 ... vD" lines, optionally after a word2vec "count dim" header line.
/// Rule for the rest: tokens without a vector keep the model's random initialisation, and the
/// <pad> row stays as the model set it. A dimension other than D is an error naming file:line.
PretrainedStats load_pretrained_vectors(torch::Tensor weight, const std::string& path, const Vocabulary& vocab);

/// Applies `pretrained` and `freeze_embeddings` of a resolved model section to `weight`
/// (`vocab` may be null when a run is loaded: the checkpoint then holds the weights).
void init_embeddings(torch::Tensor weight, const nlohmann::json& options, const Vocabulary* vocab);

/// Whether the config as written (`document`) sets the key at `path` (ModelSchema::complete
/// fills only the keys it leaves out).
bool written(const nlohmann::json& document, std::initializer_list<const char*> path);

/// Sparse gradients (model `key`) need optimizer.type sgd without momentum, or adagrad, and no
/// optimizer.weight_decay; throws ConfigError naming `key` otherwise.
void check_sparse_optimizer(const std::string& key, const Config& config);

}  // namespace ltk
