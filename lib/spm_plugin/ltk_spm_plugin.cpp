// The sentencepiece tokenizer's plugin: a C interface over Debian's libsentencepiece, loaded by
// ltk with dlmopen into a link-map namespace of its own. Debian's libsentencepiece carries its
// own copy of protobuf-lite while Debian's LibTorch links libprotobuf: in one namespace the two
// collide and the process crashes while loading. Across the boundary only C types travel, and
// every buffer is the caller's (each namespace has its own allocator). No exception may cross
// the boundary (it would unwind into another namespace's C++ runtime): every entry point is
// noexcept and turns any exception into an error string.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

void set_error(char* err, size_t cap, const std::string& message) {
  if (!err || cap == 0) return;
  size_t n = std::min(cap - 1, message.size());
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

}  // namespace

extern "C" {

/// The version of this C interface; ltk refuses a plugin whose version differs from its own.
int ltk_spm_abi_version() noexcept { return 1; }

/// Trains a model; `options` holds one key=value per line (sentencepiece's flag names: input,
/// model_prefix, vocab_size, ...), so that paths may hold spaces. Returns 0, or -1 with the error
/// in err.
int ltk_spm_train(const char* options, char* err, size_t err_cap) noexcept {
  try {
    std::unordered_map<std::string, std::string> kwargs;
    std::string all(options);
    size_t pos = 0;
    while (pos < all.size()) {
      size_t nl = all.find('\n', pos);
      if (nl == std::string::npos) nl = all.size();
      std::string line = all.substr(pos, nl - pos);
      pos = nl + 1;
      size_t eq = line.find('=');
      if (eq != std::string::npos) kwargs[line.substr(0, eq)] = line.substr(eq + 1);
    }
    auto status = sentencepiece::SentencePieceTrainer::Train(kwargs);
    if (!status.ok()) {
      set_error(err, err_cap, status.ToString());
      return -1;
    }
    return 0;
  } catch (const std::exception& e) {
    set_error(err, err_cap, e.what());
    return -1;
  } catch (...) {
    set_error(err, err_cap, "unknown error in sentencepiece training");
    return -1;
  }
}

/// Loads a .model file; nullptr with the error in err.
void* ltk_spm_load(const char* path, char* err, size_t err_cap) noexcept {
  try {
    auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    auto status = sp->Load(path);
    if (!status.ok()) {
      set_error(err, err_cap, status.ToString());
      return nullptr;
    }
    return sp.release();
  } catch (const std::exception& e) {
    set_error(err, err_cap, e.what());
  } catch (...) {
    set_error(err, err_cap, "unknown error while loading the model");
  }
  return nullptr;
}

void ltk_spm_free(void* handle) noexcept { delete static_cast<sentencepiece::SentencePieceProcessor*>(handle); }

/// Number of pieces in the model, or -1.
int ltk_spm_size(void* handle) noexcept {
  try {
    return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->GetPieceSize();
  } catch (...) {
    return -1;
  }
}

/// Splits text[0..len) into pieces, written to out as piece\0piece\0... Returns the bytes the
/// pieces need (when more than cap, nothing useful was written: call again with that much), or
/// -1 with the error in out (when cap allows).
long ltk_spm_encode(void* handle, const char* text, size_t len, char* out, size_t cap) noexcept try {
  thread_local std::vector<std::string> pieces;
  auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Encode(std::string_view(text, len), &pieces);
  if (!status.ok()) {
    set_error(out, cap, status.ToString());
    return -1;
  }
  size_t need = 0;
  for (const auto& p : pieces) need += p.size() + 1;
  if (need <= cap) {
    char* o = out;
    for (const auto& p : pieces) {
      std::memcpy(o, p.data(), p.size());
      o += p.size();
      *o++ = '\0';
    }
  }
  return static_cast<long>(need);
} catch (const std::exception& e) {
  set_error(out, cap, e.what());
  return -1;
} catch (...) {
  set_error(out, cap, "unknown error while encoding");
  return -1;
}

}  // extern "C"
