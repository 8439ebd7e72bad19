#include "ltk/data/reader.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ltk/core/error.h"
#include "ltk/core/strings.h"
#include "ltk/data/utf8.h"

namespace ltk {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open " + path + ": " + std::strerror(errno));
  std::string data;
  in.seekg(0, std::ios::end);
  auto size = in.tellg();
  if (size < 0) throw DataError("cannot read " + path);
  data.resize(static_cast<size_t>(size));
  in.seekg(0);
  in.read(data.data(), size);
  if (!in) throw DataError("cannot read " + path + ": " + std::strerror(errno));
  return data;
}

void check_utf8(const std::string& text, const std::string& where) {
  size_t bad = utf8::find_invalid(text);
  if (bad != std::string::npos)
    throw DataError(fmt::format("{}: invalid UTF-8 at byte {} (0x{:02X}); convert the file to UTF-8",
                                where, bad, static_cast<unsigned char>(text[bad])));
}

std::vector<Example> read_tsv(const std::string& path) {
  std::string data = read_file(path);
  std::string_view rest = utf8::strip_bom(data);
  std::vector<Example> out;
  int64_t line_no = 0;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trim(line).empty()) continue;
    std::string where = fmt::format("{}:{}", path, line_no);
    size_t bad = utf8::find_invalid(line);
    if (bad != std::string::npos)
      throw DataError(fmt::format("{}: invalid UTF-8 at byte {} of the line (0x{:02X}); convert the file to UTF-8",
                                  where, bad, static_cast<unsigned char>(line[bad])));
    size_t tab = line.find('\t');
    if (tab == std::string_view::npos)
      throw DataError(where + ": expected label<TAB>text, found no tab in \"" +
                      std::string(line.substr(0, 60)) + (line.size() > 60 ? "...\"" : "\""));
    std::string_view label = trim(line.substr(0, tab));
    std::string_view text = trim(line.substr(tab + 1));
    if (label.empty()) throw DataError(where + ": empty label before the tab");
    if (text.empty()) throw DataError(where + ": empty text after the tab (label '" + std::string(label) + "')");
    out.push_back(Example{std::string(label), std::string(text), line_no});
  }
  if (out.empty()) throw DataError(path + ": no examples (the file is empty or has only blank lines)");
  return out;
}

}  // namespace ltk
