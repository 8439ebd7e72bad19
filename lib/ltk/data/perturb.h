// Label-preserving text perturbations for stress tests (ltk-eval --stress): a registry of
// name -> function, each seeded, so that the same seed perturbs the same text alike. A new
// perturbation is one entry in perturbations().
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ltk/data/vocab.h"

namespace ltk {

/// What a perturbation may consult besides the text.
struct PerturbContext {
  const Vocabulary* vocab = nullptr;  ///< unknown_words: the strings it invents are not in it
};

struct Perturbation {
  std::string name;     ///< e.g. "typos"
  std::string group;    ///< e.g. "case": --stress case selects upper, lower and title
  std::string summary;  ///< what it does, for people
  /// The perturbed text; the text itself where the perturbation does not apply (a Chinese one on
  /// text without CJK characters).
  std::function<std::string(const std::string& text, std::mt19937_64& rng, const PerturbContext& context)> apply;
};

/// Every perturbation, in the order reports list them.
const std::vector<Perturbation>& perturbations();

/// The perturbations `spec` names: "all", or a comma-separated list of names and groups.
/// An unknown name is a UsageError that lists the known ones.
std::vector<const Perturbation*> select_perturbations(const std::string& spec);

/// The generator of one sample's perturbation: it depends on (seed, perturbation, sample) only.
std::mt19937_64 perturbation_rng(uint64_t seed, const std::string& name, int64_t sample);

/// Simplified to traditional Chinese characters through OpenCC (s2t.json); DataError when
/// OpenCC's configuration cannot be opened.
std::string simplified_to_traditional(const std::string& text);

}  // namespace ltk
