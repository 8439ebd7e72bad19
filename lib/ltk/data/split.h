// Corpus preparation: fortune files and seeded, stratified, leak-free splits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ltk/data/reader.h"

namespace ltk {

/// `s` without ANSI terminal escape sequences (ESC [ ... letter), as some fortune files colour text.
std::string strip_ansi(const std::string& s);

/// The quotes of a fortune(6) file (separated by lines holding only "%"), each with its
/// whitespace folded to single spaces; empty quotes are dropped. `line` is the quote's first line.
std::vector<Example> read_fortune_file(const std::string& path, const std::string& label);

/// Parses "0.8,0.1,0.1": positive numbers summing to 1 (within 1e-6).
std::vector<double> parse_ratios(const std::string& text);

struct SplitReport {
  int64_t duplicate_texts = 0;  ///< samples whose exact text appeared before
  int64_t conflicting_duplicates = 0;  ///< of those, samples whose earlier copy has another label
};

/// Splits examples into ratios.size() parts: stratified by label (each label is split by the
/// ratios), seeded, and with every group of identical texts kept inside one part, so that no
/// text appears in two splits. Returns the indices of each part in ascending order.
std::vector<std::vector<int64_t>> stratified_split(const std::vector<Example>& examples,
                                                   const std::vector<double>& ratios, uint64_t seed,
                                                   SplitReport* report = nullptr);

/// Writes label<TAB>text lines. Labels and texts must hold no tab or newline.
void write_tsv(const std::string& path, const std::vector<Example>& examples, const std::vector<int64_t>& indices);

}  // namespace ltk
