#include "ltk/data/split.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <unordered_map>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/strings.h"

namespace ltk {

std::string strip_ansi(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {  // CSI ... final byte in @..~
      size_t j = i + 2;
      while (j < s.size() && !(s[j] >= '@' && s[j] <= '~')) ++j;
      i = j;
      continue;
    }
    out += s[i];
  }
  return out;
}

std::vector<Example> read_fortune_file(const std::string& path, const std::string& label) {
  std::string data = read_file(path);
  check_utf8(data, path);
  std::vector<Example> out;
  std::string current;
  int64_t line_no = 0, first = 1;
  auto emit = [&] {
    std::string text = fold_whitespace(strip_ansi(current));
    if (!text.empty()) out.push_back(Example{label, std::move(text), first});
    current.clear();
  };
  for (std::string_view line : split(data, '\n')) {
    ++line_no;
    if (trim(line) == "%") {
      emit();
      first = line_no + 1;
    } else {
      current.append(line.data(), line.size());
      current += '\n';
    }
  }
  emit();
  return out;
}

std::vector<double> parse_ratios(const std::string& text) {
  std::vector<double> ratios;
  double sum = 0;
  for (auto part : split(text, ',')) {
    std::string s(trim(part));
    double r = 0;
    try {
      size_t used = 0;
      r = std::stod(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
    } catch (const std::exception&) {
      throw UsageError("ratios '" + text + "': '" + s + "' is not a number; use e.g. 0.8,0.1,0.1");
    }
    if (!(r > 0)) throw UsageError("ratios '" + text + "': every ratio must be > 0");
    ratios.push_back(r);
    sum += r;
  }
  if (ratios.size() < 2) throw UsageError("ratios '" + text + "': give at least two parts, e.g. 0.9,0.1");
  if (std::fabs(sum - 1.0) > 1e-6) throw UsageError(fmt::format("ratios '{}' sum to {}, not 1", text, sum));
  return ratios;
}

std::vector<std::vector<int64_t>> stratified_split(const std::vector<Example>& examples,
                                                   const std::vector<double>& ratios, uint64_t seed,
                                                   SplitReport* report) {
  // Group identical texts; a group follows the label of its first sample.
  std::unordered_map<std::string_view, size_t> group_of;
  std::vector<std::vector<int64_t>> groups;
  std::map<std::string, std::vector<size_t>> groups_by_label;  // ordered: seeded results are stable
  SplitReport rep;
  for (size_t i = 0; i < examples.size(); ++i) {
    auto [it, fresh] = group_of.emplace(examples[i].text, groups.size());
    if (fresh) {
      groups.push_back({static_cast<int64_t>(i)});
      groups_by_label[examples[i].label].push_back(it->second);
    } else {
      ++rep.duplicate_texts;
      if (examples[groups[it->second][0]].label != examples[i].label) ++rep.conflicting_duplicates;
      groups[it->second].push_back(static_cast<int64_t>(i));
    }
  }
  std::vector<std::vector<int64_t>> parts(ratios.size());
  std::mt19937_64 rng(seed);
  for (auto& [label, ids] : groups_by_label) {
    for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[rng() % i]);
    int64_t total = 0;
    for (size_t g : ids) total += static_cast<int64_t>(groups[g].size());
    // Fill each part up to its share of this label, in order.
    std::vector<double> bounds;
    double acc = 0;
    for (double r : ratios) bounds.push_back((acc += r) * static_cast<double>(total));
    int64_t placed = 0;
    size_t part = 0;
    for (size_t g : ids) {
      while (part + 1 < ratios.size() && static_cast<double>(placed) + 0.5 >= bounds[part]) ++part;
      for (int64_t i : groups[g]) parts[part].push_back(i);
      placed += static_cast<int64_t>(groups[g].size());
    }
  }
  for (auto& p : parts) std::sort(p.begin(), p.end());
  if (report) *report = rep;
  return parts;
}

void write_tsv(const std::string& path, const std::vector<Example>& examples, const std::vector<int64_t>& indices) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error("cannot write " + path);
  for (int64_t i : indices) {
    const auto& e = examples[static_cast<size_t>(i)];
    if (e.label.find_first_of("\t\n") != std::string::npos || e.text.find_first_of("\t\n") != std::string::npos)
      throw DataError(fmt::format("sample {} (line {}) has a tab or newline in its label or text", i, e.line));
    out << e.label << '\t' << e.text << '\n';
  }
  if (!out) throw Error("cannot write " + path);
}

}  // namespace ltk
