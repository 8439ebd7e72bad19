#include "ltk/data/sentencepiece.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "ltk/core/error.h"
#include "ltk/core/log.h"

namespace ltk {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPluginName = "libltk_spm.so";
constexpr int kPluginAbi = 1;  ///< ltk_spm_abi_version() of the plugin this build speaks to

/// The plugin's C interface (lib/spm_plugin/ltk_spm_plugin.cpp).
struct SpmPlugin {
  int (*train)(const char*, char*, size_t) = nullptr;
  void* (*load)(const char*, char*, size_t) = nullptr;
  void (*free)(void*) = nullptr;
  int (*size)(void*) = nullptr;
  long (*encode)(void*, const char*, size_t, char*, size_t) = nullptr;
  std::string error;  ///< why it is unavailable
};

std::vector<std::string> plugin_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("LTK_SPM_PLUGIN"); env && *env) out.push_back(env);  // tried first
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((exe.parent_path() / kPluginName).string());
    out.push_back((exe.parent_path().parent_path() / "lib" / kPluginName).string());
    out.push_back((exe.parent_path().parent_path() / "lib" / "ltk" / kPluginName).string());
  }
#ifdef LTK_SPM_PLUGIN_DIR
  out.push_back(std::string(LTK_SPM_PLUGIN_DIR) + "/" + kPluginName);
#endif
  out.push_back(std::string("/usr/lib/ltk/") + kPluginName);  // where the ltk Debian package puts it
  out.push_back(std::string("/usr/local/lib/ltk/") + kPluginName);
  return out;
}

const SpmPlugin& plugin() {
  static SpmPlugin p;
  static std::once_flag once;
  std::call_once(once, [] {
    // Each candidate that exists is tried in turn; one that fails to load, or is another
    // version of the plugin, is named in the error and the search goes on.
    std::vector<std::string> problems;
    for (const auto& path : plugin_candidates()) {
      if (!fs::exists(path)) {
        const char* env = std::getenv("LTK_SPM_PLUGIN");
        problems.push_back(path + (env && path == env ? ": does not exist (LTK_SPM_PLUGIN)" : ": not there"));
        continue;
      }
      // A namespace of its own: the plugin's libsentencepiece (with its protobuf-lite) never
      // meets LibTorch's libprotobuf.
      void* lib = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!lib) {
        const char* why = dlerror();
        problems.push_back(fmt::format("{}: cannot load: {}", path, why ? why : "unknown error"));
        continue;
      }
      auto abi = reinterpret_cast<int (*)()>(dlsym(lib, "ltk_spm_abi_version"));
      if (!abi || abi() != kPluginAbi) {
        problems.push_back(fmt::format("{}: plugin interface version {}, this ltk needs {}; rebuild it", path,
                                       abi ? std::to_string(abi()) : "unknown", kPluginAbi));
        dlclose(lib);
        continue;
      }
      SpmPlugin found;
      found.train = reinterpret_cast<decltype(found.train)>(dlsym(lib, "ltk_spm_train"));
      found.load = reinterpret_cast<decltype(found.load)>(dlsym(lib, "ltk_spm_load"));
      found.free = reinterpret_cast<decltype(found.free)>(dlsym(lib, "ltk_spm_free"));
      found.size = reinterpret_cast<decltype(found.size)>(dlsym(lib, "ltk_spm_size"));
      found.encode = reinterpret_cast<decltype(found.encode)>(dlsym(lib, "ltk_spm_encode"));
      if (!found.train || !found.load || !found.free || !found.size || !found.encode) {
        problems.push_back(path + ": not an ltk sentencepiece plugin (a function is missing)");
        dlclose(lib);
        continue;
      }
      p = found;
      for (const auto& problem : problems)
        if (problem.find(": not there") == std::string::npos)
          log::warn("[data] sentencepiece plugin {} skipped; using {}", problem, path);
      return;
    }
    std::string tried;
    for (const auto& problem : problems) tried += (tried.empty() ? "" : "; ") + problem;
    p.error = fmt::format("no usable sentencepiece plugin {} ({}); install libsentencepiece-dev "
                          "(scripts/setup.sh) and rebuild (scripts/build.sh), or set LTK_SPM_PLUGIN to its path",
                          kPluginName, tried);
  });
  return p;
}

const SpmPlugin& require_plugin() {
  const SpmPlugin& p = plugin();
  if (!p.train) throw ConfigError("config key 'data.tokenizer.type': \"sentencepiece\": " + p.error);
  return p;
}

}  // namespace

bool sentencepiece_available(std::string* why) {
  const SpmPlugin& p = plugin();
  if (why) *why = p.error;
  return p.train != nullptr;
}

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path, Normalizer normalizer)
    : Tokenizer(normalizer) {
  const SpmPlugin& p = require_plugin();
  if (model_path.empty())
    throw ConfigError("config key 'data.tokenizer.dict': the sentencepiece tokenizer needs a model; ltk-train trains "
                      "one on the training split into the run directory (spm.model) when dict is empty");
  if (!fs::is_regular_file(model_path))
    throw ConfigError("config key 'data.tokenizer.dict': sentencepiece model " + model_path + " does not exist");
  char err[1024] = {0};
  handle_ = p.load(model_path.c_str(), err, sizeof err);
  if (!handle_) throw ConfigError(fmt::format("{}: not a sentencepiece model: {}", model_path, err));
}

SentencePieceTokenizer::~SentencePieceTokenizer() {
  if (handle_) plugin().free(handle_);
}

int SentencePieceTokenizer::size() const { return plugin().size(handle_); }

void SentencePieceTokenizer::tokenize(std::string_view text, std::string& scratch,
                                      std::vector<std::string_view>& tokens) const {
  tokens.clear();
  std::string_view s = norm_.apply(text, scratch);
  // The pieces are written into scratch, so the input must not live there.
  thread_local std::string input;
  if (s.data() >= scratch.data() && s.data() < scratch.data() + scratch.size() + 1) {
    input.assign(s);
    s = input;
  }
  scratch.resize(std::max<size_t>(64, 2 * s.size() + 16));
  long n = plugin().encode(handle_, s.data(), s.size(), scratch.data(), scratch.size());
  if (n > static_cast<long>(scratch.size())) {
    scratch.resize(static_cast<size_t>(n));
    n = plugin().encode(handle_, s.data(), s.size(), scratch.data(), scratch.size());
  }
  if (n < 0) throw DataError("sentencepiece could not encode a text: " + std::string(scratch.c_str()));
  size_t start = 0;
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    if (scratch[i] != '\0') continue;
    if (i > start) tokens.emplace_back(scratch.data() + start, i - start);
    start = i + 1;
  }
}

void train_sentencepiece(const std::vector<Example>& examples, const TokenizerConfig& config,
                         const std::string& model_path, int threads) {
  const SpmPlugin& p = require_plugin();
  if (config.model_type != "unigram" && config.model_type != "bpe")
    throw ConfigError("config key 'data.tokenizer.model_type': '" + config.model_type + "'; use unigram or bpe");
  // sentencepiece writes PREFIX.model and PREFIX.vocab.
  const std::string prefix = fs::path(model_path).replace_extension().string();
  const std::string input = prefix + ".train.txt";
  {
    // One normalised text per line (sentencepiece reads lines): newlines inside a text become spaces.
    Normalizer norm{config.lowercase, config.nfkc, config.strip_accents};
    std::ofstream out(input, std::ios::binary);
    if (!out) throw Error("cannot write " + input);
    std::string scratch, line;
    for (const auto& ex : examples) {
      line.assign(norm.apply(ex.text, scratch));
      for (char& c : line)
        if (c == '\n' || c == '\r') c = ' ';
      out << line << '\n';
    }
    if (!out) throw Error("cannot write " + input);
  }
  std::string options = fmt::format(
      "input={}\nmodel_prefix={}\nvocab_size={}\nmodel_type={}\ncharacter_coverage={}\nnum_threads={}\n"
      "hard_vocab_limit=false\nunk_id=0\nbos_id=-1\neos_id=-1\npad_id=-1\ninput_sentence_size=0\n"
      "minloglevel=2\n",
      input, prefix, config.vocab_size, config.model_type, config.character_coverage, std::max(threads, 1));
  char err[2048] = {0};
  int rc = p.train(options.c_str(), err, sizeof err);
  std::remove(input.c_str());
  if (rc != 0)
    throw ConfigError(fmt::format("data.tokenizer (sentencepiece, vocab_size {}, model_type {}): training failed: {}",
                                  config.vocab_size, config.model_type, err));
}

}  // namespace ltk
