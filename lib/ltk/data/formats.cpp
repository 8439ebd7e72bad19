#include "ltk/data/formats.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/strings.h"
#include "ltk/data/formats_detail.h"
#include "ltk/data/utf8.h"

namespace ltk {

using formats_detail::check_line_size;
using formats_detail::read_piece;

namespace {

struct Column {
  int64_t index = -1;
  std::string name;
};

Column parse_column(const std::string& spec, int64_t fallback) {
  Column c;
  if (spec.empty()) {
    c.index = fallback;
  } else if (std::all_of(spec.begin(), spec.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    if (spec.size() > 9)
      throw ConfigError("config key 'data.label_column' or 'data.text_column': column index " + spec +
                        " is too large; give a 0-based column index or a header name");
    c.index = std::stoll(spec);
  } else {
    c.name = spec;
  }
  return c;
}

int64_t column_index(const Column& c, const std::vector<std::string>& header, const std::string& path,
                     const char* key) {
  if (c.index >= 0) return c.index;
  if (header.empty())
    throw ConfigError(fmt::format("config key 'data.{}': column '{}' is named, so the file needs a header row "
                                  "(set data.header to true) or give a 0-based index",
                                  key, c.name));
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == c.name) return static_cast<int64_t>(i);
  throw DataError(fmt::format("{}:1: no column '{}' in the header ({}){}", path, c.name, join(header, ", "),
                              did_you_mean(c.name, header)));
}

// The line of `data` at `pos` (without its '\n'), advancing `pos` past it; false at the end.
bool next_line(const std::string& data, size_t& pos, std::string_view& line) {
  if (pos >= data.size()) return false;
  size_t nl = data.find('\n', pos);
  line = std::string_view(data.data() + pos, (nl == std::string::npos ? data.size() : nl) - pos);
  pos = nl == std::string::npos ? data.size() : nl + 1;
  return true;
}

// Applies the bad-row policy: rethrows, or counts the row as skipped.
class BadRows {
 public:
  BadRows(ReadResult& r, const std::string& policy) : r_(r), skip_(policy == "skip") {}
  void handle(const std::string& message) {
    if (!skip_) throw DataError(message + " (set data.on_bad_row to \"skip\" to skip such rows)");
    if (r_.skipped++ == 0) r_.first_skip = message;
  }

 private:
  ReadResult& r_;
  bool skip_;
};

std::string json_label(const nlohmann::json& v, const ReaderOptions& o) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return v.dump();
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  if (v.is_array()) {
    std::vector<std::string> parts;
    for (const auto& e : v) {
      if (!e.is_string() && !e.is_number()) throw std::invalid_argument("a label list holds strings or numbers");
      parts.push_back(e.is_string() ? e.get<std::string>() : e.dump());
    }
    return join(parts, o.label_separator);
  }
  throw std::invalid_argument("a label must be a string, a number or a list");
}

}  // namespace

ReaderOptions reader_options(const DataConfig& d, const TaskConfig& task) {
  ReaderOptions o;
  o.format = d.format;
  o.header = d.header;
  o.label_column = d.label_column;
  o.text_column = d.text_column;
  o.label_field = d.label_field;
  o.text_field = d.text_field;
  o.text_pair_column = d.text_pair_column;
  o.text_pair_field = d.text_pair_field;
  o.on_bad_row = d.on_bad_row;
  o.label_separator = task.label_separator;
  o.require_label = task.type != "mlm";  // pretraining reads text; labels, when there, are ignored
  return o;
}

std::string resolve_format(const std::string& path, const std::string& format) {
  if (format != "auto") return format;
  std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".csv") return "csv";
  if (ext == ".jsonl" || ext == ".json" || ext == ".ndjson") return "jsonl";
  return "tsv";
}

std::vector<std::string> next_csv_record(const std::string& data, size_t& pos, int64_t& line, char sep,
                                         const std::string& path) {
  std::vector<std::string> fields(1);
  bool quoted = false, was_quoted = false;
  int64_t start_line = line;
  while (pos < data.size()) {
    char c = data[pos++];
    if (quoted) {
      if (c == '"') {
        if (pos < data.size() && data[pos] == '"') {
          fields.back() += '"';
          ++pos;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        fields.back() += c;
      }
    } else if (c == '"' && fields.back().empty() && !was_quoted) {
      quoted = was_quoted = true;
    } else if (c == sep) {
      fields.emplace_back();
      was_quoted = false;
    } else if (c == '\n') {
      ++line;
      break;
    } else if (c == '\r' && pos < data.size() && data[pos] == '\n') {
      // CRLF: the \n ends the record next
    } else {
      fields.back() += c;
    }
  }
  if (quoted) throw DataError(fmt::format("{}:{}: a quoted field is never closed", path, start_line));
  return fields;
}

namespace {

// The example of one JSON Lines object; false (told to `bad`) when it has none.
bool jsonl_example(const nlohmann::json& j, const std::string& where, int64_t line_no, const ReaderOptions& o,
                   BadRows& bad, Example& ex) {
  if (!j.is_object()) {
    bad.handle(where + ": expected a JSON object per line");
    return false;
  }
  if (!j.contains(o.text_field) || !j.at(o.text_field).is_string()) {
    bad.handle(fmt::format("{}: no string field '{}' (data.text_field)", where, o.text_field));
    return false;
  }
  ex = Example{"", std::string(trim(j.at(o.text_field).get<std::string>())), line_no};
  if (ex.text.empty()) {
    bad.handle(where + ": empty text");
    return false;
  }
  if (!o.text_pair_field.empty()) {
    if (!j.contains(o.text_pair_field) || !j.at(o.text_pair_field).is_string() ||
        trim(j.at(o.text_pair_field).get<std::string>()).empty()) {
      bad.handle(fmt::format("{}: no non-empty string field '{}' (data.text_pair_field)", where, o.text_pair_field));
      return false;
    }
    ex.text_pair = std::string(trim(j.at(o.text_pair_field).get<std::string>()));
  }
  if (j.contains(o.label_field) && !j.at(o.label_field).is_null()) {
    try {
      ex.label = std::string(trim(json_label(j.at(o.label_field), o)));
    } catch (const std::invalid_argument& e) {
      bad.handle(fmt::format("{}: field '{}': {}", where, o.label_field, e.what()));
      return false;
    }
  }
  if (o.require_label && ex.label.empty()) {
    bad.handle(fmt::format("{}: no label (field '{}', data.label_field)", where, o.label_field));
    return false;
  }
  return true;
}

// The next record of a TSV or CSV file, as fields that view the file (or, for CSV, `csv_fields`,
// the unquoted record); `pos` and `line` move past it.
void next_record(const std::string& data, size_t& pos, int64_t& line, bool csv, bool simple_tsv,
                 const std::string& path, std::vector<std::string>& csv_fields, std::vector<std::string_view>& fields) {
  const int64_t row_line = line;
  const size_t record_start = pos;
  // Fields are views into the file (or, for CSV, into the unquoted record).
  fields.clear();
  if (csv) {
    csv_fields = next_csv_record(data, pos, line, ',', path);
    check_line_size(pos - record_start, path, row_line);
    fields.assign(csv_fields.begin(), csv_fields.end());
  } else {
    size_t nl = data.find('\n', pos);
    std::string_view l(data.data() + pos, (nl == std::string::npos ? data.size() : nl) - pos);
    pos = nl == std::string::npos ? data.size() : nl + 1;
    ++line;
    check_line_size(l.size(), path, row_line);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (simple_tsv) {  // label<TAB>text: the text is everything after the first tab
      size_t tab = l.find('\t');
      fields.push_back(l.substr(0, tab == std::string_view::npos ? l.size() : tab));
      if (tab != std::string_view::npos) fields.push_back(l.substr(tab + 1));
    } else {
      fields = split(l, '\t');
    }
  }
}

// Calls f(line, line_no) for each line of `data` from `offset` (`first_line` lines come before
// it), each checked against the line limit.
template <typename F>
void for_each_line(const std::string& data, size_t offset, const std::string& path, int64_t first_line, F&& f) {
  int64_t line_no = first_line;
  size_t pos = offset;
  std::string_view line;
  while (next_line(data, pos, line)) {
    ++line_no;
    check_line_size(line.size(), path, line_no);
    f(line, line_no);
  }
}

void read_text_lines(const std::string& data, size_t offset, const std::string& path, const ReaderOptions& o,
                     BadRows& bad, ReadResult& result, ReadState& state) {
  if (o.require_label)
    throw ConfigError(
        "config key 'data.format': \"text\" files have no labels; they are input for task.type "
        "\"mlm\" (or ltk-predict)");
  for_each_line(data, offset, path, state.line, [&](std::string_view line, int64_t line_no) {
    line = trim(line);
    if (line.empty()) return;
    if (utf8::find_invalid(line) != std::string::npos) {
      bad.handle(fmt::format("{}:{}: invalid UTF-8", path, line_no));
      return;
    }
    result.examples.push_back(Example{"", std::string(line), line_no, ""});
  });
}

void read_jsonl(const std::string& data, size_t offset, const std::string& path, const ReaderOptions& o, BadRows& bad,
                ReadResult& result, ReadState& state) {
  for_each_line(data, offset, path, state.line, [&](std::string_view line, int64_t line_no) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trim(line).empty()) return;
    std::string where = fmt::format("{}:{}", path, line_no);
    size_t invalid = utf8::find_invalid(line);
    if (invalid != std::string::npos) {
      bad.handle(fmt::format("{}: invalid UTF-8 at byte {} of the line", where, invalid));
      return;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      bad.handle(where + ": not valid JSON");
      return;
    } catch (const nlohmann::json::exception& e) {  // a number beyond double's range (1e999)
      bad.handle(where + ": a number out of range");
      return;
    }
    Example ex;
    if (!jsonl_example(j, where, line_no, o, bad, ex)) return;
    result.examples.push_back(std::move(ex));
  });
}

void read_delimited(const std::string& data, size_t offset, const std::string& format, const std::string& path,
                    const ReaderOptions& o, BadRows& bad, ReadResult& result, ReadState& state) {
  const bool pairs = !o.text_pair_column.empty();
  const bool simple_tsv = format == "tsv" && !o.header && o.label_column.empty() && o.text_column.empty() && !pairs;
  Column label_col = parse_column(o.label_column, 0), text_col = parse_column(o.text_column, 1);
  Column pair_col = parse_column(o.text_pair_column, 2);
  int64_t& pi = state.pi;
  std::vector<std::string>& header = state.header;
  std::vector<std::string> csv_fields;
  std::vector<std::string_view> fields;
  size_t pos = offset;
  int64_t line = state.line + 1;
  int64_t &li = state.li, &ti = state.ti;
  bool& first = state.first;
  while (pos < data.size()) {
    int64_t row_line = line;
    const size_t record_start = pos;
    next_record(data, pos, line, format == "csv", simple_tsv, path, csv_fields, fields);
    auto where = [&] { return fmt::format("{}:{}", path, row_line); };  // built only for an error
    bool blank = fields.size() == 1 && trim(fields[0]).empty();
    if (blank) continue;
    if (first && o.header) {
      header.assign(fields.begin(), fields.end());
      first = false;
      continue;
    }
    first = false;
    if (li < 0) {
      li = column_index(label_col, header, path, "label_column");
      ti = column_index(text_col, header, path, "text_column");
      if (pairs) pi = column_index(pair_col, header, path, "text_pair_column");
    }
    size_t invalid = utf8::find_invalid(std::string_view(data.data() + record_start, pos - record_start));
    if (invalid != std::string::npos) {
      bad.handle(fmt::format("{}: invalid UTF-8 at byte {} of the line (0x{:02X}); convert the file to UTF-8", where(),
                             invalid, static_cast<unsigned char>(data[record_start + invalid])));
      continue;
    }
    int64_t need = std::max({o.require_label ? li : int64_t{0}, ti, pi}) + 1;
    if (static_cast<int64_t>(fields.size()) < need) {
      if (simple_tsv)
        bad.handle(where() + ": expected label<TAB>text, found no tab in \"" + std::string(fields[0].substr(0, 60)) +
                   (fields[0].size() > 60 ? "...\"" : "\""));
      else
        bad.handle(fmt::format("{}: {} column(s), but the {} column is number {} (0-based)", where(), fields.size(),
                               pi >= std::max(li, ti) ? "text pair"
                               : ti >= li             ? "text"
                                                      : "label",
                               need - 1));
      continue;
    }
    Example ex{li < static_cast<int64_t>(fields.size()) ? std::string(trim(fields[li])) : "",
               std::string(trim(fields[ti])), row_line};
    if (o.require_label && ex.label.empty()) {
      bad.handle(where() + ": empty label");
      continue;
    }
    if (ex.text.empty()) {
      bad.handle(where() + ": empty text" + (ex.label.empty() ? "" : " (label '" + ex.label + "')"));
      continue;
    }
    if (pairs) {
      ex.text_pair = std::string(trim(fields[static_cast<size_t>(pi)]));
      if (ex.text_pair.empty()) {
        bad.handle(where() + ": empty second text (data.text_pair_column)");
        continue;
      }
    }
    result.examples.push_back(std::move(ex));
  }
}

}  // namespace

namespace formats_detail {

// A line or CSV record over kMaxLineBytes is refused whatever on_bad_row says: such a "line" is a
// file of another kind, or a corpus without line breaks, and tokenizing it would take memory in
// proportion (a 2 GB line: tens of gigabytes of tokens).
void check_line_size(size_t bytes, const std::string& path, int64_t line_no) {
  if (bytes > kMaxLineBytes)
    throw DataError(
        fmt::format("{}:{}: a line of {} MiB; ltk reads lines of at most {} MiB (one text per line: is "
                    "this a corpus without line breaks, or a file of another kind?)",
                    path, line_no, bytes >> 20, kMaxLineBytes >> 20));
}

// The examples of `data` (a whole file, or a piece of one cut at a record's end) from `offset`.
void read_piece(const std::string& data, size_t offset, const std::string& format, const std::string& path,
                const ReaderOptions& o, ReadResult& result, ReadState& state) {
  BadRows bad(result, o.on_bad_row);
  if (format == "text") {  // one text per line, no label (pretraining input)
    read_text_lines(data, offset, path, o, bad, result, state);
  } else if (format == "jsonl") {
    read_jsonl(data, offset, path, o, bad, result, state);
  } else if (format == "tsv" || format == "csv") {
    read_delimited(data, offset, format, path, o, bad, result, state);
  } else {
    throw ConfigError("config key 'data.format': unknown format '" + format + "'; use auto, tsv, csv, jsonl or text");
  }
}

}  // namespace formats_detail

ReadResult read_examples(const std::string& path, const ReaderOptions& o) {
  std::string format = resolve_format(path, o.format);
  std::string data = read_file(path);
  std::string_view body = utf8::strip_bom(data);
  size_t offset = data.size() - body.size();
  ReadResult result;
  ReadState state;
  read_piece(data, offset, format, path, o, result, state);
  if (result.examples.empty())
    throw DataError(path + ": no examples (the file is empty, has only blank lines" +
                    std::string(result.skipped ? ", or every row was bad" : "") + ")");
  return result;
}

}  // namespace ltk
