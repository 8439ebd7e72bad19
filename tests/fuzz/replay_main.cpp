// ltk_fuzz_replay TARGET PATH...: runs a fuzz target (fuzz.h) on every file in the given files
// and directories (recursively), without libFuzzer: how a normal ctest run replays the seed corpora
// and every past finding (tests/fuzz/regressions/TARGET). Prints how many inputs ran; a finding aborts.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz.h"

namespace ltk::fuzz {
std::map<std::string, TargetFn>& registry();
}

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  auto& targets = ltk::fuzz::registry();
  if (argc < 2 || !targets.count(argv[1])) {
    std::fprintf(stderr, "usage: ltk_fuzz_replay TARGET [FILE|DIR]...\ntargets:");
    for (const auto& [name, fn] : targets) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  std::vector<fs::path> files;
  for (int i = 2; i < argc; ++i) {
    fs::path p = argv[i];
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::is_regular_file(p)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "ltk_fuzz_replay: %s does not exist\n", p.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream data;
    data << in.rdbuf();
    std::string bytes = data.str();
    std::fprintf(stderr, "%s %s (%zu bytes)\n", argv[1], f.c_str(), bytes.size());
    ltk::fuzz::run_target(argv[1], targets[argv[1]], bytes);
  }
  std::printf("%s: %zu inputs replayed, no finding\n", argv[1], files.size());
  return 0;
}
