// Tokenizers: one interface, one class per `data.tokenizer.type`.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ltk/config/config.h"

namespace ltk {

/// What happens to text before it is split: Unicode NFKC, lowercasing, accent stripping.
struct Normalizer {
  bool lowercase = true;
  bool nfkc = false;
  bool strip_accents = false;
  /// The normalised text: `text` itself when nothing applies, else a view of `scratch`.
  std::string_view apply(std::string_view text, std::string& scratch) const;
};

class Tokenizer {
 public:
  explicit Tokenizer(Normalizer normalizer) : norm_(normalizer) {}
  virtual ~Tokenizer() = default;

  /// Splits `text` into tokens. The views point into `text` or into `scratch` (which holds
  /// the normalised text), so they are valid until either changes. `text` must not lie in
  /// `scratch`: a tokenizer may clear it first.
  virtual void tokenize(std::string_view text, std::string& scratch,
                        std::vector<std::string_view>& tokens) const = 0;

  /// Convenience: the tokens as strings.
  std::vector<std::string> tokenize(std::string_view text) const;

 protected:
  Normalizer norm_;
};

/// Splits on whitespace only.
class WhitespaceTokenizer : public Tokenizer {
 public:
  explicit WhitespaceTokenizer(bool lowercase) : Tokenizer(Normalizer{lowercase, false, false}) {}
  explicit WhitespaceTokenizer(Normalizer n) : Tokenizer(n) {}
  using Tokenizer::tokenize;
  void tokenize(std::string_view text, std::string& scratch,
                std::vector<std::string_view>& tokens) const override;
};

/// Unicode-aware words and punctuation: every punctuation mark and every CJK ideograph is a
/// token of its own (as BERT's basic tokenizer does); control characters are dropped.
class BasicTokenizer : public Tokenizer {
 public:
  explicit BasicTokenizer(bool lowercase) : Tokenizer(Normalizer{lowercase, false, false}) {}
  explicit BasicTokenizer(Normalizer n) : Tokenizer(n) {}
  using Tokenizer::tokenize;
  void tokenize(std::string_view text, std::string& scratch,
                std::vector<std::string_view>& tokens) const override;
};

/// Every non-space code point is a token.
class CharTokenizer : public Tokenizer {
 public:
  explicit CharTokenizer(bool lowercase) : Tokenizer(Normalizer{lowercase, false, false}) {}
  explicit CharTokenizer(Normalizer n) : Tokenizer(n) {}
  using Tokenizer::tokenize;
  void tokenize(std::string_view text, std::string& scratch,
                std::vector<std::string_view>& tokens) const override;
};

std::unique_ptr<Tokenizer> make_tokenizer(const TokenizerConfig& config);

/// The file a run directory keeps for a tokenizer of this type (its dictionary, vocabulary or
/// model), so that eval, predict, resume and fine-tuning use exactly the training tokenizer; ""
/// for the types that need none.
std::string tokenizer_resource(const std::string& type);

/// Lowercases UTF-8 text (full Unicode simple case mapping) into `out`.
void lowercase_utf8(std::string_view text, std::string& out);

/// Unicode character classes used by the tokenizers.
bool is_unicode_space(char32_t cp);
bool is_punctuation(char32_t cp);
bool is_cjk_ideograph(char32_t cp);
bool is_control(char32_t cp);

}  // namespace ltk
