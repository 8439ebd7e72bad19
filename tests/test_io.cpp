// ltk/io: safetensors files, Hugging Face BERT directories in (model.pretrained_dir) and out
// (--export-hf). The directories are made here, in the layouts Hugging Face writes: names with and
// without "bert.", LayerNorm gamma/beta, pre-training heads, safetensors and torch.save's zip.
#include <catch2/catch.hpp>
#include <torch/serialize.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/io/checkpoint.h"
#include "ltk/io/hf.h"
#include "ltk/io/raw_tensors.h"
#include "ltk/io/run.h"
#include "ltk/io/safetensors.h"
#include "ltk/models/bert.h"
#include "ltk/models/registry.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

json tiny_bert_section() {
  return {{"type", "bert"},          {"hidden_size", 8},  {"num_hidden_layers", 2},
          {"num_attention_heads", 2}, {"intermediate_size", 16}, {"max_position_embeddings", 16}};
}

std::shared_ptr<ltk::TextModel> tiny_bert(int64_t vocab, int64_t outputs, json section = tiny_bert_section()) {
  json doc = {{"data", {{"train", "unused.tsv"}, {"max_len", 16}, {"tokenizer", {{"dict", "unused.txt"}}}}},
              {"model", section}};
  ltk::Config config = ltk::parse_config(doc);
  return ltk::build_model(config.model, ltk::ModelContext{vocab, outputs, 0, nullptr});
}

std::string vocab_text(int64_t n) {
  std::string out = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (int64_t i = 5; i < n; ++i) out += "w" + std::to_string(i) + "\n";
  return out;
}

/// A Hugging Face directory holding `model`'s weights under `rename(name)` ("" drops a tensor),
/// plus `extra` tensors; as model.safetensors or (bin) pytorch_model.bin.
void write_hf_dir(const std::string& dir, const ltk::TextModel& model, int64_t vocab, bool bin,
                  const std::function<std::string(const std::string&)>& rename,
                  const std::vector<std::pair<std::string, torch::Tensor>>& extra = {}) {
  std::filesystem::create_directories(dir);
  json config = {{"model_type", "bert"},       {"vocab_size", vocab},          {"hidden_size", 8},
                 {"num_hidden_layers", 2},      {"num_attention_heads", 2},     {"intermediate_size", 16},
                 {"max_position_embeddings", 16}, {"hidden_act", "gelu"},       {"type_vocab_size", 2},
                 {"layer_norm_eps", 1e-12},     {"pad_token_id", 0},            {"hidden_dropout_prob", 0.1},
                 {"attention_probs_dropout_prob", 0.1}, {"classifier_dropout", nullptr}};
  ltk::test::write_file(dir + "/config.json", config.dump(2));
  ltk::test::write_file(dir + "/vocab.txt", vocab_text(vocab));
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model.named_parameters()) {
    std::string n = rename(p.key());
    if (!n.empty()) tensors.emplace_back(n, p.value().detach().clone());
  }
  for (const auto& e : extra) tensors.push_back(e);
  if (!bin) {
    ltk::write_safetensors(dir + "/model.safetensors", tensors);
    return;
  }
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [k, v] : tensors) dict.insert(k, v);
  auto bytes = torch::pickle_save(dict);
  ltk::write_file_atomic(dir + "/pytorch_model.bin", std::string(bytes.begin(), bytes.end()));
}

std::string same(const std::string& n) { return n; }

void require_equal_weights(const ltk::TextModel& a, const ltk::TextModel& b, const std::string& prefix) {
  auto pb = b.named_parameters();
  for (const auto& p : a.named_parameters())
    if (p.key().rfind(prefix, 0) == 0) {
      INFO(p.key());
      REQUIRE(torch::equal(p.value(), pb[p.key()]));
    }
}

std::string raw_safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

}  // namespace

TEST_CASE("safetensors: every dtype round-trips, F16 and BF16 convert to the training dtype", "[io]") {
  ltk::test::TempDir dir;
  auto f32 = torch::randn({3, 4});
  auto f64 = torch::randn({2}, torch::kDouble);
  auto half = torch::tensor({0.5, -2.0, 1024.0}).to(torch::kHalf);
  auto bf16 = torch::tensor({0.25, -3.0}).to(torch::kBFloat16);
  auto ids = torch::arange(5, torch::kLong);
  auto scalar = torch::tensor(7.0);
  ltk::write_safetensors(dir.file("m.safetensors"),
                         {{"a.weight", f32}, {"b", f64}, {"h", half}, {"bf", bf16}, {"ids", ids}, {"s", scalar}},
                         {{"format", "pt"}});
  ltk::SafeTensorsFile file(dir.file("m.safetensors"));
  CHECK(file.names() == std::vector<std::string>{"a.weight", "b", "h", "bf", "ids", "s"});
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.dtype("h") == "F16");
  CHECK(file.shape("a.weight") == std::vector<int64_t>{3, 4});
  CHECK(torch::equal(file.get("a.weight", torch::kFloat), f32));
  CHECK(torch::equal(file.get("b", torch::kDouble), f64));
  CHECK(torch::equal(file.get("h", torch::kFloat), torch::tensor({0.5f, -2.0f, 1024.0f})));
  CHECK(torch::equal(file.get("bf", torch::kFloat), torch::tensor({0.25f, -3.0f})));
  CHECK(torch::equal(file.get("ids", torch::kLong), ids));
  CHECK(file.get("s", torch::kFloat).dim() == 0);
  REQUIRE_THROWS_WITH(file.get("nope", torch::kFloat), Contains("no tensor 'nope'"));
}

TEST_CASE("safetensors: what a half-finished download looks like is a one-line error naming the file", "[io]") {
  ltk::test::TempDir dir;
  const std::string f = dir.file("bad.safetensors");
  auto fails = [&](const std::string& bytes, const std::string& expected) {
    ltk::test::write_file(f, bytes);
    INFO(expected);
    try {
      ltk::SafeTensorsFile file(f);
      FAIL("no error");
    } catch (const ltk::CheckpointError& e) {
      std::string what = e.what();
      CHECK_THAT(what, Contains(f));
      CHECK_THAT(what, Contains(expected));
      CHECK(what.find('\n') == std::string::npos);
    }
  };
  fails("", "too short");
  fails("abc", "too short");
  // A header claiming more bytes than the file holds.
  std::string good = raw_safetensors(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'));
  fails(std::string("\xff\xff\xff\x00\x00\x00\x00\x00", 8) + good.substr(8), "the header claims");
  // Truncated: the data stops before the last tensor ends.
  fails(good.substr(0, good.size() - 3), "truncated");
  fails(raw_safetensors(R"({"x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0')),
        "unknown dtype 'F8_E4M3'");
  fails(raw_safetensors(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
        "8 bytes for shape [3]");
  fails(raw_safetensors("{not json", ""), "not valid JSON");
  fails(raw_safetensors(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})", std::string(8, '\0')),
        "invalid");
  fails(raw_safetensors(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::string(8, '\0')),
        "outside");
  // Dimensions whose product overflows 64 bits (2^32 x 2^32 wraps to 0): refused, not wrapped.
  fails(raw_safetensors(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""),
        "too large");
  // An odd header length puts the data off alignment: still read right (copied, not viewed).
  ltk::write_safetensors(dir.file("ok.safetensors"), {{"a", torch::arange(6, torch::kFloat)}});
  std::string bytes = ltk::test::read_text(dir.file("ok.safetensors"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  std::string odd = raw_safetensors(bytes.substr(8, n) + " ", bytes.substr(8 + n));
  ltk::test::write_file(dir.file("odd.safetensors"), odd);
  CHECK(torch::equal(ltk::SafeTensorsFile(dir.file("odd.safetensors")).get("a", torch::kFloat), torch::arange(6, torch::kFloat)));
}

TEST_CASE("hf: a BERT directory loads from model.safetensors or pytorch_model.bin, in every naming", "[io]") {
  ltk::test::TempDir dir;
  torch::manual_seed(1);
  auto source = tiny_bert(40, 3);
  // Hugging Face's BertModel (no "bert." prefix, no head), with a pre-training head and the
  // position-id buffer, in torch.save's zip format, LayerNorm as gamma/beta (older checkpoints).
  auto bare = [](const std::string& n) {
    if (n.rfind("classifier.", 0) == 0) return std::string();
    std::string s = n.substr(5);  // drop "bert."
    auto at = s.find("LayerNorm.");
    if (at != std::string::npos) s = s.substr(0, at) + (s.substr(at + 10) == "weight" ? "LayerNorm.gamma" : "LayerNorm.beta");
    return s;
  };
  write_hf_dir(dir.file("bin"), *source, 40, true, bare,
               {{"cls.predictions.bias", torch::zeros({40})}, {"embeddings.position_ids", torch::arange(16).unsqueeze(0)}});
  torch::manual_seed(2);
  auto target = tiny_bert(40, 3);
  auto head_before = target->named_parameters()["classifier.weight"].clone();
  auto loaded = ltk::load_hf_bert(*target, dir.file("bin"));
  CHECK(loaded.file == dir.file("bin") + "/pytorch_model.bin");
  CHECK(loaded.ignored == std::vector<std::string>{"cls.predictions.bias", "embeddings.position_ids"});
  CHECK(loaded.initialised == std::vector<std::string>{"classifier.bias", "classifier.weight"});
  require_equal_weights(*source, *target, "bert.");
  CHECK(torch::equal(target->named_parameters()["classifier.weight"], head_before));

  // BertForSequenceClassification as safetensors: everything, the head included.
  write_hf_dir(dir.file("st"), *source, 40, false, same);
  torch::manual_seed(3);
  auto again = tiny_bert(40, 3);
  loaded = ltk::load_hf_bert(*again, dir.file("st"));
  CHECK(loaded.initialised.empty());
  CHECK(loaded.loaded == static_cast<int64_t>(source->named_parameters().size()));
  require_equal_weights(*source, *again, "");

  // Another number of labels: the head starts fresh, the encoder loads.
  auto five = tiny_bert(40, 5);
  loaded = ltk::load_hf_bert(*five, dir.file("st"));
  CHECK(loaded.initialised.size() == 2);
  require_equal_weights(*source, *five, "bert.");
}

TEST_CASE("hf: a missing tensor, an unexpected one and a shape mismatch name the tensor, the shapes and the file",
          "[io]") {
  ltk::test::TempDir dir;
  auto source = tiny_bert(40, 2);
  auto target = tiny_bert(40, 2);
  write_hf_dir(dir.file("missing"), *source, 40, false,
               [](const std::string& n) { return n == "bert.encoder.layer.1.output.dense.weight" ? "" : n; });
  REQUIRE_THROWS_WITH(ltk::load_hf_bert(*target, dir.file("missing")),
                      Contains("missing tensor bert.encoder.layer.1.output.dense.weight [8, 16]") &&
                          Contains(dir.file("missing") + "/model.safetensors"));
  write_hf_dir(dir.file("extra"), *source, 40, false, same, {{"bert.encoder.layer.2.output.dense.weight", torch::zeros({8, 16})}});
  REQUIRE_THROWS_WITH(ltk::load_hf_bert(*target, dir.file("extra")),
                      Contains("unexpected tensor bert.encoder.layer.2.output.dense.weight [8, 16]"));
  auto wide = tiny_bert(40, 2, [] {
    auto s = tiny_bert_section();
    s["intermediate_size"] = 12;
    return s;
  }());
  write_hf_dir(dir.file("shape"), *wide, 40, false, same);
  REQUIRE_THROWS_WITH(ltk::load_hf_bert(*target, dir.file("shape")),
                      Contains("bert.encoder.layer.0.intermediate.dense.weight: the file has [12, 8], the model [16, 8]"));
  std::filesystem::create_directories(dir.file("empty"));
  REQUIRE_THROWS_WITH(ltk::load_hf_bert(*target, dir.file("empty")), Contains("has no model.safetensors or pytorch_model.bin"));
  std::filesystem::create_directories(dir.file("legacy"));
  ltk::test::write_file(dir.file("legacy/pytorch_model.bin"), "\x80\x02legacy pickle");
  REQUIRE_THROWS_WITH(ltk::load_hf_bert(*target, dir.file("legacy")), Contains("not the zip archive"));
}

TEST_CASE("hf: config.json and tokenizer_config.json decide the model and its tokenizer", "[io]") {
  ltk::test::TempDir dir;
  auto source = tiny_bert(40, 2);
  write_hf_dir(dir.file("m"), *source, 40, false, same);
  ltk::test::write_file(dir.file("m/tokenizer_config.json"), R"({"do_lower_case": false, "tokenize_chinese_chars": true})");
  json doc = {{"data", {{"train", "unused.tsv"}}}, {"model", {{"type", "bert"}, {"pretrained_dir", dir.file("m")}}}};
  ltk::Config c = ltk::parse_config(doc);
  CHECK(c.model.options["hidden_size"] == 8);
  CHECK(c.model.options["vocab_size"] == 40);
  CHECK(c.model.options["num_hidden_layers"] == 2);
  CHECK(c.data.tokenizer.type == "wordpiece");
  CHECK(c.data.tokenizer.dict == dir.file("m") + "/vocab.txt");
  CHECK_FALSE(c.data.tokenizer.lowercase);
  CHECK_FALSE(c.data.tokenizer.strip_accents);
  CHECK(c.data.vocab.source == "tokenizer");
  CHECK(c.data.special_tokens);
  CHECK(c.data.max_len == 16);
  // The resolved config stands alone: parsed again it needs no directory.
  json resolved = ltk::to_json(c);
  std::filesystem::remove_all(dir.file("m"));
  ltk::Config again = ltk::parse_config(resolved);
  CHECK(again.model.options == c.model.options);
  CHECK_FALSE(again.data.tokenizer.lowercase);

  // Config keys win over the directory's.
  write_hf_dir(dir.file("m"), *source, 40, false, same);
  doc["data"]["tokenizer"] = {{"lowercase", true}};
  doc["model"]["hidden_dropout_prob"] = 0.0;
  c = ltk::parse_config(doc);
  CHECK(c.data.tokenizer.lowercase);
  CHECK(c.model.options["hidden_dropout_prob"] == 0.0);

  auto fails = [&](const json& d, const std::string& expected) {
    INFO(expected);
    REQUIRE_THROWS_WITH(ltk::parse_config(d), Contains(expected));
  };
  json plain = {{"data", {{"train", "unused.tsv"}}}, {"model", {{"type", "bert"}, {"pretrained_dir", dir.file("none")}}}};
  fails(plain, "is not a directory");
  std::filesystem::create_directories(dir.file("none"));
  fails(plain, "has no config.json");
  ltk::test::write_file(dir.file("none/config.json"), R"({"model_type": "roberta"})");
  fails(plain, "model_type 'roberta' is not supported");
  ltk::test::write_file(dir.file("none/config.json"), R"({"model_type": "bert", "position_embedding_type": "relative_key"})");
  fails(plain, "position_embedding_type");
  ltk::test::write_file(dir.file("none/config.json"), R"({"model_type": "bert", "hidden_size": "wide"})");
  fails(plain, "'hidden_size' must be an integer, got a string");
  ltk::test::write_file(dir.file("none/config.json"), R"({"model_type": "bert", "hidden_size": 768.5})");
  fails(plain, "'hidden_size' must be an integer, got 768.5");
  ltk::test::write_file(dir.file("none/config.json"), R"({"model_type": 3})");
  fails(plain, "model_type must be a string");
  ltk::test::write_file(dir.file("none/config.json"), R"({"model_type": "bert", "hidden_act": "swish"})");
  fails(plain, "config.json: hidden_act \"swish\" is not supported");
  ltk::test::write_file(dir.file("none/config.json"), R"({"model_type": "bert"})");
  fails(plain, "has no vocab.txt");
  json wrong_tok = doc;
  wrong_tok["data"]["tokenizer"] = {{"type", "basic"}};
  fails(wrong_tok, "data.tokenizer.type");
  json long_len = doc;
  long_len["data"]["max_len"] = 17;
  fails(long_len, "max_position_embeddings (16)");

  // vocab.txt and config.json disagree about the vocabulary: an error naming both.
  ltk::test::write_file(dir.file("m/vocab.txt"), vocab_text(39));
  ltk::Config mismatched = ltk::parse_config(doc);
  auto vocab = ltk::Vocabulary::load_wordpiece(mismatched.data.tokenizer.dict);
  REQUIRE_THROWS_WITH(ltk::build_model(mismatched.model, ltk::ModelContext{vocab.size(), 2, vocab.pad_id(), &vocab}),
                      Contains("40 token embeddings") && Contains("39 tokens") && Contains("vocab.txt"));
}

TEST_CASE("hf: a WordPiece vocab.txt keeps its ids, and PAD and UNK are required", "[io]") {
  ltk::test::TempDir dir;
  ltk::test::write_file(dir.file("v.txt"), "[UNK]\n[PAD]\n[CLS]\n[SEP]\nhello\n##s\n");
  auto v = ltk::Vocabulary::load_wordpiece(dir.file("v.txt"));
  CHECK(v.size() == 6);
  CHECK(v.pad_id() == 1);
  CHECK(v.unk_id() == 0);
  CHECK(v.id("hello") == 4);
  CHECK(v.id("##s") == 5);
  CHECK(v.id("nope") == 0);
  CHECK(v.special_id("[CLS]") == 2);
  v.save(dir.file("copy.txt"));
  CHECK(ltk::test::read_text(dir.file("copy.txt")) == ltk::test::read_text(dir.file("v.txt")));
  ltk::test::write_file(dir.file("nopad.txt"), "[UNK]\nhello\n");
  REQUIRE_THROWS_WITH(ltk::Vocabulary::load_wordpiece(dir.file("nopad.txt")), Contains("[PAD]"));
  ltk::test::write_file(dir.file("dup.txt"), "[PAD]\n[UNK]\nhello\nhello\n");
  REQUIRE_THROWS_WITH(ltk::Vocabulary::load_wordpiece(dir.file("dup.txt")), Contains(dir.file("dup.txt") + ":4: duplicate"));
}

// Fixtures from Hugging Face transformers itself (scripts/make_hf_fixtures.py make
// tests/fixtures/hf_bert, run where transformers is installed): BertTokenizer's ids and
// BertForSequenceClassification's logits and hidden states. Until they are committed this case
// is reported as skipped.
TEST_CASE("hf fixtures: ltk reproduces BertTokenizer's ids and the model's logits", "[io]") {
  const std::string root = LTK_SOURCE_DIR "/tests/fixtures/hf_bert";
  if (!std::filesystem::exists(root + "/fixtures.json")) {
    LTK_SKIP("no " << root << "/fixtures.json: run scripts/make_hf_fixtures.py make " << root
                   << " where transformers is installed (scripts/gpu_check.sh does it there)");
  }
  const json fixtures = ltk::read_json_file(root + "/fixtures.json");
  const int64_t max_len = fixtures.at("max_len").get<int64_t>();
  for (const char* layout : {"st", "bin"}) {
    INFO(layout);
    json doc = {{"data", {{"train", "unused.tsv"}, {"max_len", max_len}}},
                {"model", {{"type", "bert"}, {"pretrained_dir", root + "/" + layout}}}};
    ltk::Config config = ltk::parse_config(doc);
    auto tokenizer = ltk::make_tokenizer(config.data.tokenizer);
    auto vocab = ltk::Vocabulary::load_wordpiece(config.data.tokenizer.dict);
    auto model = ltk::build_model(config.model, ltk::ModelContext{vocab.size(), 3, vocab.pad_id(), &vocab});
    ltk::load_hf_bert(*model, root + "/" + layout);
    model->eval();
    torch::NoGradGuard no_grad;
    for (const auto& c : fixtures.at("cases")) {
      std::string text = c.at("text"), pair = c.at("text_pair").is_null() ? "" : c.at("text_pair").get<std::string>();
      INFO(text << " | " << pair);
      auto opts = ltk::encode_options(config.data, vocab);
      opts.pairs = !pair.empty();
      auto data = ltk::encode_examples({ltk::Example{"", text, 1, pair}}, "fixture", *tokenizer, vocab, nullptr, opts);
      std::vector<int64_t> ids(data.tokens(0), data.tokens(0) + data.length(0));
      CHECK(ids == c.at("input_ids").get<std::vector<int64_t>>());
      auto batch = ltk::PadCollate()(data, {0});
      if (!batch.token_types.defined()) batch.token_types = torch::zeros_like(batch.ids);
      CHECK(batch.token_types[0].to(torch::kLong).equal(torch::tensor(c.at("token_type_ids").get<std::vector<int64_t>>())));
      auto logits = model->forward(batch)[0];
      auto expected = torch::tensor(c.at("logits").get<std::vector<float>>());
      // float32 on both sides, different kernels: a few ulps of the O(1) logits through 2 layers.
      CHECK(torch::allclose(logits, expected, 1e-4, 1e-4));
    }
  }
}

TEST_CASE("checkpoint files: what torch.save writes passes ltk's archive checks - shared storages, views with an "
          "offset, 70000 entries (zip64) - and a damaged one is a CheckpointError",
          "[io][fuzz]") {
  ltk::test::TempDir dir;
  // Python's torch.save: the reference writer (python3-torch).
  const std::string script = dir.file("write.py");
  ltk::test::write_file(script, R"(import sys, torch
base = torch.arange(12, dtype=torch.float32)
d = {"whole": base, "view": base[3:9].view(2, 3), "strided": base.view(3, 4)[:, 1], "long": torch.arange(5),
     "half": torch.ones(3, dtype=torch.float16), "bool": torch.tensor([True, False]), "empty": torch.zeros(0, 4)}
torch.save(d, sys.argv[1] + "/small.pt")
torch.save(d, sys.argv[1] + "/protocol4.pt", pickle_protocol=4)
torch.save({f"t{i}": torch.tensor([float(i)]) for i in range(70000)}, sys.argv[1] + "/many.pt")
)");
  REQUIRE(std::system(("/usr/bin/python3 '" + script + "' '" + dir.path().string() + "'").c_str()) == 0);
  // LibTorch 1.13 reads pickle protocol 2 only (torch.save's default): protocol 4 is its clear error.
  CHECK_THROWS_WITH(ltk::read_tensor_dict(dir.file("protocol4.pt"), "a test file"), Contains("protocol"));
  {
    auto tensors = ltk::read_tensor_dict(dir.file("small.pt"), "a test file");
    std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
    REQUIRE(by_name.size() == 7);
    CHECK(by_name["view"].equal(torch::arange(3, 9, torch::kFloat32).view({2, 3})));
    CHECK(by_name["strided"].equal(torch::tensor({1.0f, 5.0f, 9.0f})));
    CHECK(by_name["half"].sum().item<double>() == 3);
    CHECK(by_name["empty"].size(1) == 4);
  }
  auto many = ltk::read_tensor_dict(dir.file("many.pt"), "a test file");
  REQUIRE(many.size() == 70000);
  // Damaged: a byte of the central directory changed, the file cut short.
  std::string bytes = ltk::read_file(dir.file("small.pt"));
  std::string cut = bytes.substr(0, bytes.size() - 30);
  ltk::test::write_file(dir.file("cut.pt"), cut);
  CHECK_THROWS_AS(ltk::read_tensor_dict(dir.file("cut.pt"), "a test file"), ltk::CheckpointError);
  size_t cd = bytes.rfind(std::string("PK\x01\x02", 4));
  REQUIRE(cd != std::string::npos);
  bytes[cd + 42] = static_cast<char>(0x7f);  // the last entry's local header offset
  ltk::test::write_file(dir.file("bad.pt"), bytes);
  CHECK_THROWS_AS(ltk::read_tensor_dict(dir.file("bad.pt"), "a test file"), ltk::CheckpointError);
}

TEST_CASE(
    "load_weights: a tensor alone on its storage takes the stored data without a copy - tied, view and "
    "other-type tensors are copied",
    "[io][checkpoint]") {
  ltk::test::TempDir dir;
  struct Toy : torch::nn::Module {
    torch::Tensor alone, tied, view, wide, buffer, first, second, head;
    Toy() {
      first = register_parameter("first", torch::zeros({3}));
      second = register_parameter("second", torch::zeros({3}));
      head = register_parameter("head", torch::zeros({4}));
      alone = register_parameter("alone", torch::zeros({3, 4}));
      tied = register_parameter("tied", torch::zeros({2, 2}));
      register_parameter("tied_again", tied);  // one tensor under two names (shared weights)
      view = register_parameter("view", torch::zeros({2, 3}));
      wide = register_parameter("wide", torch::zeros({4}, torch::kDouble));
      buffer = register_buffer("buffer", torch::zeros({5}, torch::kLong));
    }
  };
  // What the file holds: `view` as a view into a larger storage, `wide` as float32 for a float64
  // parameter, `tied` and `tied_again` on one storage; `first` and `second`, two parameters of
  // the model, as one stored tensor; `head` as the start of a larger storage.
  auto shared = torch::full({2, 2}, 7.0f);
  auto both = torch::tensor({1.0f, 2.0f, 3.0f});
  c10::Dict<std::string, torch::Tensor> dict;
  dict.insert("first", both);
  dict.insert("second", both);
  dict.insert("head", torch::arange(10, torch::kFloat).narrow(0, 0, 4));
  dict.insert("alone", torch::arange(12, torch::kFloat).view({3, 4}));
  dict.insert("tied", shared);
  dict.insert("tied_again", shared);
  dict.insert("view", torch::arange(20, torch::kFloat).narrow(0, 4, 6).view({2, 3}));
  dict.insert("wide", torch::tensor({0.5f, 1.5f, 2.5f, 3.5f}));
  dict.insert("buffer", torch::arange(5, torch::kLong));
  const auto bytes = torch::pickle_save(dict);
  ltk::test::write_file(dir.file("weights.pt"), std::string(bytes.begin(), bytes.end()));

  Toy toy;
  const void* before_alone = toy.alone.data_ptr();
  const void* before_view = toy.view.data_ptr();
  const void* before_head = toy.head.data_ptr();
  REQUIRE(ltk::load_weights(toy, dir.file("weights.pt")).empty());
  // The module's own tensors (the same objects it registered) hold the file's values.
  auto params = toy.named_parameters();
  CHECK(params["alone"].unsafeGetTensorImpl() == toy.alone.unsafeGetTensorImpl());
  CHECK(toy.alone.requires_grad());
  CHECK(toy.alone.equal(torch::arange(12, torch::kFloat).view({3, 4})));
  CHECK(toy.alone.data_ptr() != before_alone);  // adopted
  CHECK(toy.view.equal(torch::arange(4, 10, torch::kFloat).view({2, 3})));
  CHECK(toy.view.data_ptr() == before_view);  // copied
  CHECK(toy.wide.scalar_type() == torch::kDouble);
  CHECK(toy.wide.equal(torch::tensor({0.5, 1.5, 2.5, 3.5}, torch::kDouble)));
  CHECK(toy.buffer.equal(torch::arange(5, torch::kLong)));
  // Two parameters stored as one tensor stay two: neither takes the shared storage.
  CHECK(toy.first.equal(both));
  CHECK(toy.second.equal(both));
  CHECK(toy.first.data_ptr() != toy.second.data_ptr());
  CHECK(toy.head.equal(torch::arange(4, torch::kFloat)));
  CHECK(toy.head.data_ptr() == before_head);  // a storage larger than the tensor: copied
  // Still tied: one tensor, the stored values.
  CHECK(params["tied_again"].unsafeGetTensorImpl() == toy.tied.unsafeGetTensorImpl());
  CHECK(toy.tied.equal(torch::full({2, 2}, 7.0f)));
  {
    torch::NoGradGuard no_grad;
    toy.alone.add_(1);  // its storage is its own: the next load reads the file again
  }
  REQUIRE(ltk::load_weights(toy, dir.file("weights.pt")).empty());
  CHECK(toy.alone.equal(torch::arange(12, torch::kFloat).view({3, 4})));
}

namespace {

// Element `i` (row-major over its sizes) of a tensor read by read_raw_tensors, through its strides.
template <typename T>
T raw_element(const ltk::RawTensor& t, int64_t i) {
  int64_t at = t.offset;
  for (size_t d = t.sizes.size(); d-- > 0;) {
    at += (i % t.sizes[d]) * t.strides[d];
    i /= t.sizes[d];
  }
  T v;
  std::memcpy(&v, t.storage.data() + at * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return v;
}

template <typename T>
void require_same_tensor(const ltk::RawTensor& raw, const torch::Tensor& expected) {
  REQUIRE(raw.sizes == expected.sizes().vec());
  auto flat = expected.contiguous().flatten();
  for (int64_t i = 0; i < flat.numel(); ++i) REQUIRE(raw_element<T>(raw, i) == flat[i].item<T>());
}

}  // namespace

TEST_CASE("raw tensors: an ltk weights file read without LibTorch equals torch's reading - views - damage is an error",
          "[io]") {
  ltk::test::TempDir dir;
  torch::manual_seed(3);
  auto matrix = torch::randn({5, 3});
  auto storage_owner = torch::arange(20, torch::kLong);
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"weight.weight", matrix},
      {"bias", torch::randn({3})},
      {"idf", torch::rand({5}, torch::kDouble) + 1},
      {"block", torch::tensor({0, 1, 0, 1, 1}, torch::kLong)},
      {"transposed", matrix.t()},                 // a view: strides (1, 3)
      {"offset", storage_owner.slice(0, 4, 10)},  // a view into a larger storage
      {"empty", torch::zeros({0, 4})},
      {"scalar", torch::tensor(2.5f)}};
  ltk::save_tensors(tensors, dir.file("weights.pt"));
  const std::string bytes = ltk::test::read_text(dir.file("weights.pt"));
  const auto raw = ltk::read_raw_tensors(bytes, dir.file("weights.pt"));
  REQUIRE(raw.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(raw.count(name));
    const ltk::RawTensor& r = raw.at(name);
    if (t.scalar_type() == torch::kFloat) {
      CHECK(r.dtype == "float32");
      require_same_tensor<float>(r, t);
    } else if (t.scalar_type() == torch::kDouble) {
      CHECK(r.dtype == "float64");
      require_same_tensor<double>(r, t);
    } else {
      CHECK(r.dtype == "int64");
      require_same_tensor<int64_t>(r, t);
    }
  }
  // data(): contiguous tensors of the asked type only.
  const auto* w = static_cast<const float*>(raw.at("weight.weight").data("float32"));
  REQUIRE(w != nullptr);
  CHECK(w[4] == matrix[1][1].item<float>());
  CHECK(raw.at("weight.weight").data("float64") == nullptr);
  CHECK(raw.at("transposed").data("float32") == nullptr);
  CHECK(raw.at("offset").data("int64") != nullptr);
  CHECK(static_cast<const int64_t*>(raw.at("offset").data("int64"))[0] == 4);

  // A truncated file, a pickle that holds no dict of tensors, an opcode torch.save never writes:
  // CheckpointErrors naming the file, never a crash.
  const std::string path = dir.file("weights.pt");
  CHECK_THROWS_AS(ltk::read_raw_tensors(bytes.substr(0, bytes.size() / 2), path), ltk::CheckpointError);
  auto list = torch::pickle_save(c10::List<torch::Tensor>({matrix}));
  CHECK_THROWS_WITH(ltk::read_raw_tensors(std::string(list.begin(), list.end()), path), Contains(path));
  std::string odd = bytes;
  const size_t setitems = odd.find("Dict[str, Tensor]");
  REQUIRE(setitems != std::string::npos);
  odd[setitems - 6] = '\xff';  // the SETITEMS opcode before the type tag's string
  CHECK_THROWS_AS(ltk::read_raw_tensors(odd, path), ltk::CheckpointError);
  // Files made to cost: a long string copied through the memo thousands of times, a value nested
  // 200 deep, an empty tensor starting 2^40 elements into its storage (tests/fuzz/regressions).
  const std::string crafted = LTK_SOURCE_DIR "/tests/fuzz/regressions/raw_weights/";
  CHECK_THROWS_WITH(ltk::read_raw_tensors(ltk::test::read_text(crafted + "memo-copies-a-long-string"), path),
                    Contains("too large"));
  CHECK_THROWS_WITH(ltk::read_raw_tensors(ltk::test::read_text(crafted + "tuples-nested-deep"), path),
                    Contains("too deep"));
  CHECK_THROWS_WITH(ltk::read_raw_tensors(ltk::test::read_text(crafted + "empty-tensor-offset-2e40"), path),
                    Contains("starts past the end"));
}
