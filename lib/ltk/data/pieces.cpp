// A file read in pieces (formats.h): raw pieces cut at a record's end, parsed by PieceParser on
// any thread once a header is known, and read_examples_in_pieces on one.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "ltk/core/error.h"
#include "ltk/data/formats.h"
#include "ltk/data/formats_detail.h"
#include "ltk/data/utf8.h"

namespace ltk {

using formats_detail::check_line_size;
using formats_detail::read_piece;

namespace {

// Where a piece of `buffer` may end: after its last record (a '\n' outside CSV quotes); 0 when
// none ends in it.
size_t piece_end(const std::string& buffer, bool csv) {
  if (!csv) {
    size_t nl = buffer.rfind('\n');
    return nl == std::string::npos ? 0 : nl + 1;
  }
  // next_csv_record's quoting: a quote opens a field only at its start, "" inside is a quote.
  bool quoted = false, field_start = true, was_quoted = false;
  size_t end = 0;
  for (size_t i = 0; i < buffer.size(); ++i) {
    const char c = buffer[i];
    if (quoted) {
      if (c == '"' && i + 1 < buffer.size() && buffer[i + 1] == '"')
        ++i;
      else if (c == '"')
        quoted = false;
    } else if (c == '"' && field_start && !was_quoted) {
      quoted = was_quoted = true;
      field_start = false;
    } else if (c == ',' || c == '\n') {
      if (c == '\n') end = i + 1;
      field_start = true;
      was_quoted = false;
    } else if (c != '\r') {
      field_start = false;
    }
  }
  return end;
}

/// Room for a piece's examples: a record a line at most, and no more than one in 32 bytes (a piece
/// of blank lines reserves no more than a piece of short texts would use).
size_t examples_room(const RawPiece& piece) {
  return std::min(static_cast<size_t>(piece.lines), piece.bytes.size() / 32) + 1;
}

}  // namespace

void read_raw_pieces(const std::string& path, const std::string& format, size_t piece_bytes,
                     const std::function<void(RawPiece&)>& f) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw DataError(path + ": cannot open: " + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(file, &std::fclose);
  std::string buffer;
  int64_t line = 0;
  bool first = true, eof = false;
  while (!eof || !buffer.empty()) {
    if (!eof) {  // fill to piece_bytes (more while no record ends in the buffer)
      const size_t have = buffer.size(), want = std::max(piece_bytes, have + (have >> 1) + 1);
      buffer.resize(want);
      const size_t got = std::fread(buffer.data() + have, 1, want - have, file);
      buffer.resize(have + got);
      if (got < want - have) {
        if (std::ferror(file)) throw DataError(path + ": read error: " + std::strerror(errno));
        eof = true;
      }
    }
    size_t end = eof ? buffer.size() : piece_end(buffer, format == "csv");
    if (end == 0) {
      check_line_size(buffer.size(), path, line + 1);
      continue;  // one record longer than the buffer so far: read on
    }
    RawPiece piece;
    piece.line = line;
    // The piece takes the buffer; what follows its last record starts the next one.
    std::string rest = buffer.substr(end);
    buffer.resize(end);
    piece.bytes.swap(buffer);
    buffer.swap(rest);
    piece.offset = first ? piece.bytes.size() - utf8::strip_bom(piece.bytes).size() : 0;
    first = false;
    piece.lines = static_cast<int64_t>(std::count(piece.bytes.begin(), piece.bytes.end(), '\n'));
    line += piece.lines;
    f(piece);
  }
}

PieceParser::PieceParser(std::string path, const ReaderOptions& options)
    : path_(std::move(path)), format_(resolve_format(path_, options.format)), options_(options) {}

bool PieceParser::ready() const {
  return (format_ != "tsv" && format_ != "csv") || (!state_.first && state_.li >= 0);
}

ReadResult PieceParser::parse_in_order(const RawPiece& piece) {
  ReadResult result;
  result.examples.reserve(examples_room(piece));
  state_.line = piece.line;
  read_piece(piece.bytes, piece.offset, format_, path_, options_, result, state_);
  return result;
}

ReadResult PieceParser::parse(const RawPiece& piece) const {
  if (!ready()) throw Error("PieceParser::parse before the first pieces were parsed in order");
  ReadResult result;
  result.examples.reserve(examples_room(piece));
  ReadState state = state_;
  state.line = piece.line;
  read_piece(piece.bytes, piece.offset, format_, path_, options_, result, state);
  return result;
}

int64_t read_examples_in_pieces(const std::string& path, const ReaderOptions& o, size_t piece_bytes,
                                const std::function<void(ReadResult&)>& f) {
  PieceParser parser(path, o);
  int64_t examples = 0;
  read_raw_pieces(path, parser.format(), piece_bytes, [&](RawPiece& piece) {
    ReadResult result = parser.parse_in_order(piece);
    examples += static_cast<int64_t>(result.examples.size());
    f(result);
  });
  if (examples == 0)
    throw DataError(path + ": no examples (the file is empty, has only blank lines, or every row was bad)");
  return examples;
}

}  // namespace ltk
