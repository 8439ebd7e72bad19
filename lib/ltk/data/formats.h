// The input formats people bring: TSV and CSV (RFC 4180 quoting, an optional header, columns
// by name or index) and JSON Lines (text and label keys; a label may be a string, a number, or
// a list for multilabel). Every error names file:line; with on_bad_row "skip" a bad row is
// skipped and counted instead.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/data/reader.h"

namespace ltk {

/// The longest line (or CSV record) a reader takes: a longer one is a DataError naming file:line,
/// whatever on_bad_row says. Reading holds the whole file in memory, then its examples.
inline constexpr size_t kMaxLineBytes = size_t{256} << 20;

struct ReaderOptions {
  std::string format = "auto";  ///< auto (by extension: .csv, .jsonl/.json, else tsv) | tsv | csv | jsonl
  bool header = false;          ///< tsv/csv: the first row names the columns
  std::string label_column;     ///< tsv/csv: a column name (needs header) or a 0-based index; "" = 0
  std::string text_column;      ///< tsv/csv: as above; "" = 1 (tsv without header: the rest of the line)
  std::string label_field = "label";  ///< jsonl
  std::string text_field = "text";    ///< jsonl
  std::string text_pair_column;       ///< tsv/csv: the second text of a pair (name or index); "" = none
  std::string text_pair_field;        ///< jsonl: as above
  std::string on_bad_row = "error";   ///< error | skip
  std::string label_separator = ",";  ///< joins a JSON list label (multilabel)
  bool require_label = true;          ///< false: unlabelled input (the label may be missing)
};

struct ReadResult {
  std::vector<Example> examples;
  int64_t skipped = 0;
  std::string first_skip;  ///< the first skipped row's error
};

/// The reader options of a data config (and the task's multilabel separator).
ReaderOptions reader_options(const DataConfig& data, const TaskConfig& task);

/// Reads `path` in the chosen format.
ReadResult read_examples(const std::string& path, const ReaderOptions& options);

/// What the rows before a piece of a file established: its last line, a CSV/TSV header and the
/// columns it names.
struct ReadState {
  int64_t line = 0;  ///< the line before the next piece's first
  bool first = true;
  std::vector<std::string> header;
  int64_t li = -1, ti = -1, pi = -1;
};

/// A piece of a file cut at a record's end (a line, or a CSV record whose quotes may hold line
/// breaks), read but not parsed yet.
struct RawPiece {
  std::string bytes;
  size_t offset = 0;  ///< where its records start (past the file's byte-order mark)
  int64_t line = 0;   ///< the line before its first
  int64_t lines = 0;  ///< the line breaks in it
};

/// Reads `path` (in `format`, resolved) in pieces of about `piece_bytes`, calling `f` with each in
/// file order; the pieces are parsed by a PieceParser, on any thread.
void read_raw_pieces(const std::string& path, const std::string& format, size_t piece_bytes,
                     const std::function<void(RawPiece&)>& f);

/// Parses the pieces of one file: the first ones in file order (parse_in_order) until the state
/// they set is known (ready(): a header and its columns; at once for JSONL and text), then any
/// piece on any thread in any order (parse() only reads the parser). The examples, line numbers
/// and errors are read_examples'.
class PieceParser {
 public:
  PieceParser(std::string path, const ReaderOptions& options);
  bool ready() const;
  ReadResult parse_in_order(const RawPiece& piece);
  ReadResult parse(const RawPiece& piece) const;
  const std::string& format() const { return format_; }

 private:
  std::string path_, format_;
  ReaderOptions options_;
  ReadState state_;
};

/// Reads `path` in pieces of about `piece_bytes` (each cut at a record's end: a line, or a CSV
/// record whose quotes may hold line breaks), calling `f` with each piece's examples in file
/// order, so a file of any size is read in bounded memory. The examples, line numbers and errors
/// are read_examples'; returns the number of examples (DataError when there are none).
int64_t read_examples_in_pieces(const std::string& path, const ReaderOptions& options, size_t piece_bytes,
                                const std::function<void(ReadResult&)>& f);

/// The format "auto" resolves to for `path`.
std::string resolve_format(const std::string& path, const std::string& format);

/// One CSV record per call (RFC 4180: quoted fields, "" inside quotes, newlines inside quotes).
/// Advances `pos` and `line` past the record; throws DataError(where) on an unterminated quote.
std::vector<std::string> next_csv_record(const std::string& data, size_t& pos, int64_t& line, char sep,
                                         const std::string& path);

}  // namespace ltk
