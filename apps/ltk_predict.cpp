// ltk-predict: one JSON line per input on stdout, in input order.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iostream>

#include "app.h"
#include "ltk/core/runtime.h"
#include "ltk/core/strings.h"
#include "ltk/data/utf8.h"
#include "ltk/eval/evaluator.h"
#include "ltk/io/run.h"

namespace {

struct Pending {
  int64_t line;
  std::string text;
  nlohmann::ordered_json id;  // carried through from the input (null: none)
  std::string text_pair;      // a sentence pair's second text (runs trained on pairs)
  std::string error;          // non-empty: the line cannot be scored
};

struct Options {
  std::string format = "plain";  // plain | tsv | jsonl
  std::string text_field = "text";
  std::string id_field = "id";
  std::string pair_field;  // non-empty: the run reads sentence pairs, jsonl input
  int64_t top_k = 0;
};

// Turns one input line into a Pending entry; malformed lines get an error, never a crash.
Pending parse_line(const std::string& raw, int64_t line_no, const Options& o) {
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
    } catch (const nlohmann::json::parse_error&) {
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

// An mlm run fills each [MASK]: {"masks": [{"position": i, "top": [{"token": ..., "score": ...}]}]}.
void fill_masks(const ltk::LoadedRun& run, std::vector<Pending>& pending, const Options& o) {
  const int64_t mask_id = run.vocab.special_id("[MASK]");
  const int64_t k = std::min<int64_t>(o.top_k > 0 ? o.top_k : 5, run.vocab.size());
  ltk::EvalModeGuard eval_mode(*run.model);
  torch::NoGradGuard no_grad;
  for (auto& p : pending) {
    nlohmann::ordered_json j;
    if (!p.id.is_null()) j["id"] = p.id;
    if (p.error.empty()) {
      auto data = ltk::encode_examples({ltk::Example{"", p.text, p.line, ""}}, "input", *run.tokenizer, run.vocab,
                                       nullptr, ltk::encode_options(run.config.data, run.vocab));
      ltk::Batch batch = ltk::PadCollate()(data, {0});
      auto masked = batch.ids.eq(mask_id);
      if (!masked.any().item<bool>()) p.error = "no [MASK] in the text";
      else {
        batch.labels = torch::where(masked, torch::zeros_like(batch.ids), torch::full_like(batch.ids, -100));
        auto probs = run.model->forward(batch.to(run.device)).softmax(-1).to(torch::kCPU);
        auto [values, ids] = probs.topk(k, -1);
        auto positions = masked[0].nonzero().flatten();
        nlohmann::ordered_json masks = nlohmann::ordered_json::array();
        for (int64_t m = 0; m < positions.size(0); ++m) {
          nlohmann::ordered_json top = nlohmann::ordered_json::array();
          for (int64_t r = 0; r < k; ++r)
            top.push_back({{"token", run.vocab.token(static_cast<int32_t>(ids[m][r].item<int64_t>()))},
                           {"score", std::round(values[m][r].item<double>() * 1e6) / 1e6}});
          masks.push_back({{"position", positions[m].item<int64_t>()}, {"top", top}});
        }
        j["masks"] = masks;
      }
    }
    if (!p.error.empty()) {
      j["error"] = p.error;
      j["line"] = p.line;
    }
    std::cout << j.dump() << '\n';
  }
  std::cout << std::flush;
  pending.clear();
}

void flush(const ltk::LoadedRun& run, std::vector<Pending>& pending, int64_t batch_size, const Options& o) {
  if (run.task->token_level()) return fill_masks(run, pending, o);
  std::vector<ltk::Example> examples;
  for (const auto& p : pending)
    if (p.error.empty()) examples.push_back(ltk::Example{"", p.text, p.line, p.text_pair});
  torch::Tensor scores;
  if (!examples.empty()) {
    auto data = run.encode(examples, "input", /*labelled=*/false);
    scores = ltk::predict(*run.model, *run.task, data, batch_size, run.device, run.vocab.size()).scores;
  }
  int64_t row = 0;
  for (const auto& p : pending) {
    nlohmann::ordered_json j;
    if (!p.id.is_null()) j["id"] = p.id;
    if (!p.error.empty()) {
      j["error"] = p.error;
      j["line"] = p.line;
    } else {
      auto r = scores[row++].contiguous();
      auto prediction = run.task->prediction(r.data_ptr<float>());
      for (auto& [k, v] : prediction.items()) j[k] = v;
      if (o.top_k > 0 && j.contains("scores")) {
        std::vector<std::pair<double, std::string>> ranked;
        for (auto& [label, v] : j["scores"].items()) ranked.emplace_back(v.get<double>(), label);
        std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
        nlohmann::ordered_json top = nlohmann::ordered_json::array();
        for (size_t k = 0; k < ranked.size() && k < static_cast<size_t>(o.top_k); ++k)
          top.push_back({{"label", ranked[k].second}, {"score", ranked[k].first}});
        j["top"] = top;
      }
    }
    std::cout << j.dump() << '\n';
  }
  std::cout << std::flush;
  pending.clear();
}

}  // namespace

int main(int argc, char** argv) {
  return ltk::app::guarded_main("ltk-predict", argv, [&] {
    cxxopts::Options options("ltk-predict",
                             "Classify texts from --input or stdin. Prints one JSON object per input line, in order:\n"
                             "  multiclass and binary: {\"label\": ..., \"score\": ..., \"scores\": {label: probability, ...}}\n"
                             "  multilabel: {\"labels\": [...], \"scores\": {...}};  regression: {\"value\": ...}\n"
                             "  mlm (a pretraining run): {\"masks\": [{\"position\": i, \"top\": [{\"token\": ..., \"score\": ...}]}]}\n"
                             "  for each [MASK] of the text (--top-k pieces, default 5)\n"
                             "with \"id\" first when the input has one, \"top\" with --top-k, and\n"
                             "{\"error\": ..., \"line\": N} in place of a line that cannot be scored.");
    options.add_options()
        ("r,run", "run directory made by ltk-train", cxxopts::value<std::string>())
        ("i,input", "input file (default: stdin)", cxxopts::value<std::string>())
        ("format", "plain (a text per line), tsv (id<TAB>text) or jsonl (objects with text and id fields)",
         cxxopts::value<std::string>()->default_value("plain"))
        ("text-field", "jsonl: the field holding the text", cxxopts::value<std::string>()->default_value("text"))
        ("id-field", "jsonl: the field carried through as \"id\"", cxxopts::value<std::string>()->default_value("id"))
        ("pair-field", "jsonl: the second text of a sentence pair, for a run trained on pairs (default: the run's "
                       "data.text_pair_field, else \"text_pair\")", cxxopts::value<std::string>()->default_value(""))
        ("top-k", "also list the k most probable labels (\"top\")", cxxopts::value<int64_t>()->default_value("0"))
        ("checkpoint", "best, last, step-N, or a weights file", cxxopts::value<std::string>()->default_value("best"))
        ("device", "override the run's device (cpu, cuda, cuda:N)", cxxopts::value<std::string>()->default_value(""))
        ("threads", "LibTorch threads (0 = all cores)", cxxopts::value<int64_t>()->default_value("1"))
        ("batch-size", "texts per batch (default 256; 1 when reading a terminal or pipe, so that each line is "
                       "answered at once)", cxxopts::value<int64_t>()->default_value("0"))
        ("h,help", "show this help");
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
    ltk::apply_threads(args["threads"].as<int64_t>());
    auto run = ltk::load_run(args["run"].as<std::string>(), args["checkpoint"].as<std::string>(),
                             args["device"].as<std::string>());
    const auto& data = run.config.data;
    if (!data.text_pair_column.empty() || !data.text_pair_field.empty()) {
      if (o.format != "jsonl")
        throw ltk::UsageError("this run reads sentence pairs: give them as --format jsonl, {\"text\": ..., \"" +
                              (data.text_pair_field.empty() ? std::string("text_pair") : data.text_pair_field) + "\": ...}");
      if (o.pair_field.empty()) o.pair_field = data.text_pair_field.empty() ? "text_pair" : data.text_pair_field;
    } else if (!o.pair_field.empty()) {
      throw ltk::UsageError("--pair-field: this run was not trained on sentence pairs");
    }
    std::ifstream file;
    std::istream* in = &std::cin;
    bool streaming = false;
    if (args.count("input")) {
      std::string path = args["input"].as<std::string>();
      file.open(path, std::ios::binary);
      if (!file) throw ltk::DataError("cannot open input " + path);
      in = &file;
    } else {
      struct stat st {};
      streaming = fstat(STDIN_FILENO, &st) != 0 || !S_ISREG(st.st_mode);
    }
    int64_t batch_size = args["batch-size"].as<int64_t>();
    if (batch_size < 0) throw ltk::UsageError("--batch-size must be >= 1");
    if (batch_size == 0) batch_size = streaming ? 1 : 256;
    std::vector<Pending> pending;
    std::string line;
    int64_t line_no = 0;
    while (std::getline(*in, line)) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      pending.push_back(parse_line(line, line_no, o));
      if (static_cast<int64_t>(pending.size()) >= batch_size) flush(run, pending, batch_size, o);
    }
    if (!pending.empty()) flush(run, pending, batch_size, o);
    return 0;
  });
}
