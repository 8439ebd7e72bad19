// The tsv reader (ltk/data/formats.h) on arbitrary bytes, under every option combination the
// first byte selects. Checks: every example's text is valid UTF-8 and, when labels are required, non-empty.
#include "../fuzz.h"
#include "ltk/data/formats.h"

LTK_FUZZ_TARGET(reader_tsv) {
  uint8_t sel = ltk::fuzz::take_byte(input);
  ltk::ReaderOptions o;
  o.format = "tsv";
  o.header = sel & 1;
  o.on_bad_row = (sel & 2) ? "skip" : "error";
  o.require_label = !(sel & 4);
  if ("tsv" == std::string("jsonl")) {
    if (sel & 8) o.text_pair_field = "pair";
    if (sel & 16) o.label_field = "labels";
  } else {
    if (sel & 8) o.text_pair_column = o.header ? "pair" : "2";
    if (sel & 16) o.label_column = o.header ? "label" : "1", o.text_column = o.header ? "text" : "0";
  }
  if (sel & 32) o.label_separator = "|";
  auto result = ltk::read_examples(ltk::fuzz::scratch_file("input.tsv", input), o);
  for (const auto& e : result.examples) {
    ltk::fuzz::fuzz_check(!e.text.empty(), "an example with an empty text was read");
    if (o.require_label) ltk::fuzz::fuzz_check(!e.label.empty(), "a labelled example with an empty label was read");
    ltk::check_utf8(e.text, "text");
    ltk::check_utf8(e.label, "label");
    ltk::fuzz::fuzz_check(e.line >= 1, "an example without its line number");
  }
  ltk::fuzz::fuzz_check(result.skipped == 0 || o.on_bad_row == "skip", "rows skipped under on_bad_row error");
}
