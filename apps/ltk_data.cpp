// ltk-data: corpus preparation and inspection.
#include <fmt/format.h>
#include <malloc.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>

#include "app.h"
#include "ltk/config/config.h"
#include "ltk/core/files.h"
#include "ltk/core/log.h"
#include "ltk/core/parallel.h"
#include "ltk/core/strings.h"
#include "ltk/data/dataset.h"
#include "ltk/data/formats.h"
#include "ltk/data/split.h"
#include "ltk/data/tokenizer.h"
#include "ltk/data/wordpiece.h"
#include "ltk/models/linear.h"
#include "ltk/models/load_config.h"
#include "ltk/models/registry.h"
#include "ltk/train/corpus_shards.h"

namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "usage: ltk-data COMMAND [options]\n"
    "commands:\n"
    "  fortunes  build a label<TAB>text corpus from fortune(6) files and split it\n"
    "  split     split a label<TAB>text file: seeded, stratified, duplicates kept together\n"
    "  tokenize  tokenize lines from stdin, print tokens joined by spaces\n"
    "  stats     samples, labels and token lengths of label<TAB>text files\n"
    "  vocab     learn a WordPiece vocab.txt from texts and report its [UNK] rate\n"
    "  encode    tokenise a config's splits once into memory-mapped shards (data.train may name them)\n"
    "run 'ltk-data COMMAND --help' for a command's options\n";

void write_splits(const std::vector<ltk::Example>& all, const std::string& out_dir, const std::string& ratios_text,
                  uint64_t seed) {
  auto ratios = ltk::parse_ratios(ratios_text);
  std::vector<std::string> names = ratios.size() == 3 ? std::vector<std::string>{"train", "valid", "test"}
                                   : ratios.size() == 2 ? std::vector<std::string>{"train", "test"}
                                                        : std::vector<std::string>{};
  for (size_t i = names.size(); i < ratios.size(); ++i) names.push_back("part" + std::to_string(i + 1));
  ltk::SplitReport report;
  auto parts = ltk::stratified_split(all, ratios, seed, &report);
  fs::create_directories(out_dir);
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string path = out_dir + "/" + names[i] + ".tsv";
    ltk::write_tsv(path, all, parts[i]);
    std::cerr << "wrote " << path << ": " << parts[i].size() << " samples\n";
  }
  if (report.duplicate_texts)
    std::cerr << report.duplicate_texts << " duplicate text(s) kept in the split of their first copy ("
              << report.conflicting_duplicates << " with a different label)\n";
}

int cmd_fortunes(int argc, char** argv) {
  cxxopts::Options options("ltk-data fortunes",
                           "Build a corpus from fortune files: label = the file's name, text = one quote with its "
                           "whitespace folded; files with fewer than --min-quotes quotes are dropped.");
  options.add_options()
      ("o,out", "output directory (train.tsv, valid.tsv, test.tsv)", cxxopts::value<std::string>())
      ("min-quotes", "drop files with fewer quotes", cxxopts::value<int64_t>()->default_value("100"))
      ("ratios", "split ratios", cxxopts::value<std::string>()->default_value("0.8,0.1,0.1"))
      ("seed", "split seed", cxxopts::value<uint64_t>()->default_value("13"))
      ("files", "fortune files", cxxopts::value<std::vector<std::string>>())
      ("h,help", "show this help");
  options.parse_positional({"files"});
  options.positional_help("FILE...");
  bool help = false;
  auto args = ltk::app::parse(options, argc, argv, help);
  if (help) return 0;
  if (!args.count("out")) throw ltk::UsageError("--out is required");
  if (!args.count("files")) throw ltk::UsageError("give the fortune files to read");
  std::vector<ltk::Example> all;
  int64_t min_quotes = args["min-quotes"].as<int64_t>();
  for (const auto& path : args["files"].as<std::vector<std::string>>()) {
    std::string label = fs::path(path).filename().string();
    auto quotes = ltk::read_fortune_file(path, label);
    if (static_cast<int64_t>(quotes.size()) < min_quotes) {
      std::cerr << "skip " << label << ": " << quotes.size() << " quotes < " << min_quotes << "\n";
      continue;
    }
    std::cerr << "read " << label << ": " << quotes.size() << " quotes\n";
    all.insert(all.end(), quotes.begin(), quotes.end());
  }
  if (all.empty()) throw ltk::DataError("no fortune file had enough quotes; nothing written");
  write_splits(all, args["out"].as<std::string>(), args["ratios"].as<std::string>(), args["seed"].as<uint64_t>());
  return 0;
}

int cmd_split(int argc, char** argv) {
  cxxopts::Options options("ltk-data split", "Split a label<TAB>text file into train/valid/test files.");
  options.add_options()
      ("i,input", "label<TAB>text file", cxxopts::value<std::string>())
      ("o,out", "output directory", cxxopts::value<std::string>())
      ("ratios", "split ratios (2 parts: train,test; 3: train,valid,test)",
       cxxopts::value<std::string>()->default_value("0.8,0.1,0.1"))
      ("seed", "split seed", cxxopts::value<uint64_t>()->default_value("13"))
      ("h,help", "show this help");
  bool help = false;
  auto args = ltk::app::parse(options, argc, argv, help);
  if (help) return 0;
  if (!args.count("input") || !args.count("out")) throw ltk::UsageError("--input and --out are required");
  write_splits(ltk::read_examples(args["input"].as<std::string>(), ltk::ReaderOptions{}).examples, args["out"].as<std::string>(),
               args["ratios"].as<std::string>(), args["seed"].as<uint64_t>());
  return 0;
}

/// The tokenizer of --config (a run's config.json: the tokenizer file the run keeps beside it, and
/// for a linear model its n-gram terms) or of --tokenizer and its options.
std::unique_ptr<ltk::Tokenizer> tokenizer_from_args(const cxxopts::ParseResult& args) {
  if (args.count("config")) {
    std::string path = args["config"].as<std::string>();
    ltk::Config config = ltk::load_config(path);
    ltk::TokenizerConfig tok = config.data.tokenizer;
    std::string resource = ltk::tokenizer_resource(tok.type);
    auto kept = std::filesystem::path(path).parent_path() / resource;
    if (!resource.empty() && std::filesystem::is_regular_file(kept)) tok.dict = kept.string();
    return ltk::make_run_tokenizer(tok, config.model);
  }
  nlohmann::json section = {{"type", args["tokenizer"].as<std::string>()},
                            {"lowercase", args.count("no-lowercase") == 0}};
  if (args.count("dict") && !args["dict"].as<std::string>().empty()) section["dict"] = args["dict"].as<std::string>();
  if (args.count("nfkc")) section["nfkc"] = true;
  nlohmann::json doc = {{"data", {{"train", "-"}, {"tokenizer", section}}}};
  return ltk::make_tokenizer(ltk::parse_config(doc).data.tokenizer);
}

int cmd_tokenize(int argc, char** argv) {
  cxxopts::Options options("ltk-data tokenize", "Tokenize stdin line by line; tokens joined by single spaces.");
  options.add_options()
      ("c,config", "take data.tokenizer from this experiment config", cxxopts::value<std::string>())
      ("tokenizer", "basic, whitespace, char, jieba, wordpiece or sentencepiece",
       cxxopts::value<std::string>()->default_value("basic"))
      ("dict", "jieba: dict.txt (default: python3-jieba's); wordpiece: vocab.txt; sentencepiece: a .model",
       cxxopts::value<std::string>()->default_value(""))
      ("nfkc", "Unicode NFKC first")
      ("no-lowercase", "keep case")
      ("h,help", "show this help");
  bool help = false;
  auto args = ltk::app::parse(options, argc, argv, help);
  if (help) return 0;
  auto tokenizer = tokenizer_from_args(args);
  // A linear run's terms hold spaces (word n-grams, character n-grams): separated by tabs then.
  const bool terms = dynamic_cast<const ltk::NgramTokenizer*>(tokenizer.get()) != nullptr;
  std::string line, scratch;
  std::vector<std::string_view> tokens;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    tokenizer->tokenize(line, scratch, tokens);
    for (size_t i = 0; i < tokens.size(); ++i) std::cout << (i ? (terms ? "\t" : " ") : "") << tokens[i];
    std::cout << '\n';
  }
  return 0;
}

int cmd_stats(int argc, char** argv) {
  cxxopts::Options options("ltk-data stats", "Samples, label distribution and token-length percentiles.");
  options.add_options()
      ("c,config", "take data.tokenizer from this experiment config", cxxopts::value<std::string>())
      ("tokenizer", "basic, whitespace or char", cxxopts::value<std::string>()->default_value("basic"))
      ("no-lowercase", "keep case")
      ("max-len", "also count samples longer than this", cxxopts::value<int64_t>()->default_value("0"))
      ("vocab", "also report the out-of-vocabulary rate against this vocab.txt (e.g. a run's)",
       cxxopts::value<std::string>())
      ("files", "data files (format by extension)", cxxopts::value<std::vector<std::string>>())
      ("h,help", "show this help");
  options.parse_positional({"files"});
  options.positional_help("FILE...");
  bool help = false;
  auto args = ltk::app::parse(options, argc, argv, help);
  if (help) return 0;
  if (!args.count("files")) throw ltk::UsageError("give at least one label<TAB>text file");
  auto tokenizer = tokenizer_from_args(args);
  int64_t max_len = args["max-len"].as<int64_t>();
  std::optional<ltk::Vocabulary> vocab;
  if (args.count("vocab")) vocab = ltk::Vocabulary::load(args["vocab"].as<std::string>());
  for (const auto& path : args["files"].as<std::vector<std::string>>()) {
    int64_t tokens_total = 0, oov = 0;
    auto examples = ltk::read_examples(path, ltk::ReaderOptions{}).examples;
    std::map<std::string, int64_t> labels;
    std::vector<int64_t> lengths;
    std::string scratch;
    std::vector<std::string_view> tokens;
    for (const auto& e : examples) {
      labels[e.label]++;
      tokenizer->tokenize(e.text, scratch, tokens);
      lengths.push_back(static_cast<int64_t>(tokens.size()));
      if (vocab) {
        tokens_total += static_cast<int64_t>(tokens.size());
        for (auto t : tokens) oov += !vocab->contains(t);
      }
    }
    std::sort(lengths.begin(), lengths.end());
    auto pct = [&](double q) { return lengths[static_cast<size_t>(q * static_cast<double>(lengths.size() - 1))]; };
    std::cout << path << ": " << examples.size() << " samples, " << labels.size() << " labels\n";
    std::cout << "  tokens per sample: min " << lengths.front() << "  p50 " << pct(0.5) << "  p90 " << pct(0.9)
              << "  p99 " << pct(0.99) << "  max " << lengths.back() << "\n";
    if (vocab)
      std::cout << "  out of vocabulary: " << oov << " of " << tokens_total << " tokens ("
                << fmt::format("{:.2f}%", tokens_total ? 100.0 * static_cast<double>(oov) / static_cast<double>(tokens_total) : 0.0)
                << ") against " << args["vocab"].as<std::string>() << " (" << vocab->size() << " entries)\n";
    if (max_len > 0) {
      auto over = lengths.end() - std::upper_bound(lengths.begin(), lengths.end(), max_len);
      std::cout << "  longer than max_len " << max_len << ": " << over << " samples\n";
    }
    for (const auto& [label, n] : labels)
      std::cout << "  " << label << "\t" << n << "\t"
                << fmt::format("{:.1f}%", 100.0 * static_cast<double>(n) / static_cast<double>(examples.size()))
                << "\n";
  }
  return 0;
}

int cmd_vocab(int argc, char** argv) {
  cxxopts::Options options("ltk-data vocab",
                           "Learn a WordPiece vocabulary (BERT's vocab.txt) from texts, and report how well it covers "
                           "them (the [UNK] rate).");
  options.add_options()
      ("tokenizer", "wordpiece (the only kind this command learns)", cxxopts::value<std::string>()->default_value("wordpiece"))
      ("size", "entries in all, the 5 specials included", cxxopts::value<int64_t>()->default_value("8000"))
      ("min-frequency", "pairs seen fewer times are not merged", cxxopts::value<int64_t>()->default_value("2"))
      ("i,input", "text files: .txt is one text per line, others are read as data files (labels ignored)",
       cxxopts::value<std::vector<std::string>>())
      ("format", "input format: auto, text, tsv, csv or jsonl", cxxopts::value<std::string>()->default_value("auto"))
      ("o,out", "the vocab.txt to write", cxxopts::value<std::string>())
      ("no-lowercase", "keep case (a cased vocabulary)")
      ("no-chinese-chars", "do not split CJK ideographs into words of their own")
      ("h,help", "show this help");
  bool help = false;
  auto args = ltk::app::parse(options, argc, argv, help);
  if (help) return 0;
  if (args["tokenizer"].as<std::string>() != "wordpiece")
    throw ltk::UsageError("--tokenizer: only wordpiece vocabularies are learnt here (sentencepiece models are trained by "
                          "ltk-train with data.tokenizer.dict \"\")");
  if (!args.count("input") || !args.count("out")) throw ltk::UsageError("--input and --out are required");
  ltk::WordPieceTrainOptions o;
  o.size = args["size"].as<int64_t>();
  o.min_frequency = args["min-frequency"].as<int64_t>();
  o.lowercase = !args.count("no-lowercase");
  o.chinese_chars = !args.count("no-chinese-chars");
  std::vector<std::string> texts;
  for (const auto& path : args["input"].as<std::vector<std::string>>()) {
    ltk::ReaderOptions r;
    r.require_label = false;
    r.format = args["format"].as<std::string>();
    if (r.format == "auto" && fs::path(path).extension() == ".txt") r.format = "text";
    for (auto& e : ltk::read_examples(path, r).examples) texts.push_back(std::move(e.text));
  }
  auto t0 = std::chrono::steady_clock::now();
  auto vocab = ltk::train_wordpiece(texts, o);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string out;
  for (const auto& p : vocab) out += p + "\n";
  const std::string path = args["out"].as<std::string>();
  ltk::write_file_atomic(path, out);
  // Coverage: the texts tokenised with the new vocabulary.
  ltk::WordPieceTokenizer tok(path, o.lowercase, false, o.chinese_chars);
  int64_t pieces = 0, unk = 0;
  std::string scratch;
  std::vector<std::string_view> tokens;
  for (const auto& t : texts) {
    tok.tokenize(t, scratch, tokens);
    pieces += static_cast<int64_t>(tokens.size());
    for (auto p : tokens) unk += p == "[UNK]";
  }
  std::cerr << fmt::format("wrote {}: {} entries from {} texts in {:.1f}s; the texts make {} pieces, {} of them [UNK] "
                           "({:.3f}%)\n",
                           path, vocab.size(), texts.size(), seconds, pieces, unk,
                           pieces ? 100.0 * static_cast<double>(unk) / static_cast<double>(pieces) : 0.0);
  return 0;
}

int cmd_encode(int argc, char** argv) {
  cxxopts::Options options("ltk-data encode",
                           "Tokenise and numericalise a config's data files once into shards: flat token-id files "
                           "with an index and a manifest (docs/shards.md), which ltk-train reads memory-mapped when "
                           "data.train, data.valid or data.test names OUT/train, OUT/valid, OUT/test. Each file is "
                           "read in pieces: memory stays bounded whatever its size.");
  options.add_options()("config", "the training config whose data, tokenizer and vocabulary settings encode",
                        cxxopts::value<std::string>())("s,set", "override a config key (repeatable)",
                                                       cxxopts::value<std::vector<std::string>>())(
      "split", "train, valid or test (repeatable; default every split the config names)",
      cxxopts::value<std::vector<std::string>>())("out", "the directory the shards go to",
                                                  cxxopts::value<std::string>())(
      "threads", "pieces parsed and tokenised at once, while the next is read (0: every core)",
      cxxopts::value<int>()->default_value("0"))("piece-mb", "MiB of input read and encoded at a time",
                                                 cxxopts::value<int>()->default_value("8"))(
      "overwrite", "replace shards already in OUT")("h,help", "show this help");
  bool help = false;
  auto args = ltk::app::parse(options, argc, argv, help);
  if (help) return 0;
  if (!args.count("config") || !args.count("out")) throw ltk::UsageError("--config and --out are required");
  std::vector<std::string> overrides;
  if (args.count("set")) overrides = args["set"].as<std::vector<std::string>>();
  const ltk::Config config = ltk::load_config(args["config"].as<std::string>(), overrides);
  ltk::EncodeShardsOptions o;
  o.out = args["out"].as<std::string>();
  if (args.count("split")) o.splits = args["split"].as<std::vector<std::string>>();
  const int threads = args["threads"].as<int>();
  if (threads < 0) throw ltk::UsageError("--threads must be 0 (every core) or more");
  o.threads = threads > 0 ? threads : ltk::usable_cores();
  const int piece_mb = args["piece-mb"].as<int>();
  if (piece_mb < 1 || piece_mb > 4096) throw ltk::UsageError("--piece-mb must be in 1..4096");
  o.piece_bytes = static_cast<size_t>(piece_mb) << 20;
  o.overwrite = args.count("overwrite") > 0;
  // Every piece allocates its examples and ids afresh, several MiB each: above glibc's mmap
  // threshold they were mapped and unmapped each time, and every page faulted in again (with
  // memory handed back by trimming). Kept in the heap instead, they are reused: measured 64 -> 87
  // MB/s on 2 cores (403 MB corpus), at 410 MB peak RSS instead of 300. (32 MiB is the largest
  // threshold every glibc takes.)
#ifdef __GLIBC__
  if (mallopt(M_MMAP_THRESHOLD, 32 << 20) != 1 || mallopt(M_TRIM_THRESHOLD, 1 << 30) != 1)
    ltk::log::debug("[encode] mallopt refused the heap thresholds: pieces are mapped afresh each time");
#endif
  for (const auto& r : ltk::encode_shards(config, o)) {
    const double mb = static_cast<double>(r.source_bytes) / 1e6;
    std::cout << fmt::format("{}\t{}\t{} texts\t{} tokens\t{:.1f} MB in {:.2f} s ({:.1f} MB/s){}\n", r.split, r.dir,
                             r.samples, r.tokens, mb, r.seconds, r.seconds > 0 ? mb / r.seconds : 0.0,
                             r.skipped ? fmt::format("\t{} skipped", r.skipped) : "");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return ltk::app::guarded_main("ltk-data", argv, [&] {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "-h" || cmd == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (cmd == "--version") {
      std::cout << ltk::version_line() << std::endl;
      return 0;
    }
    // Each command parses the arguments after its name.
    if (cmd == "fortunes") return cmd_fortunes(argc - 1, argv + 1);
    if (cmd == "split") return cmd_split(argc - 1, argv + 1);
    if (cmd == "tokenize") return cmd_tokenize(argc - 1, argv + 1);
    if (cmd == "stats") return cmd_stats(argc - 1, argv + 1);
    if (cmd == "vocab") return cmd_vocab(argc - 1, argv + 1);
    if (cmd == "encode") return cmd_encode(argc - 1, argv + 1);
    std::cerr << kUsage;
    if (cmd.empty()) throw ltk::UsageError("a command is required");
    throw ltk::UsageError("unknown command '" + cmd + "'" +
                          ltk::did_you_mean(cmd, {"fortunes", "split", "tokenize", "stats", "vocab", "encode"}));
  });
}
