// ltk-predict: one JSON line per input on stdout, in input order.
// Built twice (apps/CMakeLists.txt): as ltk-predict without LibTorch, which answers linear runs
// itself (ltk/infer/linear_answers.h) and executes ltk-predict-torch for the others, and as that
// LibTorch program (LTK_PREDICT_LIBTORCH, ltk_predict_torch.cpp), which answers every run.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>

#include "app.h"
#include "ltk/core/parallel.h"
#include "ltk/core/strings.h"
#include "ltk/data/utf8.h"
#ifdef LTK_PREDICT_LIBTORCH
#include "ltk/core/runtime.h"
#include "ltk/infer/predictor.h"
#include "ltk/io/run.h"
#else
#include <nlohmann/json.hpp>

#include "ltk/infer/linear_answers.h"
#endif

namespace {

struct Pending {
  int64_t line;
  std::string text;           // the line as read, until parse() makes it the text
  nlohmann::ordered_json id;  // carried through from the input (null: none)
  std::string text_pair;      // a sentence pair's second text (runs trained on pairs)
  std::string error;          // non-empty: the line cannot be scored
};

// std::getline without its unbounded growth: reads one line into `line` keeping at most `max`
// bytes (too_long says the rest was dropped); false at the end of the input.
bool read_line(std::istream& in, std::string& line, size_t max, bool& too_long) {
  line.clear();
  too_long = false;
  std::streambuf* buf = in.rdbuf();
  int c = buf->sbumpc();
  if (c == std::char_traits<char>::eof()) return false;
  for (; c != std::char_traits<char>::eof() && c != '\n'; c = buf->sbumpc()) {
    if (line.size() < max) line.push_back(static_cast<char>(c));
    else too_long = true;
  }
  return true;
}

struct Options {
  std::string format = "plain";  // plain | tsv | jsonl
  std::string text_field = "text";
  std::string id_field = "id";
  std::string pair_field;  // non-empty: the run reads sentence pairs, jsonl input
  int64_t top_k = 0;
  int threads = 1;  // a linear run's slices at once
};

// Turns one input line into a Pending entry; malformed lines get an error, never a crash.
Pending parse_line(std::string_view raw, int64_t line_no, const Options& o) {
  Pending p{line_no, "", nullptr, "", ""};
  std::string_view line = line_no == 1 ? ltk::utf8::strip_bom(raw) : std::string_view(raw);
  size_t bad = ltk::utf8::find_invalid(line);
  if (bad != std::string::npos) {
    p.error = "invalid UTF-8 at byte " + std::to_string(bad);
    return p;
  }
  if (o.format == "jsonl") {
    if (ltk::trim(line).empty()) {
      p.error = "empty line";
      return p;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {  // a syntax error, or a number beyond double's range
      p.error = "not a JSON object";
      return p;
    }
    if (!j.is_object()) {
      p.error = "not a JSON object";
      return p;
    }
    if (j.contains(o.id_field)) p.id = j.at(o.id_field);
    if (!j.contains(o.text_field) || !j.at(o.text_field).is_string()) {
      p.error = "no string field '" + o.text_field + "'";
      return p;
    }
    p.text = std::string(ltk::trim(j.at(o.text_field).get<std::string>()));
    if (!o.pair_field.empty()) {
      if (!j.contains(o.pair_field) || !j.at(o.pair_field).is_string() ||
          ltk::trim(j.at(o.pair_field).get<std::string>()).empty()) {
        p.error = "no non-empty string field '" + o.pair_field + "' (the run reads sentence pairs)";
        return p;
      }
      p.text_pair = std::string(ltk::trim(j.at(o.pair_field).get<std::string>()));
    }
  } else if (o.format == "tsv") {
    // id<TAB>text (a line without a tab is text alone)
    size_t tab = line.find('\t');
    if (tab != std::string_view::npos) {
      p.id = std::string(line.substr(0, tab));
      line = line.substr(tab + 1);
    }
    p.text = std::string(ltk::trim(line));
  } else {
    p.text = std::string(ltk::trim(line));
  }
  if (p.text.empty() && p.error.empty()) p.error = "empty text";
  return p;
}

/// What answers the texts: each valid input's answer as a JSON object's text (masked-LM runs
/// aside, which only the LibTorch build answers).
using AnswerTexts = std::function<std::vector<std::string>(const std::vector<const ltk::infer::TextInput*>&)>;

#ifdef LTK_PREDICT_LIBTORCH
using MaskedLm = const ltk::infer::Predictor*;  // a masked-LM run's predictor, else null
#else
using MaskedLm = const void*;  // none: a linear run is no masked-LM run
#endif

// Answers the pending lines (ltk/infer/predictor.h decides the JSON, as for ltk-serve) and prints
// them in order: "id" first when the input has one, {"error": ..., "line": N} in place of a line
// that cannot be scored.
void flush(const AnswerTexts& answer_texts, MaskedLm masked_lm, std::vector<Pending>& pending, int64_t batch_size,
           const Options& o) {
  // Each line read is parsed here, on o.threads threads (a line read with an error keeps it).
  ltk::parallel_chunks(static_cast<int64_t>(pending.size()), o.threads, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Pending& p = pending[static_cast<size_t>(i)];
      if (p.error.empty()) p = parse_line(p.text, p.line, o);
    }
  });
  std::vector<ltk::infer::TextInput> inputs;
  inputs.reserve(pending.size());
  for (auto& p : pending) inputs.push_back(ltk::infer::TextInput{std::move(p.text), std::move(p.text_pair), p.error});
  std::vector<const ltk::infer::TextInput*> valid;
  for (const auto& in : inputs)
    if (in.error.empty()) valid.push_back(&in);
  auto error_line = [](const Pending& p, const std::string& error, std::string& to) {
    nlohmann::ordered_json j;
    if (!p.id.is_null()) j["id"] = p.id;
    j["error"] = error;
    j["line"] = p.line;
    to += j.dump();
    to += '\n';
  };
#ifdef LTK_PREDICT_LIBTORCH
  if (masked_lm) {  // answers that may be errors of their own (a text without [MASK])
    std::string out;
    const ltk::infer::Predictor& predictor = *masked_lm;
    auto answers = predictor.answer(predictor.encode(valid), std::vector<int64_t>(valid.size(), o.top_k), batch_size);
    size_t row = 0;
    for (auto& p : pending) {
      if (!p.error.empty()) {
        error_line(p, p.error, out);
        continue;
      }
      nlohmann::ordered_json j;
      if (!p.id.is_null()) j["id"] = p.id;
      for (auto& [k, v] : answers[row++].items()) j[k] = std::move(v);
      if (j.contains("error")) j["line"] = p.line;
      out += j.dump();
      out += '\n';
    }
    std::cout << out << std::flush;
    pending.clear();
    return;
  }
#endif
  // The answers' lines, made on o.threads threads in slices of the pending lines, then written in order.
  const auto answers = answer_texts(valid);
  const auto n = static_cast<int64_t>(pending.size());
  const int64_t slices = std::clamp<int64_t>(n / 1024, 1, std::max(o.threads, 1));
  std::vector<std::string> pieces(static_cast<size_t>(slices));
  std::vector<size_t> first_row(static_cast<size_t>(slices) + 1, 0);  // each slice's first answer
  for (int64_t c = 0, i = 0; c < slices; ++c)
    for (; i < n * (c + 1) / slices; ++i)
      first_row[static_cast<size_t>(c) + 1] += pending[static_cast<size_t>(i)].error.empty();
  for (size_t c = 1; c < first_row.size(); ++c) first_row[c] += first_row[c - 1];
  ltk::parallel_chunks(slices, o.threads, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      std::string& piece = pieces[static_cast<size_t>(c)];
      size_t row = first_row[static_cast<size_t>(c)], bytes = 0;
      for (size_t r = row; r < first_row[static_cast<size_t>(c) + 1]; ++r) bytes += answers[r].size() + 1;
      piece.reserve(bytes);
      for (int64_t i = n * c / slices; i < n * (c + 1) / slices; ++i) {
        const Pending& p = pending[static_cast<size_t>(i)];
        if (!p.error.empty()) {
          error_line(p, p.error, piece);
          continue;
        }
        const std::string& answer = answers[row++];  // a JSON object: "id" goes first inside it
        if (p.id.is_null()) {
          piece += answer;
        } else {
          piece += "{\"id\":";
          piece += p.id.dump();
          piece += ',';
          piece.append(answer, 1, std::string::npos);
        }
        piece += '\n';
      }
    }
  });
  for (const std::string& piece : pieces) std::cout.write(piece.data(), static_cast<std::streamsize>(piece.size()));
  std::cout.flush();
  pending.clear();
}

#ifndef LTK_PREDICT_LIBTORCH
/// Replaces this process with ltk-predict-torch (beside this program, or in ../lib/ltk where it is
/// installed), given this process's arguments; returns only by throwing.
[[noreturn]] void run_libtorch_build(char** argv, const std::string& why = "") {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<std::string> tried;
  for (const fs::path& dir : {exe.parent_path(), exe.parent_path().parent_path() / "lib" / "ltk"}) {
    const std::string path = (dir / "ltk-predict-torch").string();
    tried.push_back(path);
    if (ec || !fs::exists(path)) continue;
    std::cout.flush();
    execv(path.c_str(), argv);
    const int error = errno;
    throw ltk::Error("cannot run " + path + ": " + std::strerror(error));
  }
  throw ltk::Error(why.empty() ? "ltk-predict answers runs other than linear ones with ltk-predict-torch, which is not "
                                 "installed (" +
                                     ltk::join(tried, ", ") + ")"
                               : why + " (and ltk-predict-torch, which would say more, is not installed: " +
                                     ltk::join(tried, ", ") + ")");
}
#endif

}  // namespace

int main(int argc, char** argv) {
#ifndef LTK_PREDICT_LIBTORCH
  for (int i = 1; i < argc; ++i)  // LibTorch's version: ltk-predict-torch's to print
    if (std::string_view(argv[i]) == "--version")
      return ltk::app::guarded_main("ltk-predict", argv, [&]() -> int { run_libtorch_build(argv); });
#endif
  return ltk::app::guarded_main("ltk-predict", argv, [&] {
    cxxopts::Options options("ltk-predict",
                             "Classify texts from --input or stdin. Prints one JSON object per input line, in order:\n"
                             "  multiclass and binary: {\"label\": ..., \"score\": ..., \"scores\": {label: probability, ...}}\n"
                             "  multilabel: {\"labels\": [...], \"scores\": {...}};  regression: {\"value\": ...}\n"
                             "  mlm (a pretraining run): {\"masks\": [{\"position\": i, \"top\": [{\"token\": ..., \"score\": ...}]}]}\n"
                             "  for each [MASK] of the text (--top-k pieces, default 5)\n"
                             "with \"id\" first when the input has one, \"top\" with --top-k, and\n"
                             "{\"error\": ..., \"line\": N} in place of a line that cannot be scored.");
    options.add_options()("r,run", "run directory made by ltk-train", cxxopts::value<std::string>())(
        "i,input", "input file (default: stdin)", cxxopts::value<std::string>())(
        "format", "plain (a text per line), tsv (id<TAB>text) or jsonl (objects with text and id fields)",
        cxxopts::value<std::string>()->default_value("plain"))("text-field", "jsonl: the field holding the text",
                                                               cxxopts::value<std::string>()->default_value("text"))(
        "id-field", "jsonl: the field carried through as \"id\"", cxxopts::value<std::string>()->default_value("id"))(
        "pair-field",
        "jsonl: the second text of a sentence pair, for a run trained on pairs (default: the run's "
        "data.text_pair_field, else \"text_pair\")",
        cxxopts::value<std::string>()->default_value(""))("top-k", "also list the k most probable labels (\"top\")",
                                                          cxxopts::value<int64_t>()->default_value("0"))(
        "checkpoint", "best, last, step-N, or a weights file", cxxopts::value<std::string>()->default_value("best"))(
        "device", "override the run's device (cpu, cuda, cuda:N)", cxxopts::value<std::string>()->default_value(""))(
        "threads",
        "threads (0 = all cores): LibTorch's (default 1), or for a linear run ltk's own, which tokenise, "
        "score and write the texts in parallel (default: all cores)",
        cxxopts::value<int64_t>())(
        "batch-size",
        "texts per batch (default 256; 1 when reading a terminal or pipe, so that each line is "
        "answered at once)",
        cxxopts::value<int64_t>()->default_value("0"))(
        "max-line-bytes",
        "a longer input line is answered with an error and skipped, so that memory stays "
        "bounded whatever the input",
        cxxopts::value<int64_t>()->default_value("16777216"))("h,help", "show this help");
    bool help = false;
    auto args = ltk::app::parse(options, argc, argv, help);
    if (help) return 0;
    if (!args.count("run")) throw ltk::UsageError("--run is required");
    Options o;
    o.format = args["format"].as<std::string>();
    if (o.format != "plain" && o.format != "tsv" && o.format != "jsonl")
      throw ltk::UsageError("--format must be plain, tsv or jsonl (got '" + o.format + "')");
    o.text_field = args["text-field"].as<std::string>();
    o.id_field = args["id-field"].as<std::string>();
    o.top_k = args["top-k"].as<int64_t>();
    o.pair_field = args["pair-field"].as<std::string>();
    if (o.top_k < 0) throw ltk::UsageError("--top-k must be >= 0");
    const int64_t requested = args.count("threads") ? args["threads"].as<int64_t>() : 1;
    if (requested < 0) throw ltk::UsageError("--threads must be >= 0 (0 = all cores)");
    // A linear run's own threads (no OpenMP pool spinning on a busy core): all cores unless given.
    const int own_threads = args.count("threads") && requested > 0 ? static_cast<int>(requested) : ltk::usable_cores();
    const std::string run_dir = args["run"].as<std::string>(), checkpoint = args["checkpoint"].as<std::string>(),
                      device = args["device"].as<std::string>();
#ifdef LTK_PREDICT_LIBTORCH
    // LibTorch's pools start with more than one thread (their workers spin between parallel ops)
    // only for a model that runs on them: a linear run's texts go through ltk's own threads.
    ltk::apply_threads(1);
    ltk::infer::Predictor predictor(ltk::load_run(run_dir, checkpoint, device));
    o.threads = predictor.scores_rows() ? own_threads : ltk::apply_threads(requested);
    const auto& data = predictor.run().config.data;
    if (!data.text_pair_column.empty() || !data.text_pair_field.empty()) {
      if (o.format != "jsonl")
        throw ltk::UsageError("this run reads sentence pairs: give them as --format jsonl, {\"text\": ..., \"" +
                              (data.text_pair_field.empty() ? std::string("text_pair") : data.text_pair_field) + "\": ...}");
      if (o.pair_field.empty()) o.pair_field = data.text_pair_field.empty() ? "text_pair" : data.text_pair_field;
    } else if (!o.pair_field.empty()) {
      throw ltk::UsageError("--pair-field: this run was not trained on sentence pairs");
    }
    MaskedLm masked_lm = predictor.masked_lm() ? &predictor : nullptr;
#else
    // A linear run on the CPU is answered here; any other run, and a linear run this cannot read
    // (whose problem ltk-predict-torch then reports), by ltk-predict-torch.
    std::unique_ptr<ltk::infer::LinearAnswers> linear;
    std::string why;
    if (device.empty() || device == "cpu") {
      try {
        linear = ltk::infer::LinearAnswers::open(run_dir, checkpoint);
      } catch (const std::exception& e) {
        why = e.what();
      }
    }
    if (!linear) run_libtorch_build(argv, why);
    o.threads = own_threads;
    if (!o.pair_field.empty()) throw ltk::UsageError("--pair-field: this run was not trained on sentence pairs");
    MaskedLm masked_lm = nullptr;
#endif
    std::ifstream file;
    std::istream* in = &std::cin;
    bool streaming = false;
    if (args.count("input")) {
      std::string path = args["input"].as<std::string>();
      struct stat st {};
      if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        throw ltk::DataError("--input " + path + " is a directory, not a file of texts");
      file.open(path, std::ios::binary);
      if (!file) throw ltk::DataError("cannot open input " + path);
      in = &file;
      streaming = stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode);  // a FIFO, /dev/stdin
    } else {
      struct stat st {};
      streaming = fstat(STDIN_FILENO, &st) != 0 || !S_ISREG(st.st_mode);
    }
    int64_t batch_size = args["batch-size"].as<int64_t>();
    if (batch_size < 0) throw ltk::UsageError("--batch-size must be >= 1");
    if (batch_size == 0) batch_size = streaming ? 1 : 256;
    // A file is read 16 batches at a time: predict() sorts those texts by length into batches, so
    // that little padding is computed (textcnn on fortunes_en: 3.7x faster than batches of 256 in
    // file order). Streaming input is answered batch by batch (line by line by default).
    const int64_t flush_at = streaming ? batch_size : std::max(batch_size, std::min<int64_t>(batch_size, 4096) * 16);
#ifdef LTK_PREDICT_LIBTORCH
    const AnswerTexts answer_texts = [&](const std::vector<const ltk::infer::TextInput*>& valid) {
      return predictor.answer_texts(valid, o.top_k, batch_size, o.threads);
    };
#else
    const AnswerTexts answer_texts = [&](const std::vector<const ltk::infer::TextInput*>& valid) {
      return linear->answer_texts(valid, o.top_k, o.threads);
    };
#endif
    std::vector<Pending> pending;
    std::string line;
    int64_t line_no = 0;
    const int64_t max_line = args["max-line-bytes"].as<int64_t>();
    if (max_line < 1) throw ltk::UsageError("--max-line-bytes must be >= 1");
    bool too_long = false;
    while (read_line(*in, line, static_cast<size_t>(max_line), too_long)) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (too_long) {
        Pending p{line_no, "", nullptr, "", "longer than --max-line-bytes " + std::to_string(max_line) + "; skipped"};
        pending.push_back(std::move(p));
      } else {
        pending.push_back(Pending{line_no, std::move(line), nullptr, "", ""});  // parsed by flush()
      }
      if (static_cast<int64_t>(pending.size()) >= flush_at) flush(answer_texts, masked_lm, pending, batch_size, o);
    }
    if (!pending.empty()) flush(answer_texts, masked_lm, pending, batch_size, o);
    return 0;
  });
}
