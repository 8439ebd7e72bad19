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
