#include "ltk/infer/inputs.h"

#include "ltk/core/strings.h"
#include "ltk/data/utf8.h"

namespace ltk::infer {

namespace {

std::string check_text(std::string_view raw, std::string& out, const char* what) {
  size_t bad = utf8::find_invalid(raw);
  if (bad != std::string::npos) return std::string("invalid UTF-8 at byte ") + std::to_string(bad) + what;
  out = std::string(trim(raw));
  if (out.empty()) return std::string("empty text") + what;
  return "";
}

}  // namespace

TextInput make_input(std::string_view text, std::string_view pair, bool pairs) {
  TextInput in;
  in.error = check_text(text, in.text, "");
  if (in.error.empty() && pairs) in.error = check_text(pair, in.text_pair, " (the second text of the pair)");
  return in;
}

}  // namespace ltk::infer
