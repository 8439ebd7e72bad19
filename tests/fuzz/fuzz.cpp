// Support for the fuzz targets (fuzz.h): the contract, scratch files, the replay table.
#include "fuzz.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <map>
#include <typeinfo>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"

namespace ltk::fuzz {

std::map<std::string, TargetFn>& registry() {
  static std::map<std::string, TargetFn> targets;
  return targets;
}

Register::Register(const char* name, TargetFn fn) { registry()[name] = fn; }

namespace {

struct Cleanup {
  std::string dir;
  ~Cleanup() {
    if (!dir.empty()) {
      try {
        remove_tree(dir);
      } catch (...) {
      }
    }
  }
};

}  // namespace

const std::string& scratch_dir() {
  static Cleanup cleanup;
  if (cleanup.dir.empty()) {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    if (const char* t = std::getenv("LTK_TEST_TMP"); t && *t && access(t, W_OK) == 0) base = t;
    std::string templ = base + "/ltk-fuzz-XXXXXX";
    if (!mkdtemp(templ.data())) {
      std::perror("ltk fuzz: mkdtemp");
      std::abort();
    }
    cleanup.dir = templ;
    log::set_level(log::Level::off);  // parsers' warnings would flood the fuzzer's output
  }
  return cleanup.dir;
}

std::string scratch_file(const std::string& name, std::string_view data) {
  std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "ltk fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

void fuzz_check(bool ok, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "ltk fuzz finding: %s\n", what.c_str());
  std::abort();
}

void run_target(const char* name, TargetFn fn, std::string_view input) {
  scratch_dir();
  try {
    fn(input);
  } catch (const ltk::Error&) {
    // The contract: bad input ends in an ltk error that names what is at fault.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ltk fuzz finding: target %s: a %s escaped instead of an ltk::Error: %s\n", name,
                 typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "ltk fuzz finding: target %s: a non-std exception escaped\n", name);
    std::abort();
  }
}

}  // namespace ltk::fuzz
