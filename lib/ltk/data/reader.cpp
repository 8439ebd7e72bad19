#include "ltk/data/reader.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ltk/core/error.h"
#include "ltk/core/strings.h"
#include "ltk/data/formats.h"
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
  ReaderOptions o;
  o.format = "tsv";
  return read_examples(path, o).examples;
}

}  // namespace ltk
