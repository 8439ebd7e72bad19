// The shared body of the reader targets (reader_tsv, reader_csv, reader_jsonl): the reader of
// `format` (ltk/data/formats.h) on arbitrary bytes, under every option combination the first byte
// selects. Checks: every example's text is non-empty valid UTF-8, with a line number, and a label
// when labels are required; rows are skipped only under on_bad_row "skip".
#pragma once

#include <string>
#include <string_view>

#include "../fuzz.h"
#include "ltk/data/formats.h"

inline void fuzz_reader(std::string_view input, const std::string& format) {
  uint8_t sel = ltk::fuzz::take_byte(input);
  ltk::ReaderOptions o;
  o.format = format;
  o.header = sel & 1;
  o.on_bad_row = (sel & 2) ? "skip" : "error";
  o.require_label = !(sel & 4);
  if (format == "jsonl") {
    if (sel & 8) o.text_pair_field = "pair";
    if (sel & 16) o.label_field = "labels";
  } else {
    if (sel & 8) o.text_pair_column = o.header ? "pair" : "2";
    if (sel & 16) o.label_column = o.header ? "label" : "1", o.text_column = o.header ? "text" : "0";
  }
  if (sel & 32) o.label_separator = "|";
  auto result = ltk::read_examples(ltk::fuzz::scratch_file("input." + format, input), o);
  for (const auto& e : result.examples) {
    ltk::fuzz::fuzz_check(!e.text.empty(), "an example with an empty text was read");
    if (o.require_label) ltk::fuzz::fuzz_check(!e.label.empty(), "a labelled example with an empty label was read");
    ltk::check_utf8(e.text, "text");
    ltk::check_utf8(e.label, "label");
    ltk::fuzz::fuzz_check(e.line >= 1, "an example without its line number");
  }
  ltk::fuzz::fuzz_check(result.skipped == 0 || o.on_bad_row == "skip", "rows skipped under on_bad_row error");
}
