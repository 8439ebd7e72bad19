// The sentencepiece tokenizer: unigram or BPE pieces from a model trained on the training split
// (Debian's libsentencepiece), saved in the run directory and used by eval and predict.
//
// libsentencepiece cannot share a process namespace with Debian's LibTorch (their protobuf
// copies collide while loading), so ltk reaches it through a small plugin, libltk_spm.so (built
// next to the apps when libsentencepiece-dev is installed), loaded with dlmopen into a link-map
// namespace of its own. LTK_SPM_PLUGIN names another plugin file.
#pragma once

#include <string>
#include <vector>

#include "ltk/config/config.h"
#include "ltk/data/reader.h"
#include "ltk/data/tokenizer.h"

namespace ltk {

class SentencePieceTokenizer : public Tokenizer {
 public:
  /// Loads `model_path` (a sentencepiece .model); ConfigError when it or the plugin is missing.
  SentencePieceTokenizer(const std::string& model_path, Normalizer normalizer);
  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  using Tokenizer::tokenize;
  void tokenize(std::string_view text, std::string& scratch, std::vector<std::string_view>& tokens) const override;
  /// Pieces in the model.
  int size() const;

 private:
  void* handle_ = nullptr;
};

/// Trains a sentencepiece model on the texts of `examples` (normalised as `config` says) with
/// data.tokenizer's vocab_size, model_type and character_coverage; writes `model_path` (and the
/// .vocab beside it). Errors name the config key.
void train_sentencepiece(const std::vector<Example>& examples, const TokenizerConfig& config,
                         const std::string& model_path, int threads);

/// Whether the plugin can be loaded (the tests and `ltk-data` use it to say what is missing).
bool sentencepiece_available(std::string* why = nullptr);

}  // namespace ltk
