// The jieba dictionary loader (dict.txt: "word freq [tag]" lines) on arbitrary bytes, then the
// segmenter with that dictionary on a fixed text. Checks: the tokens cover the text's non-space
// characters in order.
#include <string>
#include <vector>

#include "../fuzz.h"
#include "ltk/data/jieba.h"

LTK_FUZZ_TARGET(jieba_dict) {
  ltk::JiebaTokenizer tok(ltk::fuzz::scratch_file("dict.txt", input), ltk::Normalizer{false, false, false});
  const std::string text = "我们在北京学习中文分词 jieba 3.14 ok!";
  std::string joined;
  for (const auto& t : tok.tokenize(text)) joined += t;
  std::string expected;
  for (char c : text)
    if (c != ' ') expected += c;
  ltk::fuzz::fuzz_check(joined == expected, "the tokens do not cover the text: " + joined);
}
