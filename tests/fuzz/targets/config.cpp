// The config parser: a JSON document, then (after a line "--") one --set override per line, as
// ltk-train --config F --set ... reads them. Checks: a config that parses writes out (to_json) as a
// document that parses again to the same resolved config.
#include <string>
#include <vector>

#include "../fuzz.h"
#include "ltk/config/config.h"
#include "ltk/core/strings.h"
#include "ltk/models/registry.h"

LTK_FUZZ_TARGET(config) {
  std::string text(input);
  std::vector<std::string> overrides;
  size_t cut = text.find("\n--\n");
  if (cut != std::string::npos) {
    for (std::string_view line : ltk::split(std::string_view(text).substr(cut + 4), '\n'))
      if (!line.empty()) overrides.emplace_back(line);
    text.resize(cut);
  }
  ltk::Config c = ltk::load_config(ltk::fuzz::scratch_file("config.json", text), overrides);
  nlohmann::json resolved = ltk::to_json(c);
  ltk::Config again = ltk::parse_config(resolved);
  ltk::fuzz::fuzz_check(ltk::to_json(again) == resolved, "a resolved config does not parse back to itself: " + resolved.dump());
}
