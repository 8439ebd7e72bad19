// Readers turn a text file into examples; every error names file:line.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ltk {

struct Example {
  Example() = default;
  Example(std::string label_, std::string text_, int64_t line_ = 0, std::string text_pair_ = "")
      : label(std::move(label_)), text(std::move(text_)), line(line_), text_pair(std::move(text_pair_)) {}

  std::string label;  ///< empty for unlabelled input
  std::string text;
  int64_t line = 0;
  std::string text_pair;  ///< the second text of a sentence pair (data.text_pair_column / text_pair_field)  ///< 1-based line in the source file
};

/// Reads label<TAB>text lines (the text is everything after the first tab). UTF-8 with or
/// without BOM, LF or CRLF; blank lines are skipped. A line without a tab, an empty label or
/// text, or invalid UTF-8 throws ltk::DataError "file:line: ...".
std::vector<Example> read_tsv(const std::string& path);

/// Throws DataError "where: invalid UTF-8 at byte N" when `text` is not valid UTF-8.
void check_utf8(const std::string& text, const std::string& where);

}  // namespace ltk
