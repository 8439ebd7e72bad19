#include "ltk/data/labels.h"

#include <fmt/format.h>

#include <fstream>
#include <set>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/strings.h"
#include "ltk/data/utf8.h"
#include "ltk/data/reader.h"

namespace ltk {

LabelMap LabelMap::from_labels(const std::vector<std::string>& labels) {
  std::set<std::string> unique(labels.begin(), labels.end());
  LabelMap m;
  for (const auto& l : unique) {
    m.index_.insert(l);
    m.names_.push_back(l);
  }
  return m;
}

LabelMap LabelMap::load(const std::string& path) {
  std::string data = read_file(path);
  LabelMap m;
  int64_t line_no = 0;
  for (std::string_view line : split(data, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    // (no CR is stripped: a label read from JSON may end in one, and labels.txt keeps it)
    if (utf8::find_invalid(line) != std::string_view::npos)
      throw DataError(fmt::format("{}:{}: a label must be UTF-8 text", path, line_no));
    std::string l(line);
    if (m.index_.find(l) >= 0) throw DataError(fmt::format("{}:{}: duplicate label '{}'", path, line_no, l));
    m.index_.insert(l);
    m.names_.push_back(l);
  }
  if (m.names_.empty()) throw DataError(path + ": no labels");
  return m;
}

void LabelMap::save(const std::string& path) const {
  std::string out;
  for (const auto& n : names_) out += n + '\n';
  write_file_atomic(path, out);
}

}  // namespace ltk
