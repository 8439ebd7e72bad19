// The linear model's config section (model.type "linear") and the tokenizer it makes of
// data.tokenizer: what a run's n-gram terms are, without LibTorch (the LibTorch-free ltk-predict
// reads a linear run's config with it).
#pragma once

#include <memory>
#include <optional>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/data/ngrams.h"

namespace ltk {

/// The data side of a linear model's section: its n-gram ranges, feature selection and tf.
struct LinearFeatures {
  NgramRanges ranges;
  FeatureSelection selection;
};

/// The features a resolved `model` section asks for; nothing unless model.type is "linear".
std::optional<LinearFeatures> linear_features(const ModelConfig& model);

/// The tokenizer a run of `config` encodes text with: data.tokenizer, or, for a linear model,
/// its n-gram terms over data.tokenizer's words.
std::unique_ptr<Tokenizer> make_run_tokenizer(const TokenizerConfig& tokenizer, const ModelConfig& model);

/// Reads a linear model's section (every key checked) and returns it with its defaults filled.
nlohmann::json resolve_linear(JsonReader& r);

}  // namespace ltk
