// Every tokenizer (basic, whitespace, char, wordpiece, jieba, sentencepiece) on arbitrary bytes:
// the first byte picks the tokenizer and its normaliser options. Checks, on valid UTF-8 input: every
// token is non-empty valid UTF-8 and (but for wordpiece's and sentencepiece's pieces) holds no space.
#include <memory>
#include <string>
#include <vector>

#include "../fuzz.h"
#include "ltk/config/config.h"
#include "ltk/data/reader.h"
#include "ltk/data/sentencepiece.h"
#include "ltk/data/tokenizer.h"
#include "ltk/data/utf8.h"

namespace {

struct Tokenizers {
  std::vector<std::unique_ptr<ltk::Tokenizer>> all;  // 6 types x 8 normaliser settings
  std::vector<std::string> types;
};

const Tokenizers& tokenizers() {
  static Tokenizers t = [] {
    Tokenizers t;
    std::string vocab = ltk::fuzz::scratch_file(
        "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\nthe\n##s\n##ing\n##e\nplay\n中\n文\n,\n.\n##a\n##b\n");
    std::string dict = ltk::fuzz::scratch_file("dict.txt", "中文 100 n\n中 10\n文 10\n分词 50 v\n分 5\n词 5\n北京 30 ns\n北 3\n京 3\n");
    std::string spm;
    if (ltk::sentencepiece_available()) {
      std::vector<ltk::Example> ex;
      const char* words[] = {"goal", "match", "team", "中文", "分词", "caf\xc3\xa9", "\xf0\x9f\x99\x82", "kernel"};
      for (int i = 0; i < 100; ++i)
        ex.push_back({"x", std::string(words[i % 8]) + " " + words[(i * 3 + 1) % 8] + " " + words[(i * 5 + 2) % 8], i + 1});
      ltk::TokenizerConfig tc;
      tc.type = "sentencepiece";
      tc.vocab_size = 30;
      tc.character_coverage = 1.0;
      spm = ltk::fuzz::scratch_dir() + "/spm.model";
      ltk::train_sentencepiece(ex, tc, spm, 1);
    }
    for (std::string type : {"basic", "whitespace", "char", "wordpiece", "jieba", "sentencepiece"}) {
      for (int flags = 0; flags < 8; ++flags) {
        ltk::TokenizerConfig c;
        c.type = type;
        c.lowercase = flags & 1;
        c.nfkc = flags & 2;
        c.strip_accents = flags & 4;
        c.tokenize_chinese_chars = !(flags & 2);
        c.dict = type == "wordpiece" ? vocab : type == "jieba" ? dict : spm;
        if (type == "sentencepiece" && spm.empty()) {
          t.all.push_back(nullptr);
        } else {
          t.all.push_back(ltk::make_tokenizer(c));
        }
        t.types.push_back(type);
      }
    }
    return t;
  }();
  return t;
}

}  // namespace

LTK_FUZZ_TARGET(tokenize) {
  const auto& t = tokenizers();
  size_t which = ltk::fuzz::take_byte(input) % t.all.size();
  if (!t.all[which]) return;
  const std::string& type = t.types[which];
  std::string scratch;
  std::vector<std::string_view> tokens;
  t.all[which]->tokenize(input, scratch, tokens);
  if (ltk::utf8::find_invalid(input) != std::string_view::npos) return;  // must not crash; nothing more
  for (std::string_view tok : tokens) {
    ltk::fuzz::fuzz_check(!tok.empty(), type + ": an empty token");
    ltk::fuzz::fuzz_check(ltk::utf8::find_invalid(tok) == std::string_view::npos, type + ": a token that is not valid UTF-8");
    if (type == "wordpiece" || type == "sentencepiece") continue;
    for (size_t i = 0; i < tok.size();)
      ltk::fuzz::fuzz_check(!ltk::is_unicode_space(ltk::utf8::next(tok, i)), type + ": a token holds a space");
  }
}
