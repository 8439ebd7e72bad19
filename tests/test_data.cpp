#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "ltk/core/error.h"
#include "ltk/data/dataset.h"
#include "ltk/data/formats.h"
#include "ltk/data/jieba.h"
#include "ltk/data/ngrams.h"
#include "ltk/data/perturb.h"
#include "ltk/data/reader.h"
#include "ltk/data/sentencepiece.h"
#include "ltk/data/split.h"
#include "ltk/data/token_index.h"
#include "ltk/data/tokenizer.h"
#include "ltk/data/utf8.h"
#include "ltk/data/vocab.h"
#include "ltk/data/wordpiece.h"
#include "ltk/eval/evaluator.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using ltk::DataError;
using ltk::test::TempDir;
using ltk::test::write_file;

TEST_CASE("reader: TSV with BOM, CRLF and blank lines", "[data][reader]") {
  TempDir dir;
  write_file(dir.file("a.tsv"), "\xEF\xBB\xBFpos\tgood  film\r\n\r\nneg\tbad\tfilm\r\n");
  auto ex = ltk::read_tsv(dir.file("a.tsv"));
  REQUIRE(ex.size() == 2);
  CHECK(ex[0].label == "pos");
  CHECK(ex[0].text == "good  film");
  CHECK(ex[0].line == 1);
  CHECK(ex[1].text == "bad\tfilm");  // the text is everything after the first tab
  CHECK(ex[1].line == 3);
}

TEST_CASE("reader: every malformed row names file:line", "[data][reader]") {
  TempDir dir;
  write_file(dir.file("notab.tsv"), "pos\tok\nno tab here\n");
  REQUIRE_THROWS_AS(ltk::read_tsv(dir.file("notab.tsv")), DataError);
  REQUIRE_THROWS_WITH(ltk::read_tsv(dir.file("notab.tsv")), Contains("notab.tsv:2") && Contains("no tab"));
  write_file(dir.file("empty_text.tsv"), "pos\tok\nneg\t   \n");
  REQUIRE_THROWS_WITH(ltk::read_tsv(dir.file("empty_text.tsv")), Contains("empty_text.tsv:2") && Contains("empty text"));
  write_file(dir.file("empty_label.tsv"), "\ttext\n");
  REQUIRE_THROWS_WITH(ltk::read_tsv(dir.file("empty_label.tsv")), Contains(":1") && Contains("empty label"));
  write_file(dir.file("utf8.tsv"), "pos\tok\nneg\tab\xFF" "cd\n");
  REQUIRE_THROWS_WITH(ltk::read_tsv(dir.file("utf8.tsv")), Contains("utf8.tsv:2") && Contains("invalid UTF-8 at byte 6"));
  write_file(dir.file("blank.tsv"), "\n\n");
  REQUIRE_THROWS_WITH(ltk::read_tsv(dir.file("blank.tsv")), Contains("no examples"));
  REQUIRE_THROWS_WITH(ltk::read_tsv(dir.file("nope.tsv")), Contains("cannot open") && Contains("nope.tsv"));
}

TEST_CASE("utf8: the lead bytes C0 C1 and F5 to FF start no character", "[data][utf8]") {
  // F5-FF once decoded as three-byte characters ("\xF5\x9B\xBD" as U+56FD), so the readers let them
  // through and jieba matched them against dictionary words.
  for (int lead : {0xC0, 0xC1, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF}) {
    const std::string s = std::string("a") + static_cast<char>(lead) + "\x9B\xBD\x80";
    size_t i = 1;
    CHECK(ltk::utf8::next(s, i) == 0xFFFD);
    CHECK(i == 2);
    CHECK(ltk::utf8::find_invalid(s) == 1);
  }
  const std::vector<std::pair<std::string, char32_t>> valid = {
      {"\xC2\x80", 0x80},       {"\xDF\xBF", 0x7FF},           {"\xE5\x9B\xBD", 0x56FD},
      {"\xEF\xBF\xBD", 0xFFFD}, {"\xF0\x90\x80\x80", 0x10000}, {"\xF4\x8F\xBF\xBF", 0x10FFFF}};
  for (const auto& [bytes, cp] : valid) {
    size_t i = 0;
    CHECK(ltk::utf8::next(bytes, i) == cp);
    CHECK(i == bytes.size());
    CHECK(ltk::utf8::find_invalid(bytes) == std::string::npos);
  }
}

TEST_CASE("tokenizer: basic splits words and punctuation, CJK per character, lowercases", "[data][tokenizer]") {
  ltk::BasicTokenizer basic(true);
  using V = std::vector<std::string>;
  CHECK(basic.tokenize("Hello, World! It's 42.") == V{"hello", ",", "world", "!", "it", "'", "s", "42", "."});
  CHECK(basic.tokenize("  ÉCOLE  naïve  ") == V{"école", "naïve"});
  CHECK(basic.tokenize("我爱北京。ok") == V{"我", "爱", "北", "京", "。", "ok"});
  CHECK(basic.tokenize("a\xE2\x80\x94" "b") == V{"a", "\xE2\x80\x94", "b"});  // em dash is punctuation
  CHECK(basic.tokenize("a\xE2\x80\x8B" "b") == V{"a", "b"});                  // zero-width space dropped
  CHECK(basic.tokenize("").empty());
  ltk::BasicTokenizer keep(false);
  CHECK(keep.tokenize("Hi THERE") == V{"Hi", "THERE"});
  // A text of ASCII bytes is lowercased and split in one pass; any text gives the tokens of the
  // two passes: lowercase_utf8, then the same tokenizer without lowercasing. Random texts of
  // letters, digits, punctuation, spaces and control bytes, some with a non-ASCII byte anywhere
  // (which sends the text down the general path), reusing one scratch string whatever its size.
  std::mt19937 rng(29);
  std::string bytes = "aZqM09 _-.,;!?'\"\t\n\r\x01\x7f()[]{}@#";
  bytes.push_back('\0');
  const std::vector<std::string> others = {"\xC3\x89", "\xE2\x80\x94", "\xE4\xB8\xAD", "\xC2\xA0"};
  std::string scratch, lowered, scratch2;
  std::vector<std::string_view> one_pass, two_passes;
  for (int t = 0; t < 3000; ++t) {
    std::string text;
    const int n = static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) text += bytes[rng() % bytes.size()];
    if (t % 3 == 0) text.insert(rng() % (text.size() + 1), others[rng() % others.size()]);  // (last too)
    basic.tokenize(text, scratch, one_pass);
    ltk::lowercase_utf8(text, lowered);
    keep.tokenize(lowered, scratch2, two_passes);
    INFO(text);
    REQUIRE(one_pass == two_passes);
  }
}

TEST_CASE("tokenizer: whitespace and char", "[data][tokenizer]") {
  using V = std::vector<std::string>;
  CHECK(ltk::WhitespaceTokenizer(true).tokenize(" A,b\tC\u3000d ") == V{"a,b", "c", "d"});
  CHECK(ltk::CharTokenizer(false).tokenize("ab 中文") == V{"a", "b", "中", "文"});
  ltk::TokenizerConfig cfg;
  cfg.type = "char";
  CHECK(ltk::make_tokenizer(cfg)->tokenize("xy") == V{"x", "y"});
}

TEST_CASE("vocab: specials first, frequency order with a stable tie-break, min_freq and max_size", "[data][vocab]") {
  ltk::TokenCounter counter;
  for (auto t : {"b", "a", "c", "a", "b", "d", "a"}) counter.add(t);
  auto v = ltk::Vocabulary::build(counter, 1, 0);
  REQUIRE(v.size() == 6);
  CHECK(v.token(0) == "<pad>");
  CHECK(v.token(1) == "<unk>");
  CHECK(v.token(2) == "a");
  CHECK(v.token(3) == "b");
  CHECK(v.token(4) == "c");  // c and d tie: byte order
  CHECK(v.token(5) == "d");
  CHECK(v.id("zzz") == ltk::Vocabulary::kUnkId);
  CHECK(ltk::Vocabulary::build(counter, 2, 0).size() == 4);
  CHECK(ltk::Vocabulary::build(counter, 1, 3).size() == 3);

  TempDir dir;
  v.save(dir.file("vocab.txt"));
  auto loaded = ltk::Vocabulary::load(dir.file("vocab.txt"));
  REQUIRE(loaded.size() == v.size());
  for (int32_t i = 0; i < v.size(); ++i) CHECK(loaded.token(i) == v.token(i));
  CHECK(loaded.id("b") == 3);
  ltk::Vocabulary copy = loaded;  // the index must follow the copy
  CHECK(copy.id("c") == 4);
  write_file(dir.file("bad.txt"), "<pad>\t0\n<unk>\t0\nx\ty\n");
  REQUIRE_THROWS_WITH(ltk::Vocabulary::load(dir.file("bad.txt")), Contains("bad.txt:3"));
}

namespace {
ltk::TextDataset make_dataset(const std::vector<std::string>& texts, int64_t max_len = 0,
                              const std::string& truncation = "head") {
  std::vector<ltk::Example> ex;
  for (size_t i = 0; i < texts.size(); ++i) ex.push_back({"x", texts[i], static_cast<int64_t>(i + 1)});
  ltk::WhitespaceTokenizer tok(false);
  static ltk::Vocabulary vocab;
  vocab = ltk::Vocabulary::build(ltk::count_tokens(ex, tok), 1, 0);
  static auto labels = ltk::LabelMap::from_labels({"x", "y"});
  auto targets = ltk::class_targets(labels);
  return ltk::encode_examples(ex, "mem", tok, vocab, &targets, {max_len, truncation});
}
}  // namespace

TEST_CASE("pitfall P2: collate pads with the pad id to the longest sample, with lengths and mask", "[data][collate]") {
  auto data = make_dataset({"a b c", "a", "b c"});
  ltk::PadCollate collate(/*pad_id=*/0);
  auto batch = collate(data, {0, 1, 2});
  REQUIRE(batch.ids.sizes() == torch::IntArrayRef({3, 3}));
  CHECK(batch.lengths.equal(torch::tensor({3, 1, 2}, torch::kLong)));
  CHECK(batch.ids[1][1].item<int64_t>() == 0);
  CHECK(batch.ids[1][2].item<int64_t>() == 0);
  CHECK(batch.mask.sum().item<int64_t>() == 6);
  CHECK(batch.mask[2][2].item<bool>() == false);
  CHECK(batch.labels.equal(torch::zeros({3}, torch::kLong)));
  // A non-zero pad id is really used (the article's pad() ignored its pad_value).
  auto padded7 = ltk::PadCollate(7)(data, {1, 0});
  CHECK(padded7.ids[0][1].item<int64_t>() == 7);
  // A fixed length pads further.
  CHECK(ltk::PadCollate(0, 5)(data, {1}).ids.size(1) == 5);
}

TEST_CASE("pitfall P2: truncation keeps head, tail or head+tail, and remembers the full length", "[data][collate]") {
  std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7};
  auto h = ids, t = ids, ht = ids;
  ltk::truncate_ids(h, 4, "head");
  ltk::truncate_ids(t, 4, "tail");
  ltk::truncate_ids(ht, 5, "head+tail");
  CHECK(h == std::vector<int32_t>{1, 2, 3, 4});
  CHECK(t == std::vector<int32_t>{4, 5, 6, 7});
  CHECK(ht == std::vector<int32_t>{1, 2, 3, 6, 7});
  auto data = make_dataset({"a b c d e", "a"}, 3, "tail");
  CHECK(data.length(0) == 3);
  CHECK(data.full_length(0) == 5);
  CHECK(data.truncated(0));
  CHECK_FALSE(data.truncated(1));
}

TEST_CASE("dataset: ids are stored in one flat buffer", "[data][dataset]") {
  auto data = make_dataset({"a b c", "a", "b c"});
  CHECK(data.total_tokens() == 6);
  CHECK(data.size() == 3);
  CHECK(data.memory_bytes() < 6 * 4 + 4 * 8 + 3 * (8 + 4 + 8) + 64);
}

TEST_CASE("token index: every token keeps its id through growth, prefixes, NUL bytes and long tokens", "[data][vocab]") {
  ltk::TokenIndex index;
  std::vector<std::string> tokens = {"", "a", std::string("a\0", 2), "ab", "abc", "abcd", "abcde", "abcdefgh",
                                     "abcdefghi", std::string("abcdefgh\0", 9), "abcdefghijklmnopq", "abcdefghijklmnopr", "\xe4\xb8\xad"};
  for (int i = 0; i < 20000; ++i) tokens.push_back("t" + std::to_string(i * 7919));
  for (size_t i = 0; i < tokens.size(); ++i) REQUIRE(index.insert(tokens[i]) == static_cast<int32_t>(i));
  REQUIRE(index.size() == tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    CHECK(index.find(tokens[i]) == static_cast<int32_t>(i));
    CHECK(index.insert(tokens[i]) == static_cast<int32_t>(i));
    CHECK(index.token_at(static_cast<int32_t>(i)) == tokens[i]);
  }
  CHECK(index.find("abcdefghijklmnops") == -1);
  CHECK(index.find(std::string("a\0\0", 3)) == -1);
  CHECK(index.find("t1") == -1);

  // find_all and insert_all (which fetch slots ahead) answer as find and insert one at a time: runs
  // shorter and longer than their look-ahead, repeats within a run, absent tokens, and a table that
  // grows in the middle of a run.
  std::vector<std::string_view> views(tokens.begin(), tokens.end());
  for (const char* absent : {"zz", "abcdefghijklmnops", "t1"}) views.insert(views.begin() + 5, absent);
  views.push_back(views[3]);
  for (size_t n : {size_t{0}, size_t{1}, size_t{5}, size_t{8}, size_t{9}, size_t{100}, views.size()}) {
    std::vector<int32_t> got(n, -7);
    index.find_all(views.data(), n, got.data());
    for (size_t i = 0; i < n; ++i) REQUIRE(got[i] == index.find(views[i]));
  }
  const std::vector<std::string_view> repeats = {"x", "y", "x", "x", "abcdefghijk", "y", "abcdefghijk", "x"};
  ltk::TokenIndex fresh;
  std::vector<int32_t> ids(repeats.size());
  fresh.insert_all(repeats.data(), repeats.size(), ids.data());
  CHECK(ids == std::vector<int32_t>{0, 1, 0, 0, 2, 1, 2, 0});
  ltk::TokenIndex grown, one_by_one;
  std::vector<int32_t> got(views.size(), -7);
  grown.insert_all(views.data(), views.size(), got.data());
  for (size_t i = 0; i < views.size(); ++i) REQUIRE(got[i] == one_by_one.insert(views[i]));
  REQUIRE(grown.size() == one_by_one.size());
  for (size_t i = 0; i < grown.size(); ++i)
    REQUIRE(grown.token_at(static_cast<int32_t>(i)) == one_by_one.token_at(static_cast<int32_t>(i)));
}

TEST_CASE("vocab: built in the same pass as the ids, equal to counting first, specials never looked up",
          "[data][vocab]") {
  std::vector<ltk::Example> ex;
  std::mt19937 rng(5);
  for (int i = 0; i < 300; ++i) {
    std::string text;
    for (int k = 0, n = static_cast<int>(rng() % 12); k <= n; ++k) text += "w" + std::to_string(rng() % (k + 3) * (rng() % 40)) + " ";
    if (i == 7) text += "<pad> <unk>";
    ex.push_back({i % 3 ? "x" : "y", text, i + 1});
  }
  ltk::WhitespaceTokenizer tok(false);
  auto labels = ltk::LabelMap::from_labels({"x", "y"});
  auto targets = ltk::class_targets(labels);
  for (auto [min_freq, max_size, max_len] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 0, 0}, {3, 0, 5}, {1, 20, 4}}) {
    auto vocab = ltk::Vocabulary::build(ltk::count_tokens(ex, tok), min_freq, max_size);
    auto two_pass = ltk::encode_examples(ex, "m", tok, vocab, &targets, {max_len, "head+tail"});
    auto [vocab1, one_pass] = ltk::build_vocab_and_encode(ex, "m", tok, min_freq, max_size, &targets, {max_len, "head+tail"});
    REQUIRE(vocab1.size() == vocab.size());
    for (int32_t i = 0; i < vocab.size(); ++i) REQUIRE(vocab1.token(i) == vocab.token(i));
    REQUIRE(one_pass.total_tokens() == two_pass.total_tokens());
    for (int64_t i = 0; i < one_pass.size(); ++i) {
      REQUIRE(one_pass.full_length(i) == two_pass.full_length(i));
      REQUIRE(std::vector<int32_t>(one_pass.tokens(i), one_pass.tokens(i) + one_pass.length(i)) ==
              std::vector<int32_t>(two_pass.tokens(i), two_pass.tokens(i) + two_pass.length(i)));
      REQUIRE(one_pass.label(i) == two_pass.label(i));
    }
    // A text token spelled like a special is unknown, never padding.
    const int32_t* t7 = one_pass.tokens(7);
    CHECK(t7[one_pass.length(7) - 1] == ltk::Vocabulary::kUnkId);
    CHECK(vocab1.id("<pad>") == ltk::Vocabulary::kUnkId);
    CHECK_FALSE(vocab1.contains("<pad>"));
    // Stored ids: 4 bytes a token, no spare capacity.
    CHECK(one_pass.id_bytes() == static_cast<size_t>(one_pass.total_tokens()) * 4);
  }
}

TEST_CASE("pitfall P8: a label the model does not know is caught when data is read", "[data][labels]") {
  std::vector<ltk::Example> ex = {{"pos", "good", 1}, {"neutral", "meh", 2}};
  ltk::WhitespaceTokenizer tok(true);
  ltk::Vocabulary vocab;
  auto labels = ltk::LabelMap::from_labels({"pos", "neg"});
  auto targets = ltk::class_targets(labels);
  REQUIRE_THROWS_AS(ltk::encode_examples(ex, "eval.tsv", tok, vocab, &targets, {}), DataError);
  REQUIRE_THROWS_WITH(ltk::encode_examples(ex, "eval.tsv", tok, vocab, &targets, {}),
                      Contains("eval.tsv:2") && Contains("'neutral'") && Contains("'neg'"));
}

TEST_CASE("labels: sorted ids, save and load", "[data][labels]") {
  auto labels = ltk::LabelMap::from_labels({"b", "a", "c", "a"});
  CHECK(labels.size() == 3);
  CHECK(labels.find("a") == 0);
  CHECK(labels.find("c") == 2);
  CHECK(labels.find("z") == -1);
  TempDir dir;
  labels.save(dir.file("labels.txt"));
  CHECK(ltk::LabelMap::load(dir.file("labels.txt")).names() == labels.names());
}

TEST_CASE("sampler: seeded shuffling, every sample once, drop_last", "[data][sampler]") {
  ltk::BatchSampler s(10, 3, true, false, 42);
  auto e1 = s.epoch(1), e1b = s.epoch(1), e2 = s.epoch(2);
  CHECK(e1 == e1b);
  CHECK(e1 != e2);
  REQUIRE(e1.size() == 4);
  CHECK(s.batches_per_epoch() == 4);
  std::set<int64_t> seen;
  for (const auto& b : e1) seen.insert(b.begin(), b.end());
  CHECK(seen.size() == 10);
  ltk::BatchSampler d(10, 3, false, true, 42);
  auto batches = d.epoch(1);
  REQUIRE(batches.size() == 3);
  CHECK(batches[0] == std::vector<int64_t>{0, 1, 2});
}

TEST_CASE("split: stratified by label, seeded, duplicates never straddle splits", "[data][split]") {
  std::vector<ltk::Example> ex;
  for (int i = 0; i < 100; ++i) ex.push_back({"a", "text a " + std::to_string(i), i + 1});
  for (int i = 0; i < 50; ++i) ex.push_back({"b", "text b " + std::to_string(i), i + 101});
  for (int i = 0; i < 10; ++i) ex.push_back({"b", "same text", i + 151});
  ltk::SplitReport report;
  auto parts = ltk::stratified_split(ex, {0.8, 0.1, 0.1}, 5, &report);
  CHECK(report.duplicate_texts == 9);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].size() + parts[1].size() + parts[2].size() == ex.size());
  auto count = [&](const std::vector<int64_t>& p, const std::string& label) {
    return std::count_if(p.begin(), p.end(), [&](int64_t i) { return ex[i].label == label; });
  };
  CHECK(count(parts[0], "a") == 80);
  CHECK(count(parts[1], "a") == 10);
  CHECK(count(parts[2], "a") == 10);
  int holding_dup = 0;
  for (const auto& p : parts)
    holding_dup += std::any_of(p.begin(), p.end(), [&](int64_t i) { return ex[i].text == "same text"; });
  CHECK(holding_dup == 1);
  CHECK(ltk::stratified_split(ex, {0.8, 0.1, 0.1}, 5) == parts);
  CHECK(ltk::stratified_split(ex, {0.8, 0.1, 0.1}, 6) != parts);
  REQUIRE_THROWS_WITH(ltk::parse_ratios("0.8,0.3"), Contains("sum"));
  REQUIRE_THROWS_WITH(ltk::parse_ratios("0.8,x"), Contains("'x'"));
}

TEST_CASE("fortunes: quotes separated by % lines, whitespace folded", "[data][split]") {
  TempDir dir;
  write_file(dir.file("f"), "First  quote\n\tline two\n%\n%\nSecond\n%\n");
  auto q = ltk::read_fortune_file(dir.file("f"), "f");
  REQUIRE(q.size() == 2);
  CHECK(q[0].text == "First quote line two");
  CHECK(q[1].text == "Second");
  CHECK(q[1].line == 5);
}

TEST_CASE("formats: CSV with RFC 4180 quoting, a header and columns by name", "[data][formats]") {
  TempDir dir;
  write_file(dir.file("a.csv"), "id,text,label\r\n1,\"Hello, \"\"world\"\"\",pos\r\n2,\"two\nlines\",neg\r\n3,plain,pos\r\n");
  ltk::ReaderOptions o;
  o.header = true;
  o.text_column = "text";
  o.label_column = "label";
  auto r = ltk::read_examples(dir.file("a.csv"), o);
  REQUIRE(r.examples.size() == 3);
  CHECK(r.examples[0].text == "Hello, \"world\"");
  CHECK(r.examples[0].label == "pos");
  CHECK(r.examples[1].text == "two\nlines");
  CHECK(r.examples[2].line == 5);  // the quoted newline counts
  o.text_column = "txt";
  REQUIRE_THROWS_WITH(ltk::read_examples(dir.file("a.csv"), o), Contains("no column 'txt'") && Contains("'text'"));
  write_file(dir.file("open.csv"), "pos,\"never closed\n");
  REQUIRE_THROWS_WITH(ltk::read_examples(dir.file("open.csv"), ltk::ReaderOptions{}), Contains("open.csv:1") && Contains("never closed"));
  ltk::ReaderOptions by_index;
  by_index.format = "tsv";
  by_index.label_column = "2";
  by_index.text_column = "0";
  write_file(dir.file("cols.tsv"), "some text\tx\tlab\n");
  auto t = ltk::read_examples(dir.file("cols.tsv"), by_index);
  CHECK(t.examples[0].label == "lab");
  CHECK(t.examples[0].text == "some text");
  // A column named with non-ASCII bytes is a name (::isdigit on a negative char was undefined), and
  // an index beyond any row is an error, not an exception from std::stoll.
  o.text_column = "\xC2\xB2";
  REQUIRE_THROWS_WITH(ltk::read_examples(dir.file("a.csv"), o), Contains("no column '\xC2\xB2'"));
  by_index.text_column = "99999999999999999999";
  REQUIRE_THROWS_WITH(ltk::read_examples(dir.file("cols.tsv"), by_index), Contains("too large"));
}

TEST_CASE("limits: a line longer than the readers take is refused naming its file and line, in every format",
          "[data][formats][limits]") {
  ltk::test::TempDir dir;
  const std::string big(ltk::kMaxLineBytes + 1, 'w');
  for (std::string format : {"tsv", "csv", "jsonl"}) {
    INFO(format);
    std::string path = dir.file("big." + format);
    std::string first = format == "jsonl" ? "{\"text\": \"ok\", \"label\": \"a\"}\n" : format == "csv" ? "a,ok\n" : "a\tok\n";
    ltk::test::write_file(path, first + "b" + (format == "csv" ? "," : "\t") + big + "\n");
    ltk::ReaderOptions o;
    o.format = format;
    o.on_bad_row = "skip";  // refused all the same
    CHECK_THROWS_WITH(ltk::read_examples(path, o), Contains(path + ":2: a line of 256 MiB"));
  }
}

TEST_CASE("formats: JSON Lines labels as strings, numbers and lists", "[data][formats]") {
  TempDir dir;
  write_file(dir.file("a.jsonl"), "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": 3}\n"
                                  "{\"text\": \"c\", \"label\": [\"p\", \"q\"]}\n{\"text\": \"d\", \"label\": 0.25}\n");
  auto r = ltk::read_examples(dir.file("a.jsonl"), ltk::ReaderOptions{});
  REQUIRE(r.examples.size() == 4);
  CHECK(r.examples[1].label == "3");
  CHECK(r.examples[2].label == "p,q");
  CHECK(r.examples[3].label == "0.25");
  write_file(dir.file("bad.jsonl"), "{\"text\": \"a\", \"label\": \"x\"}\n{broken\n{\"label\": \"y\"}\n{\"text\": \"ok\", \"label\": \"z\"}\n");
  REQUIRE_THROWS_WITH(ltk::read_examples(dir.file("bad.jsonl"), ltk::ReaderOptions{}),
                      Contains("bad.jsonl:2") && Contains("not valid JSON") && Contains("on_bad_row"));
  ltk::ReaderOptions skip;
  skip.on_bad_row = "skip";
  auto s = ltk::read_examples(dir.file("bad.jsonl"), skip);
  CHECK(s.examples.size() == 2);
  CHECK(s.skipped == 2);
  CHECK_THAT(s.first_skip, Contains("bad.jsonl:2"));
}

TEST_CASE("normalisation: NFKC turns full-width forms half-width, accents can be stripped", "[data][tokenizer]") {
  using V = std::vector<std::string>;
  ltk::BasicTokenizer nfkc(ltk::Normalizer{true, true, false});
  CHECK(nfkc.tokenize("ＡＢＣ１２３，ｘ") == V{"abc123", ",", "x"});
  CHECK(nfkc.tokenize("ﬁne") == V{"fine"});  // ligature
  ltk::BasicTokenizer plain(true);
  CHECK(plain.tokenize("ＡＢＣ") == V{"ａｂｃ"});
  ltk::WhitespaceTokenizer strip(ltk::Normalizer{false, false, true});
  CHECK(strip.tokenize("Café naïve e\xCC\x81") == V{"Cafe", "naive", "e"});  // precomposed and combining
  ltk::CharTokenizer emoji(true);
  CHECK(emoji.tokenize("a😀b") == V{"a", "😀", "b"});
}

namespace {

// The sampler as it was before its batches became flat (EpochBatches, 4 bytes a sample): kept as
// an oracle, because a run resumed across versions must see the same batches, bit for bit.
std::vector<std::vector<int64_t>> sampler_oracle(int64_t size, int64_t bs, bool shuffle, bool drop_last, uint64_t seed,
                                                 const std::vector<int32_t>& classes,
                                                 const std::vector<int32_t>& lengths, int64_t pool_batches,
                                                 int64_t max_tokens, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) order[i] = i;
  if (!classes.empty()) {
    std::map<int32_t, std::vector<int64_t>> groups;
    for (int64_t i = 0; i < size; ++i) groups[classes[i]].push_back(i);
    std::vector<std::vector<int64_t>> by_class;
    for (auto& g : groups) by_class.push_back(g.second);
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 7);
    for (int64_t i = 0; i < size; ++i) {
      const auto& members = by_class[rng() % by_class.size()];
      order[i] = members[rng() % members.size()];
    }
  } else if (shuffle) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1);
    for (int64_t i = size - 1; i > 0; --i) std::swap(order[i], order[rng() % static_cast<uint64_t>(i + 1)]);
  }
  std::vector<std::vector<int64_t>> batches;
  if (lengths.empty()) {
    for (int64_t start = 0; start < size; start += bs) {
      const int64_t end = std::min(size, start + bs);
      if (drop_last && end - start < bs) break;
      batches.emplace_back(order.begin() + start, order.begin() + end);
    }
    return batches;
  }
  const int64_t pool = pool_batches > 0 ? pool_batches * bs : size;
  for (int64_t start = 0; start < size; start += pool) {
    auto first = order.begin() + start, last = order.begin() + std::min(size, start + pool);
    if (pool_batches > 0) std::stable_sort(first, last, [&](int64_t a, int64_t b) { return lengths[a] < lengths[b]; });
    std::vector<int64_t> current;
    int64_t longest = 0;
    for (auto it = first; it != last; ++it) {
      const int64_t len = std::max<int64_t>(lengths[*it], 1);
      if (static_cast<int64_t>(current.size()) >= bs ||
          (max_tokens > 0 && !current.empty() &&
           std::max(longest, len) * static_cast<int64_t>(current.size() + 1) > max_tokens)) {
        batches.push_back(std::move(current));
        current.clear();
        longest = 0;
      }
      current.push_back(*it);
      longest = std::max(longest, len);
    }
    if (!current.empty() && !(drop_last && static_cast<int64_t>(current.size()) < bs && max_tokens == 0))
      batches.push_back(std::move(current));
  }
  if (shuffle && pool_batches > 0) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 3);
    for (size_t i = batches.size(); i > 1; --i) std::swap(batches[i - 1], batches[rng() % i]);
  }
  return batches;
}

}  // namespace

TEST_CASE("sampler: flat batches equal the earlier sampler's, for every mode", "[data][sampler]") {
  std::mt19937 rng(11);
  std::vector<int32_t> lengths(257), classes(257);
  for (auto& l : lengths) l = static_cast<int32_t>(rng() % 90);
  for (auto& c : classes) c = static_cast<int32_t>(rng() % 5 == 0 ? 3 : rng() % 2);
  for (int64_t size : {0, 1, 31, 257})
    for (int64_t bs : {1, 7, 32})
      for (int mode = 0; mode < 16; ++mode) {
        const bool shuffle = mode & 1, drop_last = mode & 2, balanced = mode & 4, by_length = mode & 8;
        for (int64_t pool : {0, 3})
          for (int64_t max_tokens : {0, 150}) {
            if (!by_length && (pool || max_tokens)) continue;
            CAPTURE(size, bs, shuffle, drop_last, balanced, by_length, pool, max_tokens);
            const std::vector<int32_t> c(classes.begin(), classes.begin() + size),
                l(lengths.begin(), lengths.begin() + size);
            ltk::BatchSampler s(size, bs, shuffle, drop_last, 5);
            if (balanced) s.set_balanced(c);
            if (by_length) s.set_length_batching(l, pool, max_tokens);
            for (int64_t epoch : {1, 2}) {
              const auto want = sampler_oracle(size, bs, shuffle, drop_last, 5, balanced ? c : std::vector<int32_t>{},
                                               by_length ? l : std::vector<int32_t>{}, pool, max_tokens, epoch);
              const auto got = s.epoch(epoch);
              REQUIRE(got.size() == static_cast<int64_t>(want.size()));
              for (size_t b = 0; b < want.size(); ++b) REQUIRE(got[static_cast<int64_t>(b)] == want[b]);
            }
            const auto first = sampler_oracle(size, bs, shuffle, drop_last, 5, balanced ? c : std::vector<int32_t>{},
                                              by_length ? l : std::vector<int32_t>{}, pool, max_tokens, 1);
            CHECK(s.batches_per_epoch() == static_cast<int64_t>(first.size()));
          }
      }
}

TEST_CASE("sampler: length bucketing and max-tokens batching are seeded, cover every sample and pad less",
          "[data][sampler]") {
  std::mt19937 rng(3);
  std::vector<int64_t> lengths(1000);
  for (auto& l : lengths) l = 1 + static_cast<int64_t>(rng() % 200);
  const std::vector<int32_t> lengths32(lengths.begin(), lengths.end());
  auto padded = [&](const ltk::EpochBatches& batches) {
    int64_t total = 0;
    for (const auto& b : batches) {
      int64_t longest = 0;
      for (int64_t i : b) longest = std::max(longest, lengths[i]);
      total += longest * static_cast<int64_t>(b.size());
    }
    return total;
  };
  ltk::BatchSampler plain(1000, 32, true, false, 9);
  ltk::BatchSampler bucketed(1000, 32, true, false, 9);
  bucketed.set_length_batching(lengths32, 20, 0);
  auto e1 = bucketed.epoch(1);
  ltk::BatchSampler same_seed(1000, 32, true, false, 9);  // a second sampler: the seed decides
  same_seed.set_length_batching(lengths32, 20, 0);
  CHECK(e1 == same_seed.epoch(1));
  CHECK(e1 != bucketed.epoch(2));
  std::set<int64_t> seen;
  for (const auto& b : e1) {
    CHECK(b.size() <= 32);
    seen.insert(b.begin(), b.end());
  }
  CHECK(seen.size() == 1000);
  CHECK(padded(e1) < padded(plain.epoch(1)) * 7 / 10);  // far less padding
  ltk::BatchSampler capped(1000, 64, true, false, 9);
  capped.set_length_batching(lengths32, 10, 2000);
  int64_t count = 0;
  for (const auto& b : capped.epoch(1)) {
    int64_t longest = 0;
    for (int64_t i : b) longest = std::max(longest, lengths[i]);
    CHECK((longest * static_cast<int64_t>(b.size()) <= 2000 || b.size() == 1));
    CHECK(b.size() <= 64u);
    count += static_cast<int64_t>(b.size());
  }
  CHECK(count == 1000);
  // The token cap needs more batches than the batch size alone (1000 / 64 -> 16).
  CHECK(capped.batches_per_epoch() > 16);
}

TEST_CASE("jieba: segmentation identical to python3-jieba's lcut(HMM=False)", "[data][tokenizer][jieba]") {
  std::vector<std::string> texts = {
      "我来到北京清华大学", "他来到了网易杭研大厦", "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
      "工信处女干事每月经过下属科室都要亲口交代24口交换机等技术性器件的安装工作",
      "结婚的和尚未结婚的", "我们中出了一个叛徒", "Python是一门编程语言，PyTorch 1.13 很好用！",
      "今天的温度是25.5度，湿度80%", "C++和C#都是语言；e-mail地址是abc_def@example.com",
      "“引号”与《书名号》以及（括号）", "ＡＢＣ全角字母１２３", "一九四九年十月一日", "",
      "   空格   之间  ", "iPhone 15 Pro Max售价7999元", "人工智能和机器学习是热门方向",
      "长江大桥上的南京市长江大桥", "乒乓球拍卖完了", "研究生命的起源", "他说的确实在理"};
  // A corpus generated here, the same on every machine (no corpus package needed).
  for (const auto& line : ltk::test::generated_corpus(300, 7, /*cjk_share=*/0.9)) texts.push_back(line);
  ltk::JiebaTokenizer jieba(ltk::kDefaultJiebaDict, ltk::Normalizer{false, false, false});
  CHECK(jieba.words() > 300000);
  std::string out;
  for (const auto& t : texts) {
    auto tokens = jieba.tokenize(t);
    out += t + "\t";
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? "\x01" : "") + tokens[i];
    out += "\n";
  }
  TempDir dir;
  write_file(dir.file("cases.txt"), out);
  std::string cmd = "/usr/bin/python3 '" LTK_SOURCE_DIR "/tests/metrics/check_jieba.py' '" + dir.file("cases.txt") +
                    "' > '" + dir.file("out.txt") + "' 2>&1";
  int status = std::system(cmd.c_str());
  std::string result = ltk::test::read_text(dir.file("out.txt"));
  INFO(result);
  CHECK(status == 0);
  CHECK_THAT(result, Contains(std::to_string(texts.size()) + " of " + std::to_string(texts.size()) + " lines identical"));
  write_file(dir.file("bad.txt"), "词 12\n坏行\n");
  REQUIRE_THROWS_WITH(ltk::JiebaTokenizer(dir.file("bad.txt"), ltk::Normalizer{}), Contains("bad.txt:2"));
  // Found by fuzz-jieba_dict: frequencies whose sum passes int64 (signed overflow), and negative ones.
  write_file(dir.file("huge.txt"), "甲 7953708281833659506\n乙 7953708281833659506\n");
  REQUIRE_THROWS_WITH(ltk::JiebaTokenizer(dir.file("huge.txt"), ltk::Normalizer{}),
                      Contains("huge.txt:2") && Contains("sum past"));
  write_file(dir.file("negative.txt"), "甲 5\n乙 -3\n");
  REQUIRE_THROWS_WITH(ltk::JiebaTokenizer(dir.file("negative.txt"), ltk::Normalizer{}),
                      Contains("negative.txt:2") && Contains("negative"));
}

TEST_CASE("jieba: a word listed twice keeps its last frequency and a dictionary outgrows its first table",
          "[data][tokenizer][jieba]") {
  TempDir dir;
  // As python3-jieba: a word of frequency 0 is no word (counted as one, 甲乙丙 would win over three
  // single characters), and a later line sets a word's frequency again (甲乙 at 10 would win).
  write_file(dir.file("zero.txt"), "甲乙丙 0\n甲 1\n乙 1\n丙 1\n");
  CHECK(ltk::JiebaTokenizer(dir.file("zero.txt"), ltk::Normalizer{}).tokenize("甲乙丙") ==
        std::vector<std::string>{"甲", "乙", "丙"});
  write_file(dir.file("twice.txt"), "甲乙 10\n甲乙丙 0\n丙 5\n甲 1\n乙 1\n");
  CHECK(ltk::JiebaTokenizer(dir.file("twice.txt"), ltk::Normalizer{}).tokenize("甲乙丙") ==
        std::vector<std::string>{"甲乙", "丙"});
  write_file(dir.file("twice.txt"), "甲乙 10\n甲乙丙 0\n丙 5\n甲 1\n乙 1\n甲乙 0\n");
  CHECK(ltk::JiebaTokenizer(dir.file("twice.txt"), ltk::Normalizer{}).tokenize("甲乙丙") ==
        std::vector<std::string>{"甲", "乙", "丙"});
  // One line of a 600-character word: its prefixes outgrow the table sized for two lines.
  std::string word;
  for (int i = 0; i < 600; ++i) word += i % 2 ? "乙" : "甲";
  write_file(dir.file("long.txt"), word + " 3\n甲 1\n");
  ltk::JiebaTokenizer long_word(dir.file("long.txt"), ltk::Normalizer{});
  CHECK(long_word.tokenize(word + "甲") == std::vector<std::string>{word, "甲"});
}

TEST_CASE("wordpiece: special tokens kept whole, NUL and bad bytes dropped, CRLF vocabularies, continuations",
          "[data][tokenizer][wordpiece]") {
  TempDir dir;
  write_file(dir.file("vocab.txt"),
             "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\n##\r\nun\r\n##believ\r\n##able\r\nthe\r\n!\r\nthe\r\n");
  ltk::WordPieceTokenizer wp(dir.file("vocab.txt"), true);
  CHECK(wp.vocab_size() == 11);  // "the" listed twice
  const std::string text = std::string("The [MASK] is un") + '\0' + "believable!\xFF [CLS] [FOO]";
  CHECK(wp.tokenize(text) == std::vector<std::string>{"the", "[MASK]", "[UNK]", "un", "##believ", "##able", "!",
                                                      "[CLS]", "[UNK]", "[UNK]", "[UNK]"});
  CHECK(wp.tokenize("") == std::vector<std::string>{});
  CHECK(wp.tokenize("[MASK]") == std::vector<std::string>{"[MASK]"});
}

TEST_CASE("wordpiece: identical to Hugging Face's BertNormalizer + BertPreTokenizer + WordPiece", "[data][tokenizer][wordpiece]") {
  std::vector<std::string> texts = {"Hello, World! unbelievable",
                                    "Café naïve résumé — Ünïcödé",
                                    "The quick brown fox jumps over the lazy dog.",
                                    "我爱北京天安门，PyTorch很好用！",
                                    "e-mail: abc_def@example.com (2024)",
                                    "tabs\tand  spaces\u3000ideographic",
                                    "ＡＢＣ full-width",
                                    "don't stop-believing...",
                                    "a\u0301 combining",
                                    "xylophone7 unknown-digits 7 77",
                                    "ascii\x01"
                                    "controls\x7f"
                                    "dropped\x0b"
                                    "vt\x0c"
                                    "ff\tend",
                                    "plain ascii only, no accent",
                                    "supercalifragilisticexpialidociousandmuchmuchmuchlongerthanahundredcharacterswitho"
                                    "utanybreakatallforthewordpiecelimittest",
                                    ""};
  // A corpus generated here, the same on every machine (no corpus package needed).
  for (const auto& line : ltk::test::generated_corpus(400, 11, /*cjk_share=*/0.2)) texts.push_back(line);
  // A vocabulary from the texts: specials, frequent words, every character alone and as "##"
  // continuation (but no digit 7, to exercise [UNK]), and a few common suffixes.
  ltk::BasicTokenizer basic(ltk::Normalizer{true, false, true});
  std::map<std::string, int> counts;
  std::set<std::string> chars;
  for (const auto& t : texts)
    for (const auto& w : basic.tokenize(t)) {
      counts[w]++;
      size_t i = 0;
      while (i < w.size()) {
        size_t start = i;
        ltk::utf8::next(w, i);
        chars.insert(w.substr(start, i - start));
      }
    }
  std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n##ing\n##ed\n##s\n##ly\n##able\n";
  for (const auto& [w, n] : counts)
    if (n >= 3 && w.find('7') == std::string::npos) vocab += w + "\n";
  for (const auto& c : chars)
    if (c != "7") vocab += c + "\n##" + c + "\n";
  TempDir dir;
  write_file(dir.file("vocab.txt"), vocab);
  std::string lines;
  for (const auto& t : texts) lines += t + "\n";
  lines.pop_back();
  write_file(dir.file("lines.txt"), lines);
  ltk::WordPieceTokenizer wp(dir.file("vocab.txt"), true);
  std::string ours;
  for (size_t k = 0; k < texts.size(); ++k) {
    auto tokens = wp.tokenize(texts[k]);
    for (size_t i = 0; i < tokens.size(); ++i) ours += (i ? "\x01" : "") + tokens[i];
    if (k + 1 < texts.size()) ours += "\n";
  }
  std::string cmd = "cd '" LTK_SOURCE_DIR "/tests/parity' && node hf_wordpiece.mjs '" + dir.file("vocab.txt") + "' '" +
                    dir.file("lines.txt") + "' 1 > '" + dir.file("hf.txt") + "' 2> '" + dir.file("hf.err") + "'";
  int status = std::system(cmd.c_str());
  INFO(ltk::test::read_text(dir.file("hf.err")));
  REQUIRE(status == 0);
  std::string theirs = ltk::test::read_text(dir.file("hf.txt"));
  std::istringstream a(ours), b(theirs);
  std::string la, lb;
  int line = 0, same = 0;
  while (std::getline(a, la)) {
    std::getline(b, lb);
    ++line;
    INFO("line " << line << ": " << texts[static_cast<size_t>(line - 1)]);
    CHECK(la == lb);
    same += la == lb;
  }
  CHECK(line == static_cast<int>(texts.size()));
  CHECK(same == line);
  CHECK_FALSE(std::getline(b, lb));  // and Hugging Face wrote no extra line
  CHECK_THAT(ours, Contains("[UNK]") && Contains("##"));
  REQUIRE_THROWS_WITH(ltk::WordPieceTokenizer(dir.file("lines.txt"), true), Contains("[UNK]"));
}

TEST_CASE("sentencepiece: unigram and bpe models trained on a split - pieces cover the text, CJK and emoji included",
          "[data][tokenizer][sentencepiece]") {
  std::string why;
  INFO(why);
  REQUIRE(ltk::sentencepiece_available(&why));
  TempDir dir;
  std::vector<ltk::Example> ex;
  std::mt19937 rng(3);
  const std::vector<std::string> words = {"goal", "match", "team", "bread", "cheese", "linux", "kernel",
                                          "中文", "分词", "\xf0\x9f\x99\x82", "caf\xc3\xa9"};
  for (int i = 0; i < 200; ++i) {
    std::string text;
    for (int k = 0, n = 3 + static_cast<int>(rng() % 5); k < n; ++k) text += (k ? " " : "") + words[rng() % words.size()];
    ex.push_back({"x", i == 0 ? "Goal  MATCH\nline two" : text, i + 1});
  }
  for (std::string type : {"unigram", "bpe"}) {
    ltk::TokenizerConfig tc;
    tc.type = "sentencepiece";
    tc.vocab_size = 40;
    tc.model_type = type;
    tc.character_coverage = 1.0;
    ltk::train_sentencepiece(ex, tc, dir.file(type + ".model"), 1);
    REQUIRE(std::filesystem::exists(dir.file(type + ".model")));
    CHECK_FALSE(std::filesystem::exists(dir.file(type + ".train.txt")));  // the input file is removed
    tc.dict = dir.file(type + ".model");
    auto tok = ltk::make_tokenizer(tc);
    auto pieces = tok->tokenize("Goal match \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82 kernel");
    std::string joined;
    for (const auto& p : pieces) joined += p;
    // U+2581 marks where a word starts; the text is lowercased first.
    std::string expected = "\xe2\x96\x81goal\xe2\x96\x81match\xe2\x96\x81\xe4\xb8\xad\xe6\x96\x87\xe2\x96\x81\xf0\x9f\x99\x82\xe2\x96\x81kernel";
    CHECK(joined == expected);
    CHECK(pieces.size() >= 5);
    CHECK(tok->tokenize("").empty());
    // Long texts need a bigger buffer than the first guess.
    std::string longer;
    for (int i = 0; i < 2000; ++i) longer += "goal \xe4\xb8\xad ";
    CHECK(tok->tokenize(longer).size() >= 2000);
  }
  ltk::TokenizerConfig missing;
  missing.type = "sentencepiece";
  missing.dict = dir.file("none.model");
  REQUIRE_THROWS_WITH(ltk::make_tokenizer(missing), Contains("none.model"));
  missing.dict = "";
  REQUIRE_THROWS_WITH(ltk::make_tokenizer(missing), Contains("data.tokenizer.dict"));
  ltk::test::write_file(dir.file("junk.model"), "not a model");
  missing.dict = dir.file("junk.model");
  REQUIRE_THROWS_WITH(ltk::make_tokenizer(missing), Contains("junk.model"));
}

TEST_CASE("long texts as windows: starts, [CLS]/[SEP] per window, texts kept apart, the same on every thread count",
          "[data][windows]") {
  CHECK(ltk::window_starts(40, 16, 4) == std::vector<int64_t>{0, 12, 24});
  CHECK(ltk::window_starts(16, 16, 4) == std::vector<int64_t>{0});
  CHECK(ltk::window_starts(0, 16, 0) == std::vector<int64_t>{0});
  CHECK(ltk::window_starts(17, 16, 0) == std::vector<int64_t>{0, 16});
  CHECK_THROWS_WITH(ltk::window_starts(10, 4, 4), Contains("data.window_overlap"));
  ltk::test::TempDir dir;
  ltk::test::write_file(dir.file("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\nb\nc\nd\ne\nf\ng\nh\ni\nj\n");
  auto vocab = ltk::Vocabulary::load_wordpiece(dir.file("vocab.txt"));
  ltk::WordPieceTokenizer tok(dir.file("vocab.txt"), true);
  ltk::DataConfig dc;
  dc.special_tokens = true;
  dc.max_len = 6;  // windows of 4 pieces between [CLS] and [SEP]
  dc.long_text = "window";
  dc.window_overlap = 1;
  dc.window_pool = "max";
  auto opts = ltk::encode_options(dc, vocab);
  auto labels = ltk::LabelMap::from_labels({"x", "y"});
  auto targets = ltk::class_targets(labels);
  // a..j are ids 4..13.
  std::vector<ltk::Example> ex = {{"y", "a b c d e f g h i j", 1, ""}, {"x", "a b", 2, ""}, {"y", "a b c d e", 3, ""}};
  auto d = ltk::encode_examples(ex, "w", tok, vocab, &targets, opts);
  auto ids = [&](int64_t i) { return std::vector<int32_t>(d.tokens(i), d.tokens(i) + d.length(i)); };
  REQUIRE(d.windowed());
  CHECK(d.window_pool() == "max");
  CHECK(d.num_texts() == 3);
  CHECK(d.size() == 3 + 1 + 2);
  CHECK(d.text_windows(0) == 3);
  CHECK(d.text_windows(1) == 1);
  CHECK(d.text_windows(2) == 2);
  CHECK(d.texts_windowed() == 2);
  CHECK(ids(0) == std::vector<int32_t>{2, 4, 5, 6, 7, 3});
  CHECK(ids(1) == std::vector<int32_t>{2, 7, 8, 9, 10, 3});
  CHECK(ids(2) == std::vector<int32_t>{2, 10, 11, 12, 13, 3});
  CHECK(ids(3) == std::vector<int32_t>{2, 4, 5, 3});
  CHECK(ids(4) == std::vector<int32_t>{2, 4, 5, 6, 7, 3});
  CHECK(ids(5) == std::vector<int32_t>{2, 7, 8, 3});
  for (int64_t i = 0; i < d.size(); ++i) CHECK_FALSE(d.truncated(i));  // a window loses nothing
  CHECK(d.text_sample(2) == 4);
  CHECK(d.label(d.text_sample(0)) == 1);  // every window carries its text's label
  CHECK(d.label(2) == 1);
  CHECK(d.source_line(5) == 3);
  CHECK_THAT(d.windows_summary(), Contains("3 texts, 2 of them cut into 5 windows"));
  // Pooling, column by column: max and mean; a dataset without windows is left as it is.
  auto outputs = torch::tensor({1., 5., 3., 2., 0., 9., 7., 7., -1., 4., 6., 0.}).view({6, 2});
  auto pooled = ltk::pool_windows(outputs, d);
  CHECK(torch::equal(pooled, torch::tensor({3., 9., 7., 7., 6., 4.}).view({3, 2})));
  ltk::TextDataset mean;
  mean.set_windowing("mean");
  for (int64_t t = 0; t < d.num_texts(); ++t) {
    mean.begin_text();
    for (int64_t w = 0; w < d.text_windows(t); ++w) mean.add(ids(d.text_sample(t) + w), 1, {}, 0, t + 1);
  }
  CHECK(torch::allclose(ltk::pool_windows(outputs, mean),
                        torch::tensor({4. / 3, 16. / 3, 7., 7., 2.5, 2.}).view({3, 2})));
  ltk::TextDataset plain;
  for (int64_t i = 0; i < 6; ++i) plain.add({1}, 1, {}, 0, i + 1);
  CHECK(torch::equal(ltk::pool_windows(outputs, plain), outputs));
  // Slices encoded on several threads give the same windows and texts as one thread.
  ltk::DataConfig wc;
  wc.max_len = 5;
  wc.long_text = "window";
  wc.window_overlap = 2;
  std::vector<ltk::Example> many;
  std::mt19937 rng(3);
  for (int i = 0; i < 9000; ++i) {
    std::string text;
    for (int k = 0, n = static_cast<int>(rng() % 14); k < n; ++k)
      text += std::string(1, static_cast<char>('a' + rng() % 10)) + " ";
    many.push_back({i % 2 ? "x" : "y", text.empty() ? "a" : text, i + 1, ""});
  }
  ltk::WhitespaceTokenizer ws(false);
  auto v2 = ltk::Vocabulary::build(ltk::count_tokens(many, ws), 1, 0);
  auto one = ltk::encode_options(wc, v2), four = one;
  four.threads = 4;
  auto a = ltk::encode_examples(many, "m", ws, v2, &targets, one),
       b = ltk::encode_examples(many, "m", ws, v2, &targets, four);
  auto [v3, c] = ltk::build_vocab_and_encode(many, "m", ws, 1, 0, &targets, four);
  REQUIRE(a.size() == b.size());
  REQUIRE(a.num_texts() == 9000);
  CHECK(a.texts_windowed() > 1000);
  for (const ltk::TextDataset* other : {&b, &c}) {
    REQUIRE(other->windowed());
    REQUIRE(other->num_texts() == a.num_texts());
    REQUIRE(other->size() == a.size());
    bool same = true;
    for (int64_t t = 0; t < a.num_texts(); ++t) same = same && other->text_sample(t) == a.text_sample(t);
    for (int64_t i = 0; i < a.size(); ++i)
      same = same &&
             std::equal(a.tokens(i), a.tokens(i) + a.length(i), other->tokens(i), other->tokens(i) + other->length(i));
    CHECK(same);
  }
}

TEST_CASE("bert inputs: CLS text SEP, pairs truncated longest first, token types from the collate", "[data]") {
  ltk::test::TempDir dir;
  ltk::test::write_file(dir.file("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\nb\nc\nd\ne\nf\ng\n");
  auto vocab = ltk::Vocabulary::load_wordpiece(dir.file("vocab.txt"));
  ltk::WordPieceTokenizer tok(dir.file("vocab.txt"), true);
  ltk::DataConfig dc;
  dc.special_tokens = true;
  dc.max_len = 6;
  auto opts = ltk::encode_options(dc, vocab);
  CHECK(opts.cls_id == 2);
  CHECK(opts.sep_id == 3);
  // Single texts: max_len counts [CLS] and [SEP].
  std::vector<ltk::Example> singles = {{"", "a b c d e f g", 1, ""}, {"", "a", 2, ""}, {"", "zz", 3, ""}};
  auto d = ltk::encode_examples(singles, "s", tok, vocab, nullptr, opts);
  auto ids = [&](const ltk::TextDataset& data, int64_t i) {
    return std::vector<int32_t>(data.tokens(i), data.tokens(i) + data.length(i));
  };
  CHECK(ids(d, 0) == std::vector<int32_t>{2, 4, 5, 6, 7, 3});
  CHECK(d.full_length(0) == 9);
  CHECK(d.truncated(0));
  CHECK(ids(d, 1) == std::vector<int32_t>{2, 4, 3});
  CHECK(ids(d, 2) == std::vector<int32_t>{2, 1, 3});  // an unknown word is [UNK], inside the vocabulary
  CHECK_FALSE(d.has_pairs());
  // Pairs: Hugging Face's longest_first (the longer loses its tail; at a tie the second first).
  std::vector<int32_t> a = {1, 2, 3, 4, 5}, b = {6, 7};
  ltk::truncate_pair(a, b, 5);
  CHECK(a == std::vector<int32_t>{1, 2, 3});
  CHECK(b == std::vector<int32_t>{6, 7});
  a = {1, 2, 3};
  b = {6, 7, 8};
  ltk::truncate_pair(a, b, 3);  // a tie: the odd one goes to the second text (the fast tokenizers' rule)
  CHECK(a == std::vector<int32_t>{1});
  CHECK(b == std::vector<int32_t>{6, 7});
  a = {1, 2, 3, 4, 5, 6};
  b = {7};
  ltk::truncate_pair(a, b, 4);  // the shorter keeps all it has when the longer leaves room
  CHECK(a == std::vector<int32_t>{1, 2, 3});
  CHECK(b == std::vector<int32_t>{7});
  for (int64_t budget : {0, -1}) {  // nothing fits: both empty, never a pop from an empty vector
    a = {1, 2};
    b = {3};
    ltk::truncate_pair(a, b, budget);
    CHECK(a.empty());
    CHECK(b.empty());
  }
  dc.max_len = 8;
  dc.text_pair_column = "2";
  opts = ltk::encode_options(dc, vocab);
  REQUIRE(opts.pairs);
  // A pair run given a single text: an error naming the line, not a silent single-text input.
  REQUIRE_THROWS_WITH(ltk::encode_examples({{"", "a", 7, ""}}, "p", tok, vocab, nullptr, opts),
                      Contains("p:7: no second text"));
  std::vector<ltk::Example> pairs = {{"", "a b c d", 1, "e f g"}, {"", "a", 2, "b"}};
  auto p = ltk::encode_examples(pairs, "p", tok, vocab, nullptr, opts);
  REQUIRE(p.has_pairs());
  CHECK(ids(p, 0) == std::vector<int32_t>{2, 4, 5, 6, 3, 8, 9, 3});  // 4 + 3 pieces into 5: "a b c" + "e f"
  CHECK(p.second_start(0) == 5);
  CHECK(ids(p, 1) == std::vector<int32_t>{2, 4, 3, 5, 3});
  auto batch = ltk::PadCollate()(p, {1, 0});
  REQUIRE(batch.token_types.defined());
  CHECK(torch::equal(batch.token_types[0], torch::tensor({0, 0, 0, 1, 1, 0, 0, 0}, torch::kLong)));
  CHECK(torch::equal(batch.token_types[1], torch::tensor({0, 0, 0, 0, 0, 1, 1, 1}, torch::kLong)));
  dc.text_pair_column.clear();
  // A vocabulary whose [PAD] is not id 0 pads with its own id.
  ltk::test::write_file(dir.file("v2.txt"), "[UNK]\n[CLS]\n[SEP]\n[PAD]\na\n");
  auto v2 = ltk::Vocabulary::load_wordpiece(dir.file("v2.txt"));
  ltk::WordPieceTokenizer tok2(dir.file("v2.txt"), true);
  auto d2 = ltk::encode_examples({{"", "a", 1, ""}, {"", "a a a", 2, ""}}, "s", tok2, v2, nullptr,
                                 ltk::encode_options(dc, v2));
  auto b2 = ltk::PadCollate()(d2, {0, 1});
  CHECK(torch::equal(b2.ids[0], torch::tensor({1, 4, 2, 3, 3}, torch::kLong)));
  // Without [CLS]/[SEP] in the vocabulary, special tokens are an error.
  ltk::test::write_file(dir.file("v3.txt"), "[PAD]\n[UNK]\na\n");
  REQUIRE_THROWS_WITH(ltk::encode_options(dc, ltk::Vocabulary::load_wordpiece(dir.file("v3.txt"))), Contains("[CLS]"));
}

TEST_CASE("wordpiece: casing, accents and CJK splitting follow tokenizer_config.json's flags", "[data]") {
  ltk::test::TempDir dir;
  ltk::test::write_file(dir.file("vocab.txt"), "[UNK]\ncafe\ncafé\nCafé\n中\n国\n中国\n");
  CHECK(ltk::WordPieceTokenizer(dir.file("vocab.txt"), true).tokenize("Café") == std::vector<std::string>{"cafe"});
  CHECK(ltk::WordPieceTokenizer(dir.file("vocab.txt"), false).tokenize("Café") == std::vector<std::string>{"Café"});
  CHECK(ltk::WordPieceTokenizer(dir.file("vocab.txt"), false, true).tokenize("café") == std::vector<std::string>{"cafe"});
  CHECK(ltk::WordPieceTokenizer(dir.file("vocab.txt"), true, false, true).tokenize("中国") ==
        std::vector<std::string>{"中", "国"});
  CHECK(ltk::WordPieceTokenizer(dir.file("vocab.txt"), true, false, false).tokenize("中国") ==
        std::vector<std::string>{"中国"});
}

TEST_CASE("formats: a second text column or field makes sentence pairs", "[data]") {
  ltk::test::TempDir dir;
  ltk::test::write_file(dir.file("p.tsv"), "label\tq\td\nyes\tis it\tit is\nno\tx\t\n");
  ltk::ReaderOptions o;
  o.header = true;
  o.label_column = "label";
  o.text_column = "q";
  o.text_pair_column = "d";
  o.on_bad_row = "skip";
  auto r = ltk::read_examples(dir.file("p.tsv"), o);
  REQUIRE(r.examples.size() == 1);
  CHECK(r.examples[0].text_pair == "it is");
  CHECK(r.skipped == 1);
  CHECK_THAT(r.first_skip, Contains("empty second text"));
  ltk::test::write_file(dir.file("p.jsonl"), R"({"label": "yes", "text": "a", "other": "b"})" "\n");
  ltk::ReaderOptions j;
  j.text_pair_field = "other";
  auto rj = ltk::read_examples(dir.file("p.jsonl"), j);
  CHECK(rj.examples.at(0).text_pair == "b");
  j.text_pair_field = "missing";
  REQUIRE_THROWS_WITH(ltk::read_examples(dir.file("p.jsonl"), j), Contains("data.text_pair_field"));
}

TEST_CASE("n-grams: word n-grams, then scikit-learn's char_wb n-grams marked by a leading space", "[data][ngrams]") {
  using V = std::vector<std::string>;
  auto terms = [](ltk::NgramRanges r, const std::string& text) {
    ltk::Normalizer n{true, false, false};
    return ltk::NgramTokenizer(std::make_unique<ltk::WhitespaceTokenizer>(n), n, r).tokenize(text);
  };
  CHECK(terms({1, 2, 0, 0}, "The cat  SAT") == V{"the", "cat", "sat", "the cat", "cat sat"});
  CHECK(terms({2, 3, 0, 0}, "a b") == V{"a b"});  // n-grams longer than the text: none
  CHECK(terms({1, 2, 0, 0}, "") == V{});
  // " ab " (4 code points): 2-grams " a", "ab", "b ", 3-grams " ab", "ab ", the 4-gram " ab ";
  // n = 5 would be the whole word again: skipped, as scikit-learn skips it.
  CHECK(terms({0, 0, 2, 5}, "ab") == V{"  a", " ab", " b ", "  ab", " ab ", "  ab "});
  // A one-letter word: " a" and "a ", then " a " once (n = 3 and 4 are the whole word).
  CHECK(terms({0, 0, 2, 4}, "a") == V{"  a", " a ", "  a "});
  // Code points, not bytes; words split at any whitespace; both kinds in one list.
  CHECK(terms({1, 1, 2, 2}, "\xC3\xA9t\xC3\xA9\t\xE4\xB8\xAD") ==
        V{"\xC3\xA9t\xC3\xA9", "\xE4\xB8\xAD", "  \xC3\xA9", " \xC3\xA9t", " t\xC3\xA9", " \xC3\xA9 ", "  \xE4\xB8\xAD",
          " \xE4\xB8\xAD "});
  CHECK(ltk::is_char_term("  a"));
  CHECK_FALSE(ltk::is_char_term("a b"));
}

TEST_CASE("n-grams: NgramIds gives tokenize()'s known feature ids in its order - each word's n-grams kept",
          "[data][ngrams]") {
  // The vocabulary of half the terms of some texts: the other half are unknown, as in a real run.
  std::vector<std::string> texts = {"The cat sat on the mat",
                                    "the CAT  sat\ton the cat",
                                    "\xC3\xA9t\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 cat",
                                    "a",
                                    "zyzzyva unheard-of words here",
                                    "",
                                    "   ",
                                    "sat sat sat the mat mat",
                                    "cat\xE3\x80\x80mat\xC2\xA0sat",  // ideographic and no-break spaces
                                    std::string(70, 'q') + " cat " + std::string(70, 'q'),  // not kept
                                    std::string()};
  // 676 distinct words: the kept words' table grows past its first room, and a 300-word cache is
  // dropped after growing.
  for (int i = 0; i < 676; ++i)
    texts.back() +=
        "w" + std::string(1, static_cast<char>('a' + i % 26)) + std::string(1, static_cast<char>('a' + i / 26)) + " ";
  ltk::Normalizer n{true, false, false};
  for (ltk::NgramRanges r : {ltk::NgramRanges{1, 2, 2, 4}, ltk::NgramRanges{0, 0, 1, 3}, ltk::NgramRanges{1, 1, 0, 0},
                             ltk::NgramRanges{1, 2, 2, 5, 64}}) {
    INFO(r.word_min << "-" << r.word_max << " " << r.char_min << "-" << r.char_max << " buckets " << r.buckets);
    ltk::NgramTokenizer tok(std::make_unique<ltk::BasicTokenizer>(n), n, r);
    ltk::TokenCounter counter;
    std::vector<int32_t> scratch_ids;
    for (const std::string& t : texts) {
      auto terms = tok.tokenize(t);
      for (size_t k = 0; k < terms.size(); k += 2) counter.add(terms[k]);
    }
    const ltk::Vocabulary vocab = ltk::Vocabulary::build(counter, 1, 0);
    // What the tokenizer and the vocabulary give, unknown ids left out, as a multiset.
    auto expected = [&](const std::string& t) {
      std::string scratch;
      std::vector<std::string_view> views;
      tok.tokenize(t, scratch, views);
      std::vector<int32_t> ids;
      vocab.append_ids(views, ids);
      ids.erase(std::remove_if(ids.begin(), ids.end(), [](int32_t id) { return id < ltk::Vocabulary::kFirstWordId; }),
                ids.end());
      return ids;
    };
    // A roomy cache, one that holds two words at most, one of 300 words, and one that holds 8 ids
    // at most (all but the first dropped again and again).
    for (auto [max_words, max_ids] : {std::pair<size_t, size_t>{size_t{1} << 16, size_t{1} << 22},
                                      {2, size_t{1} << 22},
                                      {300, size_t{1} << 22},
                                      {size_t{1} << 16, 8}}) {
      ltk::NgramIds ids(tok, vocab, max_words, max_ids);
      int64_t known = 0;
      for (int pass = 0; pass < 3; ++pass)  // the second and third passes from the kept words
        for (const std::string& t : texts) {
          INFO(t << " pass " << pass << " max_words " << max_words);
          std::vector<int32_t> got{-7};  // cleared first
          ids.ids(t, got);
          CHECK(got == expected(t));  // in tokenize()'s order: float32 scores are summed in it
          known += static_cast<int64_t>(got.size());
        }
      CHECK(known > 0);
      // Each word looked up once (the two 70-byte words each time); the small caches miss more.
      const bool roomy = max_words > 300 && max_ids > 8;
      if (r.chars() && roomy) CHECK(ids.misses() * 3 <= ids.lookups() + 3 * 2 * 2);
      if (r.chars() && !roomy) CHECK(ids.misses() * 2 > ids.lookups());
    }
  }
}

TEST_CASE("n-grams: features chosen by document frequency, counts are document frequencies", "[data][ngrams]") {
  std::vector<ltk::Example> ex;
  for (const char* text : {"a a b", "a c", "a b d", "e"}) ex.push_back(ltk::Example("x", text, 0));
  ltk::Normalizer n{true, false, false};
  ltk::NgramTokenizer tok(std::make_unique<ltk::WhitespaceTokenizer>(n), n, {1, 1, 0, 0});
  auto build = [&](ltk::FeatureSelection s) {
    return ltk::build_features_and_encode(ex, "mem", tok, s, nullptr, ltk::EncodeOptions{});
  };
  auto [all, data] = build({1, 1.0, 0});
  REQUIRE(all.size() == 2 + 5);
  CHECK(all.token(2) == "a");  // df 3, then b (2), then c, d, e (1) by byte order
  CHECK(all.count(2) == 3);    // "a" is twice in the first text: counted once
  CHECK(all.token(3) == "b");
  CHECK(all.token(4) == "c");
  CHECK(data.length(0) == 3);  // every occurrence is kept: tf is counted from them
  auto [common, d2] = build({2, 1.0, 0});
  CHECK(common.size() == 2 + 2);  // a, b
  CHECK(d2.tokens(3)[0] == ltk::Vocabulary::kUnkId);  // "e" is unknown now
  auto [no_a, d3] = build({1, 0.5, 0});  // a is in 3 of 4 texts > 0.5
  CHECK_FALSE(no_a.contains("a"));
  CHECK(no_a.contains("b"));
  auto [top, d4] = build({1, 1.0, 2});  // the two most frequent in all: a (4), b (2)
  CHECK(top.size() == 4);
  CHECK(top.contains("a"));
  CHECK(top.contains("b"));
}

namespace {

std::string perturb(const std::string& name, const std::string& text, uint64_t seed = 13, int64_t sample = 0,
                    const ltk::Vocabulary* vocab = nullptr) {
  auto selected = ltk::select_perturbations(name);
  REQUIRE(selected.size() == 1);
  auto rng = ltk::perturbation_rng(seed, name, sample);
  return selected[0]->apply(text, rng, ltk::PerturbContext{vocab});
}

}  // namespace

TEST_CASE("stress perturbations: each does what its name says, on fixed inputs", "[data][stress]") {
  CHECK(perturb("upper", "Hello, wörld 中文!") == "HELLO, WÖRLD 中文!");
  CHECK(perturb("lower", "Hello, WÖRLD!") == "hello, wörld!");
  CHECK(perturb("title", "hELLO wörld, 'quoted' text") == "Hello Wörld, 'Quoted' Text");
  CHECK(perturb("no_punctuation", "Hi, there! (yes) 你好，世界。") == "Hi there yes 你好世界");
  CHECK(perturb("double_punctuation", "Hi, there!") == "Hi,, there!!");
  CHECK(perturb("exclamation", "Hi") == "Hi!!!");
  CHECK(perturb("first_half", "one two  three four five") == "one two  three");
  CHECK(perturb("second_half", "one two  three four five") == "four five");
  CHECK(perturb("first_half", "中文分词") == "中文");
  CHECK(perturb("second_half", "中文分词") == "分词");
  CHECK(perturb("full_width", "AI 模型 v2!") == "ＡＩ\u3000模型\u3000ｖ２！");
  CHECK(perturb("half_width", "ＡＩ\u3000模型ｖ２！") == "AI 模型v2!");
  CHECK(perturb("full_width", "no Chinese here") == "no Chinese here");  // only where there are CJK characters
  CHECK(perturb("traditional", "简体中文的汉字") == "簡體中文的漢字");
  CHECK(perturb("traditional", "plain text") == "plain text");
  // whitespace: the words stay, each gap becomes two spaces, a tab or a newline.
  const std::string w = perturb("whitespace", "a b c d e f g h");
  CHECK(ltk::WhitespaceTokenizer(false).tokenize(w) == ltk::WhitespaceTokenizer(false).tokenize("a b c d e f g h"));
  CHECK(w != "a b c d e f g h");
  for (char c : w) CHECK((std::isalpha(static_cast<unsigned char>(c)) || c == ' ' || c == '\t' || c == '\n'));
}

TEST_CASE("stress perturbations: seeded typos and unknown words touch 10% of the words", "[data][stress]") {
  std::string text;
  for (int i = 0; i < 40; ++i) text += (i ? " " : "") + std::string("word") + char('a' + i % 26);
  const auto before = ltk::WhitespaceTokenizer(false).tokenize(text);
  for (uint64_t seed : {1, 2, 3}) {
    const std::string t = perturb("typos", text, seed);
    CHECK(t == perturb("typos", text, seed));  // deterministic for a seed
    const auto after = ltk::WhitespaceTokenizer(false).tokenize(t);
    REQUIRE(after.size() == before.size());
    int changed = 0;
    for (size_t i = 0; i < before.size(); ++i) {
      if (after[i] == before[i]) continue;
      ++changed;
      const auto a = before[i], b = after[i];
      const auto diff = static_cast<int>(b.size()) - static_cast<int>(a.size());
      CHECK(std::abs(diff) <= 1);  // one deletion, duplication or swap
      if (diff == 0) {
        std::string x = a, y = b;
        std::sort(x.begin(), x.end());
        std::sort(y.begin(), y.end());
        CHECK(x == y);
      }
    }
    CHECK(changed <= 4);  // 4 of 40 chosen; a swap of two equal letters changes nothing
    CHECK(changed >= 1);
  }
  CHECK(perturb("typos", text, 1) != perturb("typos", text, 2));
  CHECK(perturb("typos", text, 1, 0) != perturb("typos", text, 1, 1));  // and for a sample

  ltk::TokenCounter counter;
  for (const auto& t : before) counter.add(t);
  auto vocab = ltk::Vocabulary::build(counter, 1, 0);
  const auto after = ltk::WhitespaceTokenizer(false).tokenize(perturb("unknown_words", text, 7, 0, &vocab));
  REQUIRE(after.size() == before.size());
  int replaced = 0;
  for (size_t i = 0; i < before.size(); ++i)
    if (after[i] != before[i]) {
      ++replaced;
      CHECK_FALSE(vocab.contains(after[i]));
      CHECK(after[i].size() >= 5);
      CHECK(after[i].size() <= 8);
    }
  CHECK(replaced == 4);
  CHECK(perturb("typos", "") == "");
  CHECK(perturb("unknown_words", "") == "");
  // Chinese has no spaces: each ideograph counts as a word, so a sentence is not replaced whole.
  const std::string zh = "今天天气很好我们一起去公园散步吧朋友们快来";  // 21 ideographs: 2 or 3 replaced
  const std::string made = perturb("unknown_words", zh, 5);
  int ideographs = 0, letters = 0;
  for (size_t i = 0; i < made.size();) {
    char32_t c = ltk::utf8::next(made, i);
    ideographs += ltk::is_cjk_ideograph(c);
    letters += c >= U'a' && c <= U'z';
  }
  CHECK((ideographs == 18 || ideographs == 19));
  CHECK(letters >= 10);
}

TEST_CASE("stress perturbations: names and groups select, an unknown name is an error", "[data][stress]") {
  CHECK(ltk::select_perturbations("all").size() == ltk::perturbations().size());
  CHECK(ltk::select_perturbations("case").size() == 3);
  auto two = ltk::select_perturbations("typos, case");
  REQUIRE(two.size() == 4);
  CHECK(two[0]->name == "upper");  // registry order
  CHECK(two[3]->name == "typos");
  REQUIRE_THROWS_WITH(ltk::select_perturbations("typo"), Contains("did you mean 'typos'"));
}

TEST_CASE("encode: on several threads, the same vocabulary, ids, labels and first error as on one", "[data][vocab]") {
  std::vector<ltk::Example> ex;
  std::mt19937 rng(9);
  for (int i = 0; i < 9000; ++i) {  // enough for 4 slices of 2048
    std::string text;
    for (int k = 0, n = static_cast<int>(rng() % 9); k <= n; ++k) text += "w" + std::to_string(rng() % 500) + " ";
    ex.push_back({i % 3 ? "x" : "y", text, i + 1});
  }
  ltk::WhitespaceTokenizer tok(false);
  auto labels = ltk::LabelMap::from_labels({"x", "y"});
  auto targets = ltk::class_targets(labels);
  auto same = [](const ltk::TextDataset& a, const ltk::TextDataset& b) {
    REQUIRE(a.size() == b.size());
    REQUIRE(a.total_tokens() == b.total_tokens());
    for (int64_t i = 0; i < a.size(); ++i) {
      REQUIRE(std::vector<int32_t>(a.tokens(i), a.tokens(i) + a.length(i)) ==
              std::vector<int32_t>(b.tokens(i), b.tokens(i) + b.length(i)));
      REQUIRE(a.label(i) == b.label(i));
      REQUIRE(a.source_line(i) == b.source_line(i));
      REQUIRE(a.full_length(i) == b.full_length(i));
    }
  };
  ltk::EncodeOptions one{4, "tail"}, many = one;
  many.threads = 4;
  auto [v1, d1] = ltk::build_vocab_and_encode(ex, "m", tok, 2, 0, &targets, one);
  auto [v4, d4] = ltk::build_vocab_and_encode(ex, "m", tok, 2, 0, &targets, many);
  REQUIRE(v1.size() == v4.size());
  for (int32_t i = 0; i < v1.size(); ++i) REQUIRE(v1.token(i) == v4.token(i));
  same(d1, d4);
  CHECK(d4.id_bytes() == static_cast<size_t>(d4.total_tokens()) * 4);
  same(ltk::encode_examples(ex, "m", tok, v1, &targets, one), ltk::encode_examples(ex, "m", tok, v1, &targets, many));
  // Two bad labels in different slices: the error names the first line, as on one thread.
  ex[7000].label = "zz";
  ex[100].label = "qq";
  REQUIRE_THROWS_WITH(ltk::build_vocab_and_encode(ex, "m", tok, 1, 0, &targets, many), Contains("m:101"));
  REQUIRE_THROWS_WITH(ltk::build_vocab_and_encode(ex, "m", tok, 1, 0, &targets, one), Contains("m:101"));
}

TEST_CASE("data: a file read in pieces gives read_examples' examples and lines, whatever the piece size",
          "[data][shards]") {
  TempDir dir;
  // TSV, CSV with quoted line breaks and a header, JSON Lines, with a BOM, CRLF, blank and bad lines.
  std::string tsv = "\xEF\xBB\xBFsport\tgoal match\r\n\nfood\tbread\n";
  for (int i = 0; i < 40; ++i) tsv += (i % 3 ? "tech\tlinux kernel " : "food\tsoup ") + std::to_string(i) + "\n";
  std::string csv = "label,text\n";
  for (int i = 0; i < 40; ++i)
    csv += i % 4 ? "a,\"one, two\nthree \"\"" + std::to_string(i) + "\"\"\"\n"
                 : "b,a 5\" screen " + std::to_string(i) + "\n";  // a stray quote inside a field is a character
  std::string jsonl;
  for (int i = 0; i < 40; ++i)
    jsonl += "{\"label\": \"" + std::string(i % 2 ? "x" : "y") + "\", \"text\": \"t " + std::to_string(i) + "\"}\n";
  ltk::test::write_file(dir.file("a.tsv"), tsv);
  ltk::test::write_file(dir.file("a.csv"), csv);
  ltk::test::write_file(dir.file("a.jsonl"), jsonl);
  for (const char* name : {"a.tsv", "a.csv", "a.jsonl"}) {
    ltk::ReaderOptions o;
    if (std::string(name) == "a.csv") {
      o.header = true;
      o.label_column = "label";
      o.text_column = "text";
    }
    const auto whole = ltk::read_examples(dir.file(name), o).examples;
    for (size_t piece : {size_t{1}, size_t{7}, size_t{64}, size_t{1} << 20}) {
      std::vector<ltk::Example> got;
      const int64_t n = ltk::read_examples_in_pieces(dir.file(name), o, piece, [&](ltk::ReadResult& r) {
        for (auto& e : r.examples) got.push_back(std::move(e));
      });
      INFO(name << " in pieces of " << piece << " bytes");
      REQUIRE(n == static_cast<int64_t>(whole.size()));
      REQUIRE(got.size() == whole.size());
      for (size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].label == whole[i].label);
        CHECK(got[i].text == whole[i].text);
        CHECK(got[i].line == whole[i].line);
      }
    }
  }
  // A bad row's error names its line however the file was cut.
  ltk::test::write_file(dir.file("bad.tsv"), tsv + "no tab here\n");
  ltk::ReaderOptions o;
  REQUIRE_THROWS_WITH(ltk::read_examples_in_pieces(dir.file("bad.tsv"), o, 5, [](ltk::ReadResult&) {}),
                      Contains("bad.tsv:44"));
}
