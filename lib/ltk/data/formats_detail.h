// What the readers of formats.cpp share with pieces.cpp (a file read in pieces): internal to
// lib/ltk/data.
#pragma once

#include <cstdint>
#include <string>

#include "ltk/data/formats.h"

namespace ltk::formats_detail {

/// A DataError naming path:line_no when a line or CSV record is longer than kMaxLineBytes.
void check_line_size(size_t bytes, const std::string& path, int64_t line_no);

/// The examples of `data` (a whole file, or a piece of one cut at a record's end) from `offset`,
/// in `format`, appended to `result`; `state` carries a header and the line before `data`.
void read_piece(const std::string& data, size_t offset, const std::string& format, const std::string& path,
                const ReaderOptions& o, ReadResult& result, ReadState& state);

}  // namespace ltk::formats_detail
