// The texts ltk-predict and ltk-serve answer, checked one by one (without LibTorch: the
// LibTorch-free ltk-predict reads them too).
#pragma once

#include <string>
#include <string_view>

namespace ltk::infer {

/// One text to answer: trimmed, with a sentence pair's second text when the run reads pairs, or
/// the reason it cannot be answered (`error`, answered in place as {"error": ...}).
struct TextInput {
  std::string text;
  std::string text_pair;
  std::string error;
};

/// Checks a raw text: invalid UTF-8 ("invalid UTF-8 at byte N") and an empty text after trimming
/// are errors of that input alone. `pair` is checked the same way when `pairs` is set.
TextInput make_input(std::string_view text, std::string_view pair = {}, bool pairs = false);

}  // namespace ltk::infer
