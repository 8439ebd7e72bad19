// CLI tests: run the real apps on tiny configs and check outputs, exit codes and error text.
#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "ltk/core/files.h"
#include "ltk/infer/deploy.h"
#include "ltk/io/checkpoint.h"
#include "ltk/io/safetensors.h"
#include "ltk/models/quantize.h"
#include "test_bert.h"
#include "test_util.h"

using Catch::Matchers::Contains;
using ltk::test::run_app;
using ltk::test::spawn_app;
using ltk::test::TempDir;
using ltk::test::wait_exit_code;

namespace {

int count_lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// An error is one readable line (after any log lines, which start with '['): no stack dump,
// no "terminate called".
void check_one_line_error(const ltk::test::RunResult& r) {
  INFO(r.err);
  std::istringstream lines(r.err);
  int other = 0;
  for (std::string line; std::getline(lines, line);) other += !line.empty() && line[0] != '[';
  CHECK(other == 1);
  CHECK_THAT(r.err, !Contains("terminate called") && !Contains("Exception raised from"));
}

std::string trained_run(const TempDir& dir) {
  auto r = run_app("ltk-train", "--config '" + ltk::test::toy_config(dir) + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  return dir.file("run");
}

}  // namespace

TEST_CASE("cli: --help and usage errors", "[cli]") {
  for (const char* app : {"ltk-train", "ltk-eval", "ltk-predict", "ltk-data"}) {
    auto r = run_app(app, "--help");
    INFO(app);
    CHECK(r.code == 0);
    CHECK_THAT(r.out, Contains("sage"));
    auto v = run_app(app, "--version");
    CHECK(v.code == 0);
    CHECK_THAT(v.out, Catch::Matchers::StartsWith("ltk 0.") && Contains("commit") && Contains("LibTorch") &&
                          Contains("BLAS"));
  }
  auto r = run_app("ltk-train", "");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Contains("--config (or --resume DIR) is required"));
  check_one_line_error(r);
  auto bogus = run_app("ltk-eval", "--bogus");
  CHECK(bogus.code == 2);
  check_one_line_error(bogus);
  auto cmd = run_app("ltk-data", "splt");
  CHECK(cmd.code == 2);
  CHECK_THAT(cmd.err, Contains("did you mean 'split'"));
}

TEST_CASE("cli: a --set value arrives whole - lists, objects and strings with commas", "[cli]") {
  TempDir dir;
  std::string config = "--config '" + ltk::test::toy_config(dir) + "' --dump-config";
  auto r = run_app("ltk-train", config + " --set model.type=textcnn --set 'model.kernel_sizes=[3,4,5]' "
                   "--set 'task.class_weights={\"a\":1,\"b\":2.5}' --set 'name=one,two' "
                   "--set 'model.freeze=[\"embedding\",\"output\"]'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto resolved = nlohmann::json::parse(r.out);
  CHECK(resolved["model"]["kernel_sizes"] == nlohmann::json::array({3, 4, 5}));
  CHECK(resolved["task"]["class_weights"] == nlohmann::json({{"a", 1}, {"b", 2.5}}));
  CHECK(resolved["name"] == "one,two");
  CHECK(resolved["model"]["freeze"] == nlohmann::json::array({"embedding", "output"}));
  // A file name with a comma stays one name.
  auto stats = run_app("ltk-data", "stats '" + dir.file("a,b.tsv") + "'");
  CHECK(stats.code == 1);
  CHECK_THAT(stats.err, Contains("a,b.tsv"));
}

TEST_CASE("cli: ltk-train writes a run directory - --json and --dump-config print to stdout", "[cli]") {
  TempDir dir;
  std::string config = ltk::test::toy_config(dir);
  auto dump = run_app("ltk-train", "--config '" + config + "' --dump-config --set trainer.epochs=3");
  REQUIRE(dump.code == 0);
  auto resolved = nlohmann::json::parse(dump.out);
  CHECK(resolved["trainer"]["epochs"] == 3);
  CHECK(resolved["trainer"]["eval_batch_size"] == 256);
  CHECK_FALSE(std::filesystem::exists(dir.file("run")));

  auto r = run_app("ltk-train", "--config '" + config + "' --json --set trainer.epochs=3");
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto summary = nlohmann::json::parse(r.out);
  CHECK(summary["steps"] == 24);
  CHECK(summary["test"]["samples"] == 15);
  CHECK_THAT(r.err, Contains("[runtime] device cpu, 1 thread(s), BLAS:"));
  CHECK_THAT(r.err, Contains("[train] epoch 3/3 step 24/24"));
  CHECK_THAT(ltk::test::read_text(dir.file("run/train.log")), Contains("[valid] epoch 3"));
  auto again = run_app("ltk-train", "--config '" + config + "'");
  CHECK(again.code == 2);
  CHECK_THAT(again.err, Contains("--overwrite"));
  check_one_line_error(again);
}

TEST_CASE("cli: ltk-train config errors exit 2 with the key - data errors exit 1 with file:line", "[cli]") {
  TempDir dir;
  std::string config = ltk::test::toy_config(dir);
  auto unknown = run_app("ltk-train", "--config '" + config + "' --set optimizer.weight_decy=0.1");
  CHECK(unknown.code == 2);
  CHECK_THAT(unknown.err, Contains("'optimizer.weight_decy'") && Contains("did you mean 'weight_decay'"));
  check_one_line_error(unknown);
  auto missing = run_app("ltk-train", "--config '" + dir.file("nope.json") + "'");
  CHECK(missing.code == 2);
  CHECK_THAT(missing.err, Contains("nope.json"));
  ltk::test::write_file(dir.file("bad.tsv"), "sport\tgoal\nfood bread\n");
  auto bad = run_app("ltk-train", "--config '" + config + "' --set data.train=" + dir.file("bad.tsv"));
  CHECK(bad.code == 1);
  CHECK_THAT(bad.err, Contains("bad.tsv:2") && Contains("no tab"));
  check_one_line_error(bad);
  auto nofile = run_app("ltk-train", "--config '" + config + "' --set data.test=" + dir.file("none.tsv"));
  CHECK(nofile.code == 1);
  CHECK_THAT(nofile.err, Contains("none.tsv") && Contains("data.test"));
}

TEST_CASE("cli: ltk-eval prints a table on stderr and JSON on stdout", "[cli]") {
  TempDir dir;
  std::string run = trained_run(dir);
  auto r = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("train.tsv") + "' --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["accuracy"] == 1.0);
  CHECK(j["macro_f1"] == 1.0);
  CHECK(j["samples"] == 60);
  CHECK_THAT(r.err, Contains("accuracy 1.0000") && Contains("precision"));
  auto plain = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("valid.tsv") + "' --checkpoint last");
  CHECK(plain.code == 0);
  CHECK(plain.out.empty());

  ltk::test::write_file(dir.file("unknown.tsv"), "sport\tgoal\nweather\train\n");
  auto label = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("unknown.tsv") + "'");
  CHECK(label.code == 1);
  CHECK_THAT(label.err, Contains("unknown.tsv:2") && Contains("'weather'"));
  check_one_line_error(label);
  auto norun = run_app("ltk-eval", "--run '" + dir.file("nothing") + "' --data x.tsv");
  CHECK(norun.code == 1);
  CHECK_THAT(norun.err, Contains("does not exist"));
  auto nodata = run_app("ltk-eval", "--run '" + run + "'");
  CHECK(nodata.code == 2);
  // A run made by a newer ltk, in a newer run format, is refused with both versions named.
  ltk::test::write_file(run + "/ltk.json", R"({"ltk_version": "9.0.0", "commit": "x", "run_format": 99})");
  auto newer = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("valid.tsv") + "'");
  CHECK(newer.code == 1);
  CHECK_THAT(newer.err, Contains("ltk 9.0.0 (run format 99)") && Contains("reads run formats up to 3"));
}

TEST_CASE("cli: ltk-predict answers one JSON line per input line, in order", "[cli]") {
  TempDir dir;
  std::string run = trained_run(dir);
  auto r = run_app("ltk-predict", "--run '" + run + "'", "goal match team\nbread soup\n\nlinux kernel bug\n");
  INFO(r.err);
  REQUIRE(r.code == 0);
  std::istringstream lines(r.out);
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 4);
  CHECK(rows[0]["label"] == "sport");
  CHECK(rows[1]["label"] == "food");
  CHECK(rows[2]["error"] == "empty text");
  CHECK(rows[2]["line"] == 3);
  CHECK(rows[3]["label"] == "tech");
  double total = 0;
  for (auto& [k, v] : rows[0]["scores"].items()) total += v.get<double>();
  CHECK(total == Approx(1.0).margin(1e-4));
  // The label is the class with the highest score.
  double highest = 0;
  std::string argmax;
  for (auto& [k, v] : rows[0]["scores"].items())
    if (v.get<double>() > highest) highest = v.get<double>(), argmax = k;
  CHECK(argmax == "sport");
  CHECK(rows[0]["score"].get<double>() == highest);  // the score is the predicted label's probability

  auto directory = run_app("ltk-predict", "--run '" + run + "' --input '" + dir.path().string() + "'");
  CHECK(directory.code != 0);
  CHECK_THAT(directory.err, Contains("is a directory, not a file of texts"));
  ltk::test::write_file(dir.file("in.txt"), "cheese apple\ncompiler memory\n");
  auto f = run_app("ltk-predict", "--run '" + run + "' --input '" + dir.file("in.txt") + "' --batch-size 1");
  REQUIRE(f.code == 0);
  CHECK(count_lines(f.out) == 2);
  CHECK_THAT(f.out, Contains("\"label\":\"food\""));
}

TEST_CASE("cli: ltk-data split and tokenize", "[cli]") {
  TempDir dir;
  ltk::test::write_file(dir.file("all.tsv"), ltk::test::toy_corpus(20));
  auto r = run_app("ltk-data", "split --input '" + dir.file("all.tsv") + "' --out '" + dir.file("out") + "' --seed 3");
  INFO(r.err);
  REQUIRE(r.code == 0);
  int total = 0;
  for (const char* part : {"train", "valid", "test"})
    total += count_lines(ltk::test::read_text(dir.file(std::string("out/") + part + ".tsv")));
  CHECK(total == 60);
  auto t = run_app("ltk-data", "tokenize --tokenizer basic", "Hello, World!\n中文\n");
  CHECK(t.code == 0);
  CHECK(t.out == "hello , world !\n中 文\n");
  auto bad = run_app("ltk-data", "tokenize --tokenizer bpe");
  CHECK(bad.code == 2);
  CHECK_THAT(bad.err, Contains("data.tokenizer.type"));
  auto stats = run_app("ltk-data", "stats '" + dir.file("all.tsv") + "' --max-len 4");
  CHECK(stats.code == 0);
  CHECK_THAT(stats.out, Contains("60 samples, 3 labels") && Contains("longer than max_len 4"));
  ltk::test::write_file(dir.file("vocab.txt"), "<pad>\t0\n<unk>\t0\nhello\t1\n");
  ltk::test::write_file(dir.file("two.tsv"), "a\thello world\n");
  auto oov = run_app("ltk-data", "stats '" + dir.file("two.tsv") + "' --vocab '" + dir.file("vocab.txt") + "'");
  CHECK_THAT(oov.out, Contains("out of vocabulary: 1 of 2 tokens (50.00%)"));
}

TEST_CASE("cli: ltk-eval --export writes a checkpoint that PyTorch in Python loads and agrees with", "[cli][parity]") {
  TempDir dir;
  std::string run = trained_run(dir);
  auto r = run_app("ltk-eval", "--run '" + run + "' --export '" + dir.file("export") + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  for (const char* f : {"weights.pt", "model.json", "vocab.txt", "labels.txt"})
    CHECK(std::filesystem::exists(dir.file(std::string("export/") + f)));
  // Python rebuilds the model and predicts the same label as ltk-predict.
  ltk::test::write_file(dir.file("check.py"), R"(import json, sys, torch
sys.path.insert(0, sys.argv[2])
import ltk_torch
d = sys.argv[1]
spec = json.load(open(d + "/model.json"))
model = ltk_torch.build_model(spec["model"], spec["vocab_size"], spec["num_outputs"])
model.load_state_dict(torch.load(d + "/weights.pt"))
model.eval()
vocab = [line.split("\t")[0] for line in open(d + "/vocab.txt", encoding="utf-8")]
labels = [line.strip() for line in open(d + "/labels.txt", encoding="utf-8")]
ids = torch.tensor([[vocab.index(w) for w in "bread soup cheese".split()]])
out = model(ids, torch.tensor([3]), torch.ones(1, 3, dtype=torch.bool))
print(labels[out.argmax(1).item()])
)");
  std::string cmd = "/usr/bin/python3 '" + dir.file("check.py") + "' '" + dir.file("export") +
                    "' '" LTK_SOURCE_DIR "/bench' > '" + dir.file("py.out") + "' 2>&1";
  int status = std::system(cmd.c_str());
  INFO(ltk::test::read_text(dir.file("py.out")));
  CHECK(status == 0);
  CHECK(ltk::test::read_text(dir.file("py.out")) == "food\n");
}

namespace {

std::map<std::string, torch::Tensor> last_weights(const std::string& run) {
  auto pointer = nlohmann::json::parse(ltk::test::read_text(run + "/checkpoints/last.json"));
  auto raw = ltk::test::read_text(run + "/checkpoints/" + pointer["dir"].get<std::string>() + "/weights.pt");
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : torch::pickle_load(std::vector<char>(raw.begin(), raw.end())).toGenericDict())
    out[kv.key().toStringRef()] = kv.value().toTensor();
  return out;
}

void check_same_run(const std::string& a, const std::string& b) {
  auto wa = last_weights(a), wb = last_weights(b);
  REQUIRE(wa.size() == wb.size());
  for (const auto& [name, t] : wa) {
    INFO(name);
    CHECK(t.equal(wb[name]));  // bit-identical
  }
  CHECK(ltk::test::strip_timing(ltk::test::read_text(a + "/metrics.jsonl")) ==
        ltk::test::strip_timing(ltk::test::read_text(b + "/metrics.jsonl")));
}

// Starts an app in the background with stderr to `err`; returns its pid.
}  // namespace

TEST_CASE("resume: a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one", "[cli][resume]") {
  TempDir dir;
  std::string cfg = "--config '" + ltk::test::toy_config(dir) + "' --set model.dropout=0.3 --set trainer.epochs=4 "
                    "--set trainer.checkpoint_every=3 --set trainer.log_every=2";
  auto ref = run_app("ltk-train", cfg + " --set output_dir=" + dir.file("ref"));
  REQUIRE(ref.code == 0);
  // Kill points: before any checkpoint, between checkpoints, while a checkpoint is written, just
  // after an epoch's end, and twice in one run.
  // (ltk-train-faults is ltk-train with a test-only fault hook, tests/fault_train.cpp.)
  std::vector<std::vector<std::string>> kills = {{"LTK_TEST_KILL=after_step:1"},
                                                  {"LTK_TEST_KILL=after_step:5"},
                                                  {"LTK_TEST_KILL=in_checkpoint:6"},
                                                  {"LTK_TEST_KILL=before_pointer:9"},
                                                  {"LTK_TEST_KILL=after_step:17"},
                                                  {"LTK_TEST_KILL=after_step:4", "LTK_TEST_KILL=after_step:26"}};
  for (size_t k = 0; k < kills.size(); ++k) {
    std::string out = dir.file("kill" + std::to_string(k));
    INFO(kills[k][0]);
    auto first = run_app("ltk-train-faults", cfg + " --set output_dir=" + out, "", "", kills[k][0]);
    CHECK(first.code == 137);
    if (kills[k][0] == "LTK_TEST_KILL=before_pointer:9") {
      // Killed between a complete checkpoint directory and the pointer: the pointer still names
      // the previous checkpoint, and the new directory is whole.
      CHECK_THAT(ltk::test::read_text(out + "/checkpoints/last.json"), Contains("\"step-8\""));  // 8 steps an epoch
      for (const char* f : {"weights.pt", "optim.pt", "state.pt", "meta.json"})
        CHECK(std::filesystem::exists(out + "/checkpoints/step-9/" + f));
    }
    for (size_t again = 1; again < kills[k].size(); ++again) {
      auto r = run_app("ltk-train-faults", "--resume '" + out + "'", "", "", kills[k][again]);
      CHECK(r.code == 137);
    }
    auto resumed = run_app("ltk-train", "--resume '" + out + "'");
    INFO(resumed.err);
    REQUIRE(resumed.code == 0);
    check_same_run(dir.file("ref"), out);
  }
}

TEST_CASE("resume: a changed model, data or task is refused with a diff - epochs may change", "[cli][resume]") {
  TempDir dir;
  std::string run = trained_run(dir);
  auto r = run_app("ltk-train", "--resume '" + run + "' --set model.embed_dim=32 --set data.max_len=9");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Contains("model.embed_dim: 16 -> 32") && Contains("data.max_len: 0 -> 9"));
  auto more = run_app("ltk-train", "--resume '" + run + "' --set trainer.epochs=17");
  INFO(more.err);
  CHECK(more.code == 0);
  CHECK_THAT(more.err, Contains("[resume] trainer.epochs: 15 -> 17") && Contains("step 136/136"));
  auto both = run_app("ltk-train", "--resume '" + run + "' --config x.json");
  CHECK(both.code == 2);
}

TEST_CASE("signals: SIGINT and SIGTERM stop after the step with a checkpoint, exit 130 and 143", "[cli][signals]") {
  for (int sig : {SIGINT, SIGTERM}) {
    TempDir dir;
    std::string cfg = ltk::test::toy_config(dir);
    std::string err = dir.file("err.txt");
    pid_t pid = spawn_app("ltk-train", {"--config", cfg, "--set", "trainer.epochs=100000", "--set", "trainer.log_every=1"},
                          err);
    // Wait until training runs (a progress record exists), at most 60 s.
    for (int i = 0; i < 600 && ltk::test::read_text(dir.file("run/metrics.jsonl")).find("train") == std::string::npos; ++i)
      usleep(100000);
    kill(pid, sig);
    int code = wait_exit_code(pid);
    std::string text = ltk::test::read_text(err);
    INFO(text);
    CHECK(code == 128 + sig);
    CHECK_THAT(text, Contains("checkpoint written. Resume with: ltk-train --resume"));
    CHECK(std::filesystem::exists(dir.file("run/checkpoints/last.json")));
    auto resumed = run_app("ltk-train", "--resume '" + dir.file("run") + "' --set trainer.epochs=1");
    CHECK(resumed.code == 0);
    CHECK_THAT(resumed.err, Contains("[resume] trainer.epochs: 100000 -> 1"));
  }
}

TEST_CASE("progress: a live bar with ETA when asked (or on a terminal), plain lines otherwise", "[cli]") {
  TempDir dir;
  std::string cfg = "--config '" + ltk::test::toy_config(dir) + "' --set trainer.epochs=2";
  auto bar = run_app("ltk-train", cfg + " --set trainer.progress=bar");
  REQUIRE(bar.code == 0);
  CHECK_THAT(bar.err, Contains("\r") && Contains("ETA") && Contains("[train] epoch 2/2"));
  auto lines = run_app("ltk-train", cfg + " --overwrite");
  REQUIRE(lines.code == 0);
  CHECK_THAT(lines.err, !Contains("\r") && Contains("[train] epoch 2/2"));
  CHECK_THAT(ltk::test::read_text(dir.file("run/train.log")), !Contains("ETA"));
}

TEST_CASE("pitfall P12: ltk-eval writes bad cases, ranked confusions and metrics per file", "[cli][eval]") {
  TempDir dir;
  std::string run = trained_run(dir);
  // A file the model must get partly wrong: tech words labelled food.
  ltk::test::write_file(dir.file("hard.tsv"), "food\tlinux kernel bug\nfood\tbread soup\nsport\tgoal team\n");
  auto r = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("hard.tsv") + "' --data '" +
                                   dir.file("valid.tsv") + "' --out '" + dir.file("out") + "' --checkpoint last --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(count_lines(r.out) == 2);
  std::string bad = ltk::test::read_text(dir.file("out/hard/badcases.tsv"));
  CHECK_THAT(bad, Contains("text\tgold\tpredicted\tconfidence\ttruncated\n") &&
                      Contains("linux kernel bug\tfood\ttech\t") && !Contains("bread soup"));
  auto metrics = nlohmann::json::parse(ltk::test::read_text(dir.file("out/hard/metrics.json")));
  CHECK(metrics["samples"] == 3);
  CHECK(metrics["top_confusions"][0]["gold"] == "food");
  CHECK(metrics["top_confusions"][0]["predicted"] == "tech");
  CHECK(metrics.contains("ece"));
  CHECK(std::filesystem::exists(dir.file("out/valid/metrics.json")));
  CHECK_THAT(r.err, Contains("most frequent confusions") && Contains("food -> tech: 1"));
}

TEST_CASE("cli: ltk-eval --compare reports McNemar and a bootstrap interval", "[cli][eval]") {
  TempDir dir;
  std::string good = trained_run(dir);
  auto weak = run_app("ltk-train", "--config '" + ltk::test::toy_config(dir) + "' --set trainer.epochs=1 "
                                   "--set optimizer.lr=0.001 --set output_dir=" + dir.file("weak"));
  REQUIRE(weak.code == 0);
  auto r = run_app("ltk-eval", "--compare '" + good + "' '" + dir.file("weak") + "' --data '" + dir.file("train.tsv") +
                                   "' --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["samples"] == 60);
  CHECK(j["accuracy_a"] == 1.0);
  CHECK(j["only_a_right"].get<int>() > j["only_b_right"].get<int>());
  CHECK(j["mcnemar_p"].get<double>() < 0.05);
  CHECK(j["bootstrap_95"][0].get<double>() > 0);
  CHECK_THAT(r.err, Contains("McNemar exact p") && Contains("significant"));
  auto same = run_app("ltk-eval", "--compare '" + good + "' '" + good + "' --data '" + dir.file("train.tsv") + "' --json");
  CHECK(nlohmann::json::parse(same.out)["mcnemar_p"] == 1.0);
  auto one = run_app("ltk-eval", "--compare '" + good + "' --data x");
  CHECK(one.code == 2);
}

TEST_CASE("cli: ltk-predict reads TSV and JSONL with ids, lists the top k, and answers bad lines in place", "[cli]") {
  TempDir dir;
  std::string run = trained_run(dir);
  auto j = run_app("ltk-predict", "--run '" + run + "' --format jsonl --top-k 2",
                   "{\"id\": 7, \"text\": \"goal team\"}\nnot json\n{\"id\": \"x\"}\n{\"text\": \"bread\"}\n");
  INFO(j.err);
  REQUIRE(j.code == 0);
  std::istringstream lines(j.out);
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 4);
  CHECK(rows[0]["id"] == 7);
  CHECK(rows[0]["label"] == "sport");
  CHECK(rows[0]["top"].size() == 2);
  CHECK(rows[0]["top"][0]["label"] == "sport");
  CHECK(rows[1]["error"] == "not a JSON object");
  CHECK(rows[2]["id"] == "x");
  CHECK_THAT(rows[2]["error"].get<std::string>(), Contains("'text'"));
  CHECK(rows[3]["label"] == "food");
  auto t = run_app("ltk-predict", "--run '" + run + "' --format tsv", "a1\tcpu memory\nplain words\n");
  CHECK_THAT(t.out, Contains("{\"id\":\"a1\",\"label\":\"tech\""));
  CHECK(count_lines(t.out) == 2);
  auto bad = run_app("ltk-predict", "--run '" + run + "' --format xml");
  CHECK(bad.code == 2);
}

TEST_CASE("sentencepiece: ltk-train trains a model into the run - eval, predict and tokenize use it from there",
          "[cli][sentencepiece]") {
  TempDir dir;
  std::string cfg = ltk::test::toy_config(dir);
  const std::string spm = " --set data.tokenizer.type=sentencepiece --set data.tokenizer.vocab_size=40";
  auto r = run_app("ltk-train", "--config '" + cfg + "'" + spm + " --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  REQUIRE(std::filesystem::exists(dir.file("run/spm.model")));
  CHECK(nlohmann::json::parse(r.out)["test"]["accuracy"].get<double>() > 0.9);
  // The run keeps its tokenizer: moved elsewhere, it still evaluates and predicts.
  std::filesystem::rename(dir.file("run"), dir.file("moved"));
  auto p = run_app("ltk-predict", "--run '" + dir.file("moved") + "'", "goal match team\nlinux kernel bug\n");
  INFO(p.err);
  REQUIRE(p.code == 0);
  CHECK_THAT(p.out, Contains("\"label\":\"sport\"") && Contains("\"label\":\"tech\""));
  auto e = run_app("ltk-eval", "--run '" + dir.file("moved") + "' --data '" + dir.file("valid.tsv") + "' --json");
  REQUIRE(e.code == 0);
  auto t = run_app("ltk-data", "tokenize --config '" + dir.file("moved/config.json") + "'", "goal linux\n");
  CHECK(t.code == 0);
  CHECK_THAT(t.out, Contains("\xe2\x96\x81"));  // U+2581 starts each word's first piece
  auto bpe = run_app("ltk-train", "--config '" + cfg + "'" + spm + " --set data.tokenizer.model_type=bpe --overwrite");
  CHECK(bpe.code == 0);
  auto bad = run_app("ltk-train", "--config '" + cfg + "'" + spm + " --set data.tokenizer.model_type=wordpiece --overwrite");
  CHECK(bad.code == 2);
  CHECK_THAT(bad.err, Contains("data.tokenizer.model_type"));
  auto none = run_app("ltk-data", "tokenize --tokenizer sentencepiece --dict '" + dir.file("none.model") + "'", "x\n");
  CHECK(none.code == 2);
  CHECK_THAT(none.err, Contains("none.model"));
  // A plugin candidate that exists but does not load is named, and the search goes on to the
  // plugin beside the apps.
  ltk::test::write_file(dir.file("broken.so"), "not a shared object");
  auto skipped = run_app("ltk-data", "tokenize --config '" + dir.file("moved/config.json") + "'", "goal linux\n", "",
                         "LTK_SPM_PLUGIN='" + dir.file("broken.so") + "'");
  INFO(skipped.err);
  CHECK(skipped.code == 0);
  CHECK_THAT(skipped.out, Contains("\xe2\x96\x81"));
  CHECK_THAT(skipped.err, Contains("broken.so: cannot load"));
}

TEST_CASE("bert: train, evaluate, predict, --export-hf, then fine-tune the export from model.pretrained_dir", "[cli]") {
  TempDir dir;
  std::string vocab;
  ltk::test::trained_bert(dir, vocab);
  // The run keeps the WordPiece vocabulary as it is (ids in file order).
  CHECK(ltk::test::read_text(dir.file("run/vocab.txt")) == vocab);
  auto eval = run_app("ltk-eval", "--run '" + dir.file("run") + "' --data '" + dir.file("valid.tsv") + "' --json");
  INFO(eval.err);
  REQUIRE(eval.code == 0);
  CHECK(nlohmann::json::parse(eval.out)["accuracy"].get<double>() > 0.9);
  auto predict = run_app("ltk-predict", "--run '" + dir.file("run") + "'", "goal match team\nlinux compiler\n");
  REQUIRE(predict.code == 0);
  std::istringstream lines(predict.out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  CHECK(nlohmann::json::parse(first)["label"] == "sport");
  CHECK(nlohmann::json::parse(second)["label"] == "tech");

  // Export: a Hugging Face directory with the labels and the tokenizer's settings.
  auto exported = run_app("ltk-eval", "--run '" + dir.file("run") + "' --export-hf '" + dir.file("hf") + "'");
  INFO(exported.err);
  REQUIRE(exported.code == 0);
  auto config = nlohmann::json::parse(ltk::test::read_text(dir.file("hf/config.json")));
  CHECK(config["architectures"][0] == "BertForSequenceClassification");
  CHECK(config["id2label"]["0"] == "food");
  CHECK(config["label2id"]["tech"] == 2);
  CHECK(config["problem_type"] == "single_label_classification");
  CHECK(config["vocab_size"] == 25);
  CHECK(nlohmann::json::parse(ltk::test::read_text(dir.file("hf/tokenizer_config.json")))["do_lower_case"] == true);
  CHECK(ltk::test::read_text(dir.file("hf/vocab.txt")) == vocab);
  // The export holds exactly the run's tensors, under Hugging Face's names.
  ltk::SafeTensorsFile weights(dir.file("hf/model.safetensors"));
  CHECK(weights.names().size() == 5 + 2 * 16 + 4);
  CHECK(weights.shape("bert.encoder.layer.1.attention.self.query.weight") == std::vector<int64_t>{16, 16});
  CHECK(weights.shape("classifier.weight") == std::vector<int64_t>{3, 16});

  // Fine-tune the export: the architecture, the tokenizer and every tensor come from the directory.
  nlohmann::json tune = {
      {"name", "tune"}, {"seed", 3}, {"device", "cpu"}, {"threads", 1}, {"output_dir", dir.file("tune")},
      {"data", {{"train", dir.file("train.tsv")}, {"valid", dir.file("valid.tsv")}, {"max_len", 12}}},
      {"model", {{"type", "bert"}, {"pretrained_dir", dir.file("hf")}, {"freeze_embeddings", true}}},
      {"optimizer", {{"type", "adamw"}, {"lr", 0.0003}, {"head_lr", 0.003}, {"layer_decay", 0.8}}},
      {"trainer", {{"epochs", 1}, {"batch_size", 8}, {"log_every", 50}}}};
  ltk::test::write_file(dir.file("tune.json"), tune.dump(2));
  auto tuned = run_app("ltk-train", "--config '" + dir.file("tune.json") + "'");
  INFO(tuned.err);
  REQUIRE(tuned.code == 0);
  CHECK_THAT(tuned.err, Contains("41 tensors loaded from " + dir.file("hf") + "/model.safetensors"));
  CHECK(tuned.err.find("newly initialised") == std::string::npos);
  auto eval2 = run_app("ltk-eval", "--run '" + dir.file("tune") + "' --data '" + dir.file("valid.tsv") + "' --json");
  REQUIRE(eval2.code == 0);
  CHECK(nlohmann::json::parse(eval2.out)["accuracy"].get<double>() > 0.9);

  // Only a bert run exports to Hugging Face.
  TempDir other;
  std::string bow = trained_run(other);
  auto refused = run_app("ltk-eval", "--run '" + bow + "' --export-hf '" + other.file("hf") + "'");
  CHECK(refused.code != 0);
  CHECK_THAT(refused.err, Contains("this run's model is 'bow'"));
}

TEST_CASE(
    "deploy: --quantize writes an int8 or bf16 run that every app loads, checked against float32 - a damaged "
    "model is refused",
    "[cli][deploy]") {
  if (!ltk::int8_unavailable().empty()) LTK_SKIP(ltk::int8_unavailable());
  TempDir dir;
  std::string vocab;
  const std::string run = ltk::test::trained_bert(dir, vocab), valid = dir.file("valid.tsv");
  auto reference = run_app("ltk-eval", "--run '" + run + "' --data '" + valid + "' --json");
  REQUIRE(reference.code == 0);
  const double float_accuracy = nlohmann::json::parse(reference.out)["accuracy"].get<double>();
  // LTK_NATIVE_BF16=1: bf16 runs (emulated where the CPU lacks it) on any CPU; its refusal below.
  const std::string env = "LTK_NATIVE_BF16=1";
  for (const std::string p : {"int8", "bf16"}) {
    INFO(p);
    // --max-drop 100: one changed prediction of valid.tsv's 15 is 6.7 points, and whether a borderline
    // one changes depends on the CPU (VNNI, native bf16); the refusal is checked below.
    auto q = run_app("ltk-eval",
                     "--run '" + run + "' --quantize " + p + " --out '" + dir.file(p) + "' --json --max-drop 100", "",
                     "", env);
    INFO(q.err);
    REQUIRE(q.code == 0);
    auto j = nlohmann::json::parse(q.out);
    CHECK(j["written"] == true);
    CHECK(j["data"] == valid);  // the run's data.valid
    CHECK(j["reference_accuracy"].get<double>() == float_accuracy);
    CHECK(j["agreement"].get<double>() > 0.5);
    CHECK(j["weights_bytes"].get<int64_t>() < j["reference_weights_bytes"].get<int64_t>());
    CHECK(j["reference_seconds"].get<double>() > 0);  // both passes timed, and told
    CHECK(j["seconds"].get<double>() > 0);
    CHECK(j["batch_size"].get<int64_t>() > 0);
    CHECK(j["single_texts"].get<int64_t>() > 0);  // and one text at a time
    CHECK(j["reference_single_seconds"].get<double>() > 0);
    CHECK(j["single_seconds"].get<double>() > 0);
    CHECK_THAT(q.err, Contains("the model's pass in batches of") && Contains("x float32's speed") &&
                          Contains("one text at a time ("));
    CHECK_THAT(q.err, Contains("wrote " + dir.file(p)));
    // The artifact is a run: scored as the check scored it, and answered by ltk-predict.
    auto e = run_app("ltk-eval", "--run '" + dir.file(p) + "' --data '" + valid + "' --json", "", "", env);
    INFO(e.err);
    REQUIRE(e.code == 0);
    CHECK(nlohmann::json::parse(e.out)["accuracy"] == j["accuracy"]);
    auto predict = run_app("ltk-predict", "--run '" + dir.file(p) + "'", "goal match team\nlinux compiler\n", "", env);
    INFO(predict.err);
    REQUIRE(predict.code == 0);
    CHECK_THAT(predict.out, Contains("\"label\":\"sport\"") && Contains("\"label\":\"tech\""));
    auto deploy = nlohmann::json::parse(ltk::test::read_text(dir.file(p + "/deploy.json")));
    CHECK(deploy["precision"] == p);
    if (p == "int8") {  // calibrated on the run's training split, not on the check's data
      CHECK(deploy["calibration"]["data"] == dir.file("train.tsv"));
      CHECK(deploy["calibration"]["samples"].get<int64_t>() > 0);
      CHECK(j["calibration"] == deploy["calibration"]);
      CHECK_THAT(q.err, Contains("int8 activation ranges calibrated on"));
    } else {
      CHECK(!deploy.contains("calibration"));
    }
    CHECK(deploy["check"]["agreement"] == j["agreement"]);
    // Run format 3: an ltk that predates artifacts (or their int8 ranges) refuses it rather than misreading it.
    CHECK(nlohmann::json::parse(ltk::test::read_text(dir.file(p + "/ltk.json")))["run_format"] == 3);
    // Not float32 weights: --export and a second --quantize refuse, naming what to give instead.
    auto exported = run_app("ltk-eval", "--run '" + dir.file(p) + "' --export '" + dir.file("exported") + "'");
    CHECK(exported.code == 2);
    CHECK_THAT(exported.err, Contains("is a deploy artifact (" + p + ", ltk-eval --quantize)"));
    auto again = run_app("ltk-eval", "--run '" + dir.file(p) + "' --quantize int8 --out '" + dir.file("again") + "'");
    CHECK(again.code == 2);
    CHECK_THAT(again.err, Contains("already a deploy artifact"));
  }
  // The stored layout: int8 values and per-row scales in place of the encoder's Linear weights;
  // the head stays float32. bf16: every tensor.
  std::map<std::string, torch::Tensor> int8;
  for (auto& [name, t] : ltk::read_weights(dir.file("int8/checkpoints/deploy/weights.pt"))) int8[name] = t;
  const std::string query = "bert.encoder.layer.1.attention.self.query";
  REQUIRE(int8.count(query + ".weight_int8"));
  CHECK(int8[query + ".weight_int8"].scalar_type() == torch::kChar);
  CHECK(int8[query + ".weight_int8"].sizes().vec() == std::vector<int64_t>{16, 16});
  CHECK(int8[query + ".weight_scale"].sizes().vec() == std::vector<int64_t>{16});
  CHECK(int8.count(query + ".weight") == 0);
  // Calibrated on the check's data (run format 3): the activations' [lo, hi] of each int8 layer.
  REQUIRE(int8.count(query + ".input_range"));
  CHECK(int8[query + ".input_range"].sizes().vec() == std::vector<int64_t>{2});
  CHECK(int8[query + ".input_range"][0].item<float>() < 0);
  CHECK(int8[query + ".input_range"][1].item<float>() > 0);
  CHECK(int8["classifier.weight"].scalar_type() == torch::kFloat);
  for (auto& [name, t] : ltk::read_weights(dir.file("bf16/checkpoints/deploy/weights.pt")))
    CHECK(t.scalar_type() == torch::kBFloat16);

  // Refused before any work: bf16 without native bf16, a model without a deploy precision, a bad
  // --max-drop, no --out, an --out that holds a run.
  auto slow = run_app("ltk-eval", "--run '" + run + "' --quantize bf16 --out '" + dir.file("x") + "'", "", "",
                      "LTK_NATIVE_BF16=0");
  CHECK(slow.code == 2);
  CHECK_THAT(slow.err, Contains("no native bf16") && Contains("--quantize int8"));
  TempDir other;
  auto bow = run_app("ltk-eval", "--run '" + trained_run(other) + "' --quantize int8 --out '" + dir.file("x") + "'");
  CHECK(bow.code == 2);
  CHECK_THAT(bow.err, Contains("model type 'bow' has no deploy precision"));
  // A textcnn run (as rnn and transformer ones): bf16 alone.
  auto cnn_train = run_app("ltk-train", "--config '" + ltk::test::toy_config(other) + "' --overwrite --set " +
                                            R"('model={"type": "textcnn", "embed_dim": 8, "channels": 4}')");
  INFO(cnn_train.err);
  REQUIRE(cnn_train.code == 0);
  auto cnn8 = run_app("ltk-eval", "--run '" + other.file("run") + "' --quantize int8 --out '" + dir.file("x") + "'");
  CHECK(cnn8.code == 2);
  CHECK_THAT(cnn8.err, Contains("this model type takes --quantize bf16"));
  auto cnn16 = run_app(
      "ltk-eval", "--run '" + other.file("run") + "' --quantize bf16 --out '" + dir.file("cnn") + "' --max-drop 100",
      "", "", env);
  INFO(cnn16.err);
  REQUIRE(cnn16.code == 0);
  auto cnn_predict = run_app("ltk-predict", "--run '" + dir.file("cnn") + "'", "goal match team\n", "", env);
  CHECK(cnn_predict.code == 0);
  CHECK_THAT(cnn_predict.out, Contains("\"label\":"));
  CHECK(run_app("ltk-eval", "--run '" + run + "' --quantize int8 --out '" + dir.file("x") + "' --max-drop -1").code ==
        2);
  CHECK(run_app("ltk-eval", "--run '" + run + "' --quantize int8").code == 2);
  auto calibrate16 = run_app(
      "ltk-eval", "--run '" + run + "' --quantize bf16 --calibrate '" + valid + "' --out '" + dir.file("x") + "'");
  CHECK(calibrate16.code == 2);
  CHECK_THAT(calibrate16.err, Contains("it goes with --quantize int8"));
  auto calibrate_alone = run_app("ltk-eval", "--run '" + run + "' --data '" + valid + "' --calibrate '" + valid + "'");
  CHECK(calibrate_alone.code == 2);
  CHECK_THAT(calibrate_alone.err, Contains("it goes with --quantize int8"));
  auto calibrate_missing = run_app("ltk-eval", "--run '" + run + "' --quantize int8 --calibrate '" +
                                                   dir.file("missing.tsv") + "' --out '" + dir.file("x") + "'");
  CHECK(calibrate_missing.code != 0);
  CHECK_THAT(calibrate_missing.err, Contains("calibrating the int8 ranges on --calibrate " + dir.file("missing.tsv")));
  // A run whose training file is gone: calibrated on the check's data, with a warning saying what that costs.
  std::filesystem::copy(run, dir.file("moved"), std::filesystem::copy_options::recursive);
  auto moved_config = nlohmann::json::parse(ltk::test::read_text(dir.file("moved/config.json")));
  moved_config["data"]["train"] = dir.file("gone.tsv");
  ltk::test::write_file(dir.file("moved/config.json"), moved_config.dump());
  auto moved = run_app("ltk-eval", "--run '" + dir.file("moved") + "' --quantize int8 --max-drop 100 --out '" +
                                       dir.file("moved-int8") + "'");
  INFO(moved.err);
  CHECK(moved.code == 0);
  CHECK_THAT(moved.err, Contains("is not a raw file here") && Contains("pass --calibrate FILE"));
  CHECK(nlohmann::json::parse(ltk::test::read_text(dir.file("moved-int8/deploy.json")))["calibration"]["data"] ==
        valid);
  auto onto_run = run_app("ltk-eval", "--run '" + run + "' --quantize int8 --out '" + run + "'");
  CHECK(onto_run.code == 2);
  CHECK_THAT(onto_run.err, Contains("which an export does not write"));
  // A directory of the user's that holds only names an artifact has is no artifact: left alone.
  std::filesystem::create_directories(dir.file("mine/checkpoints"));
  ltk::test::write_file(dir.file("mine/config.json"), "{}");
  ltk::test::write_file(dir.file("mine/checkpoints/notes.txt"), "mine");
  auto onto_mine = run_app("ltk-eval", "--run '" + run + "' --quantize int8 --out '" + dir.file("mine") + "'");
  CHECK(onto_mine.code == 2);
  CHECK_THAT(onto_mine.err, Contains("is no deploy artifact"));
  CHECK(ltk::test::read_text(dir.file("mine/checkpoints/notes.txt")) == "mine");
  // An artifact is replaced by the next --quantize, its eval/ (ltk-eval's output) included.
  REQUIRE(std::filesystem::exists(dir.file("int8/eval")));
  auto again8 = run_app("ltk-eval", "--run '" + run + "' --quantize int8 --out '" + dir.file("int8") +
                                        "' --max-drop 100 --calibrate '" + valid + "'");
  INFO(again8.err);
  CHECK(again8.code == 0);
  CHECK(nlohmann::json::parse(ltk::test::read_text(dir.file("int8/deploy.json")))["calibration"]["data"] == valid);
  CHECK(!std::filesystem::exists(dir.file("int8/eval")));
  CHECK(!std::filesystem::exists(dir.file("x")));

  // Refused (exit 3, nothing written): a model that int8 ruins and float32 does not. Hidden unit 0
  // is made dead (zero in every LayerNorm, and in the value projection), and each Linear layer that
  // reads it weighs it 10^4: float32 multiplies that by 0, while int8 rounds every other weight of
  // the row (scale 10^4 / 127) to 0, so attention and the feed-forward inputs carry nothing.
  std::filesystem::copy(run, dir.file("outlier"), std::filesystem::copy_options::recursive);
  const std::string weights = ltk::RunDirectory::open(dir.file("outlier")).checkpoint("best");
  auto tensors = ltk::read_weights(weights);
  {
    torch::NoGradGuard no_grad;
    auto ends = [](const std::string& name, const std::string& end) {
      return name.size() >= end.size() && name.compare(name.size() - end.size(), end.size(), end) == 0;
    };
    for (auto& [name, t] : tensors) {
      if (name.find("LayerNorm.") != std::string::npos) t[0] = 0;
      if (ends(name, "attention.self.value.weight")) t[0].zero_();
      if (ends(name, "attention.self.value.bias")) t[0] = 0;
    }
    for (auto& [name, t] : tensors)
      for (const char* layer : {"query", "key", "value", "attention.output.dense", "intermediate.dense"})
        if (ends(name, std::string(layer) + ".weight")) t.select(1, 0).fill_(1e4);
  }
  ltk::save_tensors(tensors, weights);
  auto outlier_fp32 = run_app("ltk-eval", "--run '" + dir.file("outlier") + "' --data '" + valid + "' --json");
  REQUIRE(outlier_fp32.code == 0);
  REQUIRE(nlohmann::json::parse(outlier_fp32.out)["accuracy"].get<double>() > 0.5);  // float32 still learnt it
  auto refused =
      run_app("ltk-eval", "--run '" + dir.file("outlier") + "' --quantize int8 --out '" + dir.file("x") + "' --json");
  INFO(refused.err);
  CHECK(refused.code == 3);
  CHECK_THAT(refused.err, Contains("ltk-eval: refused: accuracy fell from") && Contains("nothing was written"));
  CHECK(nlohmann::json::parse(refused.out)["written"] == false);
  CHECK(!std::filesystem::exists(dir.file("x")));

  // The check: the same model agrees with itself; one whose head is damaged (negated) after
  // quantization is refused, with the accuracy it lost.
  auto a = ltk::load_run(run), b = ltk::load_run(run);
  ltk::quantize_run(b, "int8");
  {
    torch::NoGradGuard no_grad;
    for (auto& param : b.model->named_parameters())
      if (param.key() == "classifier.weight") param.value().neg_();
  }
  auto sa = ltk::score_file(a, valid, 8), sb = ltk::score_file(b, valid, 8);
  auto same = ltk::compare_deploy(*a.task, sa, sa);
  CHECK(same.agreement == 1.0);
  CHECK(same.max_probability_change == 0.0);
  CHECK(same.refusal(0.0).empty());
  auto damaged = ltk::compare_deploy(*a.task, sa, sb);
  CHECK(damaged.agreement < 0.5);
  CHECK(damaged.drop() > 50);
  CHECK_THAT(damaged.refusal(0.5), Contains("accuracy fell from") && Contains("more than --max-drop 0.5"));
}

TEST_CASE("mlm: pretrain a BERT on unlabeled text, fill masks, fine-tune the directory it writes", "[cli][mlm]") {
  TempDir dir;
  ltk::test::write_file(dir.file("train.tsv"), ltk::test::toy_corpus(20, 1));
  ltk::test::write_file(dir.file("valid.tsv"), ltk::test::toy_corpus(5, 2));
  std::string text;  // the same texts, one per line, no labels
  std::istringstream in(ltk::test::toy_corpus(20, 1));
  for (std::string line; std::getline(in, line);) text += line.substr(line.find('\t') + 1) + "\n";
  ltk::test::write_file(dir.file("text.txt"), text);
  // ltk-data vocab: a WordPiece vocabulary and its coverage.
  auto vocab = run_app("ltk-data", "vocab --input '" + dir.file("text.txt") + "' --size 40 --out '" + dir.file("v.txt") + "'");
  INFO(vocab.err);
  REQUIRE(vocab.code == 0);
  CHECK_THAT(vocab.err, Contains("40 entries from 60 texts") && Contains("0 of them [UNK] (0.000%)"));
  CHECK(ltk::test::read_text(dir.file("v.txt")).rfind("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", 0) == 0);

  auto config = [&](const std::string& name) {
    nlohmann::json cfg = {
        {"name", name}, {"seed", 5}, {"device", "cpu"}, {"threads", 1}, {"output_dir", dir.file(name)},
        {"data", {{"train", dir.file("text.txt")}, {"valid", dir.file("valid.tsv")}, {"format", "text"},
                  {"max_len", 16}, {"tokenizer", {{"vocab_size", 60}}}}},
        {"task", {{"type", "mlm"}, {"whole_word", true}, {"pack", true}}},
        {"model", {{"type", "bert"}, {"hidden_size", 16}, {"num_hidden_layers", 1}, {"num_attention_heads", 2},
                   {"intermediate_size", 32}, {"max_position_embeddings", 16}}},
        {"optimizer", {{"type", "adamw"}, {"lr", 0.005}}},
        {"trainer", {{"epochs", 4}, {"batch_size", 8}, {"log_every", 50}}}};
    ltk::test::write_file(dir.file(name + ".json"), cfg.dump(2));
    return dir.file(name + ".json");
  };
  // The validation file is a TSV; its labels are ignored (data.format applies to it too: give it as text).
  std::string valid_text;
  std::istringstream vin(ltk::test::toy_corpus(5, 2));
  for (std::string line; std::getline(vin, line);) valid_text += line.substr(line.find('\t') + 1) + "\n";
  ltk::test::write_file(dir.file("valid.tsv"), valid_text);
  auto a = run_app("ltk-train", "--config '" + config("mlm_a") + "'");
  INFO(a.err);
  REQUIRE(a.code == 0);
  CHECK_THAT(a.err, Contains("trained a WordPiece vocabulary of 60 entries"));
  CHECK_THAT(a.err, Contains("masked_accuracy"));
  // Masking is seeded: the same config gives the same run.
  auto b = run_app("ltk-train", "--config '" + config("mlm_b") + "'");
  REQUIRE(b.code == 0);
  CHECK(ltk::test::strip_timing(ltk::test::read_text(dir.file("mlm_a/metrics.jsonl"))) ==
        ltk::test::strip_timing(ltk::test::read_text(dir.file("mlm_b/metrics.jsonl"))));
  // Evaluation masks come from each sample's index: the same figures at any batch size.
  auto e1 = run_app("ltk-eval", "--run '" + dir.file("mlm_a") + "' --data '" + dir.file("valid.tsv") + "' --json --batch-size 1");
  auto e64 = run_app("ltk-eval", "--run '" + dir.file("mlm_a") + "' --data '" + dir.file("valid.tsv") + "' --json --batch-size 64");
  INFO(e1.err);
  REQUIRE(e1.code == 0);
  REQUIRE(e64.code == 0);
  auto m1 = nlohmann::json::parse(e1.out), m64 = nlohmann::json::parse(e64.out);
  CHECK(m1["masked_tokens"] == m64["masked_tokens"]);
  CHECK(m1["masked_accuracy"] == m64["masked_accuracy"]);
  CHECK(m1["perplexity"].get<double>() == Approx(m64["perplexity"].get<double>()).epsilon(1e-5));
  // The result is a BertForMaskedLM directory.
  auto hf = nlohmann::json::parse(ltk::test::read_text(dir.file("mlm_a/bert/config.json")));
  CHECK(hf["architectures"][0] == "BertForMaskedLM");
  CHECK_FALSE(hf.contains("id2label"));
  ltk::SafeTensorsFile weights(dir.file("mlm_a/bert/model.safetensors"));
  CHECK(weights.shape("cls.predictions.bias") == std::vector<int64_t>{60});
  CHECK(weights.shape("cls.predictions.transform.dense.weight") == std::vector<int64_t>{16, 16});
  for (const auto& n : weights.names()) CHECK(n.rfind("bert.pooler", 0) != 0);
  // ltk-predict fills each [MASK].
  auto fill = run_app("ltk-predict", "--run '" + dir.file("mlm_a") + "' --top-k 3", "goal [MASK] team\nno mask here\n");
  INFO(fill.err);
  REQUIRE(fill.code == 0);
  std::istringstream lines(fill.out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  auto masks = nlohmann::json::parse(first)["masks"];
  REQUIRE(masks.size() == 1);
  CHECK(masks[0]["top"].size() == 3);
  CHECK(nlohmann::json::parse(second)["error"] == "no [MASK] in the text");
  // Fine-tuning takes the directory as it is: the encoder loads, the pooler and the head start fresh.
  nlohmann::json tune = {
      {"name", "tune"}, {"seed", 3}, {"device", "cpu"}, {"threads", 1}, {"output_dir", dir.file("tune")},
      {"data", {{"train", dir.file("train.tsv")}, {"max_len", 16}}},
      {"model", {{"type", "bert"}, {"pretrained_dir", dir.file("mlm_a/bert")}}},
      {"optimizer", {{"type", "adamw"}, {"lr", 0.003}}},
      {"trainer", {{"epochs", 1}, {"batch_size", 8}}}};
  ltk::test::write_file(dir.file("train.tsv"), ltk::test::toy_corpus(20, 1));
  ltk::test::write_file(dir.file("tune.json"), tune.dump(2));
  auto tuned = run_app("ltk-train", "--config '" + dir.file("tune.json") + "'");
  INFO(tuned.err);
  REQUIRE(tuned.code == 0);
  CHECK_THAT(tuned.err, Contains("21 tensors loaded"));
  CHECK_THAT(tuned.err, Contains("ignored 5 tensor(s)"));
  CHECK_THAT(tuned.err, Contains("newly initialised (not in the file): bert.pooler.dense.bias, bert.pooler.dense.weight, "
                                 "classifier.bias, classifier.weight"));
}

TEST_CASE("linear: train the tf-idf baseline - evaluate and predict from its run - and --baseline beside a model",
          "[cli][linear]") {
  TempDir dir;
  const std::string config = ltk::test::toy_config(dir);
  const std::string linear = "--set 'model={\"type\": \"linear\", \"char_ngram_range\": [2, 4]}' "
                             "--set 'optimizer={\"type\": \"adagrad\", \"lr\": 1}' --set trainer.epochs=5";
  auto r = run_app("ltk-train", "--config '" + config + "' --json " + linear);
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto summary = nlohmann::json::parse(r.out);
  CHECK(summary["test"]["accuracy"].get<double>() > 0.9);  // three topics of disjoint words
  auto resolved = nlohmann::json::parse(ltk::test::read_text(dir.file("run/config.json")));
  // vocab.txt holds the features with their document frequencies; character n-grams start with a space.
  auto vocab = ltk::test::read_text(dir.file("run/vocab.txt"));
  CHECK_THAT(vocab, Contains("\n  go\t"));
  auto ev = run_app("ltk-eval", "--run '" + dir.file("run") + "' --data '" + dir.file("valid.tsv") + "' --json");
  REQUIRE(ev.code == 0);
  auto evj = nlohmann::json::parse(ev.out);
  CHECK(evj["accuracy"] == summary["test"]["accuracy"]);
  // The loss too: only the same idf (restored from the checkpoint) gives the same margins.
  CHECK(evj["loss"].get<double>() == Approx(summary["test"]["loss"].get<double>()).epsilon(1e-6));
  CHECK(evj["loss"].get<double>() > 0);
  // Fine-tuning from the run under another C: the features and their idf stay the run's, the
  // penalty follows the new C (1 -> 0.25: four times the scale) over this split.
  auto tuned = run_app("ltk-train", "--config '" + config + "' " + linear + " --set model.init_from='" +
                                        dir.file("run") + "' --set model.C=0.25 --set output_dir='" + dir.file("run2") + "'");
  INFO(tuned.err);
  REQUIRE(tuned.code == 0);
  auto before = last_weights(dir.file("run")), after = last_weights(dir.file("run2"));
  CHECK(after["idf"].equal(before["idf"]));
  CHECK(torch::allclose(after["penalty_scale"], before["penalty_scale"] * 4));
  CHECK(before["penalty_scale"].max().item<double>() > 0);
  auto exported = run_app("ltk-eval", "--run '" + dir.file("run") + "' --export '" + dir.file("export") + "'");
  CHECK(exported.code == 2);
  CHECK_THAT(exported.err, Contains("n-gram tokenizer"));
  auto p = run_app("ltk-predict", "--run '" + dir.file("run") + "'", "goal match team\nbread soup\nlinux kernel bug\n");
  REQUIRE(p.code == 0);
  CHECK_THAT(p.out, Contains("\"label\":\"sport\"") && Contains("\"label\":\"food\"") && Contains("\"label\":\"tech\""));

  // --baseline: the model, then the baseline in RUN/baseline, compared on the test split.
  auto b = run_app("ltk-train", "--config '" + config + "' --overwrite --json --baseline --set trainer.epochs=2");
  INFO(b.err);
  REQUIRE(b.code == 0);
  auto both = nlohmann::json::parse(b.out);
  REQUIRE(both.contains("baseline"));
  CHECK(both["baseline"]["model"] == "bow");
  CHECK(both["baseline"]["rows"][0]["metric"] == "accuracy");
  CHECK(both["baseline"]["rows"][0]["model"] == both["test"]["accuracy"]);
  CHECK(std::filesystem::exists(dir.file("run/baseline/checkpoints")));
  CHECK_THAT(b.err, Contains("[baseline] accuracy"));
  CHECK_THAT(ltk::test::read_text(dir.file("run/report.html")), Contains("Against the traditional baseline"));
  CHECK_THAT(ltk::test::read_text(dir.file("run/train.log")), Contains("[baseline] accuracy"));
  auto again = run_app("ltk-train", "--config '" + config + "' --overwrite --baseline " + linear);
  CHECK(again.code == 2);
  CHECK_THAT(again.err, Contains("the linear baseline already"));
}

TEST_CASE("stress: ltk-eval --stress perturbs every text - a lowercasing model never flips under case", "[cli][stress]") {
  TempDir dir;
  std::string run = trained_run(dir);
  auto r = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("valid.tsv") + "' --json --report --stress");
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(r.out);
  REQUIRE(j.contains("stress"));
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& p : j["stress"]["perturbations"]) by_name[p["name"].get<std::string>()] = p;
  CHECK(by_name.size() == 14);
  for (const char* name : {"upper", "lower", "title", "whitespace"}) {  // the basic tokenizer lowercases, splits on any space
    INFO(name);
    CHECK(by_name[name]["flip_rate"] == 0.0);
    CHECK(by_name[name]["value"] == j["accuracy"]);
  }
  CHECK(by_name["upper"]["changed"] == 15);
  CHECK(by_name["traditional"]["changed"] == 0);  // no Chinese in the toy corpus
  CHECK(by_name["first_half"]["changed"].get<int>() > 0);
  CHECK_THAT(r.err, Contains("stress test (seed 13, 15 texts") && Contains("(applies to no text)"));
  CHECK_THAT(ltk::test::read_text(dir.file("run/eval/valid/metrics.json")), Contains("\"stress\""));
  CHECK_THAT(ltk::test::read_text(dir.file("run/report.html")), Contains("Stress tests (seed 13"));
  // The same seed gives the same figures; a subset by group.
  auto again = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("valid.tsv") + "' --json --stress typos,case");
  REQUIRE(again.code == 0);
  auto k = nlohmann::json::parse(again.out)["stress"]["perturbations"];
  REQUIRE(k.size() == 4);
  CHECK(k[3] == by_name["typos"]);
  auto eq = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("valid.tsv") + "' --json --stress=case");
  REQUIRE(eq.code == 0);
  CHECK(nlohmann::json::parse(eq.out)["stress"]["perturbations"].size() == 3);
  auto bad = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("valid.tsv") + "' --stress typo");
  CHECK(bad.code == 2);
  CHECK_THAT(bad.err, Contains("did you mean 'typos'"));
}

// ---------------------------------------------------------------------------------------------
// Faults while writing: a disk that fills up, a run directory made read-only, a kill mid-write.
// The disk is a small tmpfs the test mounts (root, as CI runs); elsewhere these tests say so and pass.

namespace {

using ltk::test::SmallDisk;

bool can_mount(const SmallDisk& disk) {
  if (disk.mounted) return true;
  if (geteuid() == 0) FAIL("cannot mount a tmpfs at " << disk.path << " as root");
  return false;
}

// Every line of a JSON Lines file parses (no torn record).
void check_whole_lines(const std::string& path) {
  std::istringstream in(ltk::test::read_text(path));
  int n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    INFO(path << " line " << n + 1 << ": " << line);
    CHECK_NOTHROW(nlohmann::json::parse(line));
  }
  CHECK(n > 0);
}

// The checkpoint last.json names is whole.
void check_last_checkpoint(const std::string& run, const std::string& step_dir) {
  CHECK_THAT(ltk::test::read_text(run + "/checkpoints/last.json"), Contains("\"" + step_dir + "\""));
  for (const char* f : {"weights.pt", "optim.pt", "state.pt", "meta.json"})
    CHECK(std::filesystem::exists(run + "/checkpoints/" + step_dir + "/" + f));
}

}  // namespace

// Runs ltk-train-faults (`args`, `env` before it) in a child process until it reaches the pause point
// `pause` (LTK_TEST_PAUSE, tests/fault_train.cpp), then calls `fault`, lets it go on, and returns its
// exit code and stderr ("CODE\nSTDERR"). The gate is opened whatever happens, so that a failed check
// never leaves the trainer waiting.
namespace {

std::string train_with_fault(const std::string& args, const std::string& env, const std::string& pause,
                             const std::string& gate, const std::function<void()>& fault) {
  std::filesystem::create_directories(gate);
  std::filesystem::permissions(gate, std::filesystem::perms::all);
  pid_t pid = fork();
  if (pid == 0) {
    auto r = run_app("ltk-train-faults", args, "", "", "LTK_TEST_PAUSE=" + pause + " LTK_TEST_PAUSE_DIR='" + gate + "' " + env);
    ltk::test::write_file(gate + "/result", std::to_string(r.code) + "\n" + r.err);
    _exit(0);
  }
  struct Opener {
    std::string go;
    pid_t pid;
    ~Opener() {
      ltk::test::write_file(go, "");
      int status = 0;
      waitpid(pid, &status, 0);
    }
  };
  {
    Opener opener{gate + "/go", pid};
    for (int i = 0; i < 1200 && !std::filesystem::exists(gate + "/paused"); ++i) usleep(50000);
    REQUIRE(std::filesystem::exists(gate + "/paused"));
    fault();
  }
  return ltk::test::read_text(gate + "/result");
}

}  // namespace

TEST_CASE("faults: a disk that fills up during a checkpoint - a clear error, the last checkpoint whole, and a resume "
          "after freeing space ends bit-identical",
          "[cli][faults]") {
  TempDir dir;
  SmallDisk disk(dir.file("disk"), "16m");
  if (!can_mount(disk)) LTK_SKIP("not root: the disk-full tests need to mount a tmpfs");
  std::string cfg = "--config '" + ltk::test::toy_config(dir) + "' --set model.dropout=0.3 --set trainer.epochs=3 "
                    "--set trainer.checkpoint_every=3 --set trainer.log_every=2";
  auto ref = run_app("ltk-train", cfg + " --set output_dir=" + dir.file("ref"));
  REQUIRE(ref.code == 0);
  // Paused after step 6, whose checkpoint comes next (step 3's is the last good one). (A full disk
  // during a metrics.jsonl append or a report is in test_core's durable-writes case and in the
  // ltk-eval case below: an append within a tmpfs page does not fail, so a run cannot aim at it.)
  const std::string run = disk.path + "/run";
  std::string metrics_before;
  std::string result = train_with_fault(cfg + " --set output_dir=" + run, "", "after_step:6", dir.file("gate"), [&] {
    metrics_before = ltk::test::read_text(run + "/metrics.jsonl");
    disk.fill();
  });
  INFO(result);
  CHECK(result.rfind("1\n", 0) == 0);  // an error exit, not a crash
  CHECK_THAT(result, Contains("No space left on device"));
  CHECK_THAT(result, Contains(run + "/checkpoints/step-6"));
  check_last_checkpoint(run, "step-3");
  check_whole_lines(run + "/metrics.jsonl");
  CHECK(ltk::test::read_text(run + "/metrics.jsonl") == metrics_before);  // nothing torn, nothing lost
  disk.free_space();
  auto resumed = run_app("ltk-train", "--resume '" + run + "'");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  check_same_run(dir.file("ref"), run);
}

TEST_CASE("faults: a run directory made read-only mid-run - a clear error, files intact, resume when writable again",
          "[cli][faults]") {
  // The trainer runs as nobody (setpriv), so that taking away write permission binds it as it binds
  // any user (root writes anyway; and a file system with files open for writing cannot be remounted
  // read-only).
  if (geteuid() != 0 || std::system("command -v setpriv >/dev/null") != 0) {
    LTK_SKIP("not root, or no setpriv: the read-only run directory test needs both");
  }
  TempDir dir;
  std::filesystem::permissions(dir.path(), std::filesystem::perms::all);
  const std::string as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups env";
  if (std::system((as_nobody + " test -x '" LTK_BIN_DIR "/ltk-train' -a -r '" + dir.path().string() + "'").c_str()) != 0) {
    LTK_SKIP("nobody cannot reach the build or the test directory (a parent without o+x)");
  }
  std::string cfg = "--config '" + ltk::test::toy_config(dir) + "' --set model.dropout=0.3 --set trainer.epochs=3 "
                    "--set trainer.checkpoint_every=3 --set trainer.log_every=2";
  auto ref = run_app("ltk-train", cfg + " --set output_dir=" + dir.file("ref"));
  REQUIRE(ref.code == 0);
  const std::string parent = dir.file("runs"), run = parent + "/run";
  std::filesystem::create_directories(parent);
  REQUIRE(chown(parent.c_str(), 65534, 65534) == 0);
  std::string metrics_before;
  auto writable = [&](bool on) {
    REQUIRE(std::system(("chmod -R " + std::string(on ? "u+w" : "a-w") + " '" + run + "'").c_str()) == 0);
  };
  std::string result = train_with_fault(cfg + " --set output_dir=" + run, as_nobody, "after_step:6", dir.file("gate"), [&] {
    metrics_before = ltk::test::read_text(run + "/metrics.jsonl");
    writable(false);
  });
  INFO(result);
  CHECK(result.rfind("1\n", 0) == 0);
  CHECK_THAT(result, Contains("Permission denied"));
  CHECK_THAT(result, Contains(run + "/checkpoints"));
  check_last_checkpoint(run, "step-3");
  CHECK(ltk::test::read_text(run + "/metrics.jsonl") == metrics_before);
  writable(true);
  auto resumed = run_app("ltk-train", "--resume '" + run + "'", "", "", as_nobody);
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  check_same_run(dir.file("ref"), run);
}

TEST_CASE("faults: ltk-eval --out, --report and --export on a full disk fail clearly and leave the earlier files whole",
          "[cli][faults]") {
  TempDir dir;
  SmallDisk disk(dir.file("disk"), "16m");
  if (!can_mount(disk)) LTK_SKIP("not root: the disk-full tests need to mount a tmpfs");
  const std::string run = disk.path + "/run";
  auto train = run_app("ltk-train", "--config '" + ltk::test::toy_config(dir) + "' --set output_dir=" + run);
  REQUIRE(train.code == 0);
  const std::string valid = dir.file("valid.tsv"), out = disk.path + "/eval", exp = disk.path + "/export";
  auto first = run_app("ltk-eval", "--run '" + run + "' --data '" + valid + "' --out '" + out + "' --report --export '" + exp + "'");
  INFO(first.err);
  REQUIRE(first.code == 0);
  std::map<std::string, std::string> before;
  for (const auto& e : std::filesystem::recursive_directory_iterator(disk.path))
    if (e.is_regular_file()) before[e.path().string()] = ltk::test::read_text(e.path().string());
  REQUIRE(before.count(run + "/report.html"));
  REQUIRE(before.count(out + "/valid/metrics.json"));
  REQUIRE(before.count(exp + "/weights.pt"));
  disk.fill();
  for (std::string args : {"--data '" + valid + "' --out '" + out + "'", "--data '" + valid + "' --out '" + out + "' --report",
                           std::string("--export '" + exp + "'")}) {
    INFO(args);
    auto r = run_app("ltk-eval", "--run '" + run + "' " + args);
    INFO(r.err);
    CHECK(r.code == 1);
    CHECK_THAT(r.err, Contains("No space left on device"));
  }
  disk.free_space();
  std::set<std::string> now;
  for (const auto& e : std::filesystem::recursive_directory_iterator(disk.path))
    if (e.is_regular_file()) now.insert(e.path().string());
  for (const auto& [path, text] : before) {
    INFO(path);
    if (path == disk.path + "/fill") continue;
    REQUIRE(now.count(path));
    CHECK(ltk::test::read_text(path) == text);
  }
  for (const auto& path : now) {
    INFO("left behind: " << path);
    CHECK((before.count(path) || path == disk.path + "/fill"));
  }
}

TEST_CASE("faults: ltk-eval --out and --export killed mid-write leave the earlier output or the new one, never a mix",
          "[cli][faults]") {
  TempDir dir;
  const std::string run = dir.file("run");
  // 2000 words of their own and a 1-wide embedding: vocab.txt (~20 KB) is larger than weights.pt
  // (~8 KB), so a file-size limit between the two kills an export after its weights are written.
  std::string train_tsv = ltk::test::toy_corpus(20, 1);
  for (int i = 0; i < 2000; ++i) train_tsv += std::string(i % 2 ? "sport" : "food") + "\tword" + std::to_string(i) + "\n";
  auto cfg = ltk::test::toy_config(dir);
  ltk::test::write_file(dir.file("train.tsv"), train_tsv);
  auto train = run_app("ltk-train", "--config '" + cfg + "' --set model.embed_dim=1 --set trainer.epochs=2 "
                       "--set output_dir=" + run);
  INFO(train.err);
  REQUIRE(train.code == 0);
  const std::string valid = dir.file("valid.tsv"), out = dir.file("eval"), exp = dir.file("export");
  // The earlier output is another run's checkpoint's; the new one is this run's last checkpoint's.
  auto eval = [&](const std::string& checkpoint, const std::string& limit) {
    return run_app("ltk-eval", "--run '" + run + "' --checkpoint " + checkpoint + " --data '" + valid + "' --out '" + out +
                   "' --export '" + exp + "'", "", "", limit);
  };
  auto snapshot = [&](const std::string& d) {
    std::map<std::string, std::string> files;
    // (a kill between a temporary file's creation and its rename leaves NAME.tmp beside the intact
    // file, and one before a directory's swap leaves DIR.ltk-tmp beside the intact DIR; the next
    // write of NAME or DIR replaces them)
    for (const auto& e : std::filesystem::recursive_directory_iterator(d))
      if (e.is_regular_file() && e.path().extension() != ".tmp" &&
          e.path().string().find(".ltk-tmp") == std::string::npos)
        files[e.path().string()] = ltk::test::read_text(e.path().string());
    return files;
  };
  // (another seed's weights: the same vocabulary and shapes, other values)
  REQUIRE(run_app("ltk-train", "--config '" + cfg + "' --set model.embed_dim=1 --set trainer.epochs=2 --set seed=8 "
                  "--set output_dir=" + dir.file("run2")).code == 0);
  std::string first_step;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("run2") + "/checkpoints"))
    if (e.is_directory()) first_step = e.path().string();
  REQUIRE(!first_step.empty());
  REQUIRE(eval(first_step, "").code == 0);
  // "--export DIR/" twice: the export is replaced, never lost (its temporary once sat inside it).
  for (int again = 0; again < 2; ++again)
    REQUIRE(run_app("ltk-eval", "--run '" + run + "' --checkpoint " + first_step + " --export '" + exp + "/'").code == 0);
  REQUIRE(std::filesystem::exists(exp + "/weights.pt"));
  CHECK_FALSE(std::filesystem::exists(exp + "/.ltk-tmp"));
  CHECK(run_app("ltk-eval", "--run '" + run + "' --export .", "", dir.path().string()).code == 2);
  const auto old_out = snapshot(out), old_exp = snapshot(exp);
  REQUIRE(eval("last", "").code == 0);
  const auto new_out = snapshot(out), new_exp = snapshot(exp);
  REQUIRE(new_exp != old_exp);
  auto check_whole = [&](const std::string& when) {
    INFO(when);
    auto o = snapshot(out), x = snapshot(exp);
    CHECK((o == old_out || o == new_out));
    CHECK((x == old_exp || x == new_exp));  // never new weights beside an old vocabulary
  };
  REQUIRE(eval(first_step, "").code == 0);
  // Killed by the kernel inside a write (SIGXFSZ: a 12 KiB file-size limit, past weights.pt and
  // within vocab.txt; sh's ulimit -f counts 512-byte blocks), then by SIGKILL at spread-out moments.
  REQUIRE(std::filesystem::file_size(exp + "/weights.pt") < 12288);
  REQUIRE(std::filesystem::file_size(exp + "/vocab.txt") > 12288);
  auto limited = eval("last", "ulimit -f 24;");
  CHECK(limited.code == 128 + SIGXFSZ);
  check_whole("SIGXFSZ");
  int k = 0;
  for (int delay_ms : {50, 150, 300, 500, 800, 1200, 1600, 2000}) {
    // (alternately the other checkpoint, so that every run changes the files)
    pid_t pid = spawn_app("ltk-eval", {"--run", run, "--checkpoint", k++ % 2 ? first_step : "last", "--data", valid,
                                       "--out", out, "--export", exp},
                          dir.file("err"));
    usleep(delay_ms * 1000);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    check_whole("SIGKILL after " + std::to_string(delay_ms) + " ms");
  }
}

namespace {

int64_t rss_kb(pid_t pid) {
  std::istringstream in(ltk::test::read_text("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

}  // namespace

TEST_CASE("limits: ltk-predict on an endless stream keeps flat memory - an endless line is answered and skipped",
          "[cli][limits]") {
  TempDir dir;
  const std::string run = dir.file("run");
  REQUIRE(run_app("ltk-train", "--config '" + ltk::test::toy_config(dir) + "' --set output_dir=" + run).code == 0);
  int to_child[2];
  REQUIRE(pipe(to_child) == 0);
  const std::string out = dir.file("answers.jsonl");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(to_child[0], 0);
    ::close(to_child[1]);
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    setenv("OMP_NUM_THREADS", "1", 1);
    std::string path = LTK_BIN_DIR "/ltk-predict";
    execl(path.c_str(), path.c_str(), "--run", run.c_str(), "--batch-size", "64", "--max-line-bytes", "1048576",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  ::close(to_child[0]);
  signal(SIGPIPE, SIG_IGN);
  auto send = [&](const std::string& data) {
    for (size_t at = 0; at < data.size();) {
      ssize_t n = ::write(to_child[1], data.data() + at, data.size() - at);
      REQUIRE(n > 0);
      at += static_cast<size_t>(n);
    }
  };
  std::string block;
  for (int i = 0; i < 1000; ++i) block += "goal match team score linux kernel bread cheese and some more words " + std::to_string(i) + "\n";
  for (int i = 0; i < 20; ++i) send(block);  // 20k lines: warmed up
  const int64_t warm = rss_kb(pid);
  send(std::string(64 << 20, 'x') + "\n");  // one 64 MiB line (the limit is 1 MiB)
  for (int i = 0; i < 180; ++i) send(block);  // 180k lines more
  const int64_t later = rss_kb(pid);
  ::close(to_child[1]);
  CHECK(wait_exit_code(pid) == 0);
  INFO("VmRSS after 20k lines " << warm << " kB, after 200k lines and a 64 MiB line " << later << " kB");
  CHECK(later < warm + 32 * 1024);  // flat: no growth with the lines read (a 64 MiB line held would add 64 MiB)
  std::istringstream answers(ltk::test::read_text(out));
  int n = 0, errors = 0;
  for (std::string line; std::getline(answers, line); ++n)
    if (line.find("--max-line-bytes") != std::string::npos) ++errors;
  CHECK(n == 200001);
  CHECK(errors == 1);
}

TEST_CASE("limits: a run that cannot fit in memory is refused before it allocates - sizes named, memory_check false "
          "skips the check",
          "[cli][limits]") {
  TempDir dir;
  const std::string cfg = "--config '" + ltk::test::toy_config(dir) + "'";
  // A 10^9-wide embedding: 20 tokens x 10^9 x 4 bytes = 80 GB of parameters alone.
  auto wide = run_app("ltk-train", cfg + " --set model.embed_dim=1000000000 --set output_dir=" + dir.file("wide"));
  CHECK(wide.code == 2);
  CHECK_THAT(wide.err, Contains("this run needs at least") && Contains("data.vocab.max_size") && Contains("GiB"));
  // Texts of 100,000 tokens under max_len 10^6, 64 to a batch, 4096 wide: the token embeddings of one
  // batch alone are ~200 GB.
  std::string long_text;
  for (int i = 0; i < 100000; ++i) long_text += (i % 2 ? " goal" : " team");
  std::string tsv;
  const char* labels[] = {"sport", "food", "tech"};
  for (int i = 0; i < 64; ++i) tsv += std::string(labels[i % 3]) + "\t" + long_text + "\n";
  ltk::test::write_file(dir.file("long.tsv"), tsv);
  auto tall = run_app("ltk-train", cfg + " --set model.type=textcnn --set model.embed_dim=4096 --set data.max_len=1000000 "
                      "--set trainer.batch_size=64 --set data.train=" + dir.file("long.tsv") + " --set output_dir=" + dir.file("tall"));
  CHECK(tall.code == 2);
  CHECK_THAT(tall.err, Contains("the longest text has 100000 tokens"));
  // What fits is not refused: the same texts 8 wide in batches of 2.
  auto fits = run_app("ltk-train", cfg + " --set model.type=textcnn --set model.embed_dim=8 --set data.max_len=1000000 "
                      "--set trainer.batch_size=2 --set trainer.epochs=1 --set data.train=" + dir.file("long.tsv") +
                      " --set output_dir=" + dir.file("fits"));
  INFO(fits.err);
  CHECK(fits.code == 0);
  // A raw training file larger than memory allows (a sparse file of 1 TiB: its size without the
  // disk) is refused before it is read or the run directory is made, with the command that encodes
  // it into shards.
  const std::string huge = dir.file("huge.tsv");
  ltk::test::write_file(huge, "sport\tgoal\n");
  std::filesystem::resize_file(huge, uint64_t{1} << 40);
  auto big = run_app("ltk-train", cfg + " --set data.train=" + huge + " --set output_dir=" + dir.file("huge"));
  CHECK(big.code == 2);
  CHECK_THAT(big.err, Contains("config key 'data.train'") && Contains("1024.0 GiB") &&
                          Contains("ltk-data encode --config CONFIG --out DIR") &&
                          Contains("trainer.memory_check false"));
  CHECK_FALSE(std::filesystem::exists(dir.file("huge")));
}

TEST_CASE("limits: a training file with one label stops after reading, naming the label", "[cli][limits]") {
  TempDir dir;
  const std::string cfg = "--config '" + ltk::test::toy_config(dir) + "'";
  std::string tsv;
  for (int i = 0; i < 1000; ++i) tsv += "same\tthe text of line " + std::to_string(i) + "\n";
  ltk::test::write_file(dir.file("one.tsv"), tsv);
  auto r = run_app("ltk-train", cfg + " --set data.train=" + dir.file("one.tsv") + " --set output_dir=" + dir.file("run"));
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("at least 2 labels") && Contains("found 1 ('same')"));
}

TEST_CASE(
    "shards: ltk-data encode, then a run from the shards is bit-identical to the run from the raw files, killed and "
    "resumed too",
    "[cli][shards]") {
  TempDir dir;
  const std::string config = ltk::test::toy_config(dir);
  auto enc = run_app("ltk-data", "encode --config '" + config + "' --out '" + dir.file("shards") + "' --threads 2");
  INFO(enc.err);
  REQUIRE(enc.code == 0);
  CHECK_THAT(enc.out, Contains("train\t") && Contains("valid\t") && Contains("test\t") && Contains("60 texts"));
  const std::string base =
      "--config '" + config + "' --set model.dropout=0.3 --set trainer.epochs=4 --set trainer.checkpoint_every=3";
  const std::string shards = " --set data.train=" + dir.file("shards/train") +
                             " --set data.valid=" + dir.file("shards/valid") +
                             " --set data.test=" + dir.file("shards/test");
  auto raw = run_app("ltk-train", base + " --set output_dir=" + dir.file("raw"));
  REQUIRE(raw.code == 0);
  auto mapped = run_app("ltk-train", base + shards + " --set output_dir=" + dir.file("mapped"));
  INFO(mapped.err);
  REQUIRE(mapped.code == 0);
  CHECK_THAT(mapped.err, Contains("mapped from a shard"));
  check_same_run(dir.file("raw"), dir.file("mapped"));
  // Killed mid-epoch and resumed from the shards: the same run again.
  auto killed = run_app("ltk-train-faults", base + shards + " --set output_dir=" + dir.file("killed"), "", "",
                        "LTK_TEST_KILL=after_step:5");
  CHECK(killed.code == 137);
  auto resumed = run_app("ltk-train", "--resume '" + dir.file("killed") + "'");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  check_same_run(dir.file("raw"), dir.file("killed"));
  // Long texts cut into windows as batches are made: the same run as the windows made in memory.
  const std::string windows = " --set data.long_text=window --set data.max_len=3 --set data.window_overlap=1";
  auto raw_win = run_app("ltk-train", base + windows + " --set output_dir=" + dir.file("raw_win"));
  REQUIRE(raw_win.code == 0);
  auto mapped_win = run_app("ltk-train", base + windows + shards + " --set output_dir=" + dir.file("mapped_win"));
  INFO(mapped_win.err);
  REQUIRE(mapped_win.code == 0);
  CHECK_THAT(mapped_win.err, Contains("windows"));
  check_same_run(dir.file("raw_win"), dir.file("mapped_win"));
  // Predictions of the shard-trained run are the raw run's.
  const std::string texts = "goal match team\nbread cheese\nlinux kernel bug\n";
  CHECK(run_app("ltk-predict", "--run " + dir.file("mapped"), texts).out ==
        run_app("ltk-predict", "--run " + dir.file("raw"), texts).out);
  // A shard where a file belongs is named; a directory that is no shard is refused.
  auto eval = run_app("ltk-eval", "--run " + dir.file("mapped") + " --data " + dir.file("shards/test"));
  CHECK(eval.code != 0);
  CHECK_THAT(eval.err, Contains("is a shard") && Contains("valid.tsv"));
  auto notshard = run_app("ltk-train", "--config '" + config + "' --set data.train=" + dir.path().string() +
                                           " --set output_dir=" + dir.file("x"));
  CHECK(notshard.code != 0);
  CHECK_THAT(notshard.err, Contains("ltk-data encode"));
  // Another tokenizer setting than the shard's: refused naming the key, before anything runs.
  auto upper = run_app("ltk-train",
                       base + shards + " --set data.tokenizer.lowercase=false --set output_dir=" + dir.file("upper"));
  CHECK(upper.code != 0);
  CHECK_THAT(upper.err, Contains("data.tokenizer.lowercase") && Contains("ltk-data encode"));
  CHECK_FALSE(std::filesystem::exists(dir.file("upper/checkpoints")));
}

TEST_CASE("cli: ltk-predict answers a linear run without LibTorch - the bytes ltk-predict-torch writes - on every task",
          "[cli][linear]") {
  // The program users run links no LibTorch library (its start-up is milliseconds); the LibTorch
  // build answers every other run, with the same arguments.
  FILE* pipe = popen("readelf -d '" LTK_BIN_DIR "/ltk-predict' | grep NEEDED", "r");
  REQUIRE(pipe);
  std::string needed;
  for (char buf[512]; fgets(buf, sizeof buf, pipe);) needed += buf;
  pclose(pipe);
  CHECK_FALSE(needed.empty());
  CHECK_THAT(needed, !Contains("torch") && !Contains("c10") && !Contains("gomp"));
  auto version = run_app("ltk-predict", "--version");
  CHECK(version.code == 0);
  CHECK_THAT(version.out, Contains("LibTorch"));

  TempDir dir;
  const std::string config = ltk::test::toy_config(dir);
  std::filesystem::create_directories(dir.file("alone"));
  std::filesystem::copy_file(LTK_BIN_DIR "/ltk-predict", dir.file("alone/ltk-predict"));
  auto alone = [&](const std::string& args, const std::string& input) {
    ltk::test::write_file(dir.file("alone/in"), input);
    const int status = std::system(("'" + dir.file("alone/ltk-predict") + "' " + args + " <'" + dir.file("alone/in") +
                                    "' >'" + dir.file("alone/out") + "' 2>'" + dir.file("alone/err") + "'")
                                       .c_str());
    return ltk::test::RunResult{WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                                ltk::test::read_text(dir.file("alone/out")),
                                ltk::test::read_text(dir.file("alone/err"))};
  };
  // Each task on the toy corpus: its labels rewritten where the task needs other ones.
  struct Case {
    std::string type, sets;
    std::function<std::string(const std::string&)> label;
  };
  const std::vector<Case> cases = {
      {"multiclass", "--set task.loss=squared_hinge --set task.calibrate=temperature",
       [](const std::string& l) { return l; }},
      {"binary", "--set task.positive_label=food --set task.threshold='\"tune\"' --set task.calibrate=temperature",
       [](const std::string& l) { return l == "food" ? std::string("food") : std::string("other"); }},
      {"multilabel", "--set 'task.threshold={\"sport\": 0.3}'",
       [](const std::string& l) { return l == "tech" ? std::string("tech,code") : l; }},
      {"regression", "", [](const std::string& l) { return l == "sport"  ? "1.5"
                                                           : l == "food" ? "-2"
                                                                         : "0.25"; }}};
  for (const auto& c : cases) {
    INFO(c.type);
    for (const char* split : {"train", "valid"}) {
      std::istringstream in(ltk::test::read_text(dir.file(std::string(split) + ".tsv")));
      std::string out, line;
      while (std::getline(in, line)) {
        const size_t tab = line.find('\t');
        out += c.label(line.substr(0, tab)) + line.substr(tab) + "\n";
      }
      ltk::test::write_file(dir.file(c.type + "_" + split + ".tsv"), out);
    }
    const std::string run = dir.file("run_" + c.type);
    auto train = run_app(
        "ltk-train", "--config '" + config + "' --set 'model={\"type\": \"linear\", \"char_ngram_range\": [2, 4]}' " +
                         "--set 'optimizer={\"type\": \"dual_cd\"}' --set task.type=" + c.type + " " + c.sets +
                         " --set data.train='" + dir.file(c.type + "_train.tsv") + "' --set data.valid='" +
                         dir.file(c.type + "_valid.tsv") + "' --set data.test='" + dir.file(c.type + "_valid.tsv") +
                         "' --set output_dir='" + run + "'");
    INFO(train.err);
    REQUIRE(train.code == 0);
    // ids, a line that is no text, invalid UTF-8, a word the run never saw
    const std::string input = "a\tgoal match team\nb\t\nc\tbread \xff soup\nd\tlinux kernel bug zyzzyva\ne\tcheese\n";
    for (const std::string args : {"--format tsv --top-k 2", "--format tsv --threads 2 --checkpoint last"}) {
      // ltk-predict alone in a directory (no ltk-predict-torch to hand the run to): the run is
      // answered without LibTorch, or not at all.
      auto fast = alone("--run '" + run + "' " + args, input);
      auto slow = run_app("ltk-predict-torch", "--run '" + run + "' " + args, input);
      INFO(fast.err);
      REQUIRE(fast.code == 0);
      REQUIRE(slow.code == 0);
      CHECK(count_lines(fast.out) == 5);
      CHECK_THAT(fast.out, Contains("{\"id\":\"b\",\"error\":\"empty text\",\"line\":2}"));
      CHECK_THAT(fast.out, Contains(c.type == "regression" ? "{\"id\":\"a\",\"value\":" : "{\"id\":\"a\",\"label"));
      CHECK(fast.out == slow.out);
    }
    if (c.type != "multiclass") continue;
    // ltk-eval scores the run as ltk-predict does: with every label of the valid split wrong, each
    // text is a bad case whose confidence in badcases.tsv is ltk-predict's score, to the digit (the
    // float bits behind them: "linear: evaluation scores a linear run as ltk-predict does").
    std::string wrong, texts;
    {
      std::istringstream in(ltk::test::read_text(dir.file("multiclass_valid.tsv")));
      for (std::string line; std::getline(in, line);) {
        const size_t tab = line.find('\t');
        const std::string label = line.substr(0, tab);
        wrong += (label == "sport" ? "food" : label == "food" ? "tech" : "sport") + line.substr(tab) + "\n";
        texts += line.substr(tab + 1) + "\n";
      }
    }
    ltk::test::write_file(dir.file("wrong.tsv"), wrong);
    auto ev = run_app("ltk-eval", "--run '" + run + "' --data '" + dir.file("wrong.tsv") + "' --out '" +
                                      dir.file("wrong_eval") + "'");
    INFO(ev.err);
    REQUIRE(ev.code == 0);
    auto answered = alone("--run '" + run + "'", texts);
    REQUIRE(answered.code == 0);
    std::map<std::string, nlohmann::json> answer_of;
    {
      std::istringstream text_in(texts), answer_in(answered.out);
      for (std::string text, answer; std::getline(text_in, text) && std::getline(answer_in, answer);)
        answer_of[text] = nlohmann::json::parse(answer);
    }
    std::istringstream bad(ltk::test::read_text(dir.file("wrong_eval/wrong/badcases.tsv")));
    int compared = 0;
    for (std::string line; std::getline(bad, line);) {
      std::vector<std::string> f;
      for (size_t at = 0;;) {
        const size_t tab = line.find('\t', at);
        f.push_back(line.substr(at, tab == std::string::npos ? std::string::npos : tab - at));
        if (tab == std::string::npos) break;
        at = tab + 1;
      }
      if (f.at(0) == "text") continue;  // the header
      INFO(line);
      REQUIRE(f.size() == 5);
      REQUIRE(answer_of.count(f[0]) == 1);
      CHECK(answer_of[f[0]]["label"] == f[2]);
      CHECK(fmt::format("{:.6f}", answer_of[f[0]]["score"].get<double>()) == f[3]);
      ++compared;
    }
    CHECK(compared >= 10);
    // Thousands of lines: parsed, answered and written in slices on each thread, in order.
    std::string many = "\xEF\xBB\xBF";  // a byte-order mark, dropped from line 1
    for (int copy = 0; copy < 700; ++copy) many += input;
    const std::string tsv = "--run '" + run + "' --format tsv --threads ";
    auto two = alone(tsv + "2", many), one = alone(tsv + "1", many);
    auto slow = run_app("ltk-predict-torch", tsv + "2", many);
    REQUIRE(two.code == 0);
    CHECK(count_lines(two.out) == 3500);
    CHECK_THAT(two.out, Catch::Matchers::StartsWith("{\"id\":\"a\",\"label"));
    CHECK_THAT(two.out, Contains("{\"id\":\"b\",\"error\":\"empty text\",\"line\":3497}\n"));
    CHECK_THAT(two.out, Contains("\n{\"error\":\"invalid UTF-8 at byte 8\",\"line\":3498}\n"));
    CHECK(two.out == one.out);
    CHECK(two.out == slow.out);
  }
  // A run of another model goes to ltk-predict-torch, whatever the arguments.
  auto bow = run_app("ltk-train", "--config '" + config + "' --set trainer.epochs=2");
  REQUIRE(bow.code == 0);
  auto p = run_app("ltk-predict", "--run '" + dir.file("run") + "' --top-k 1", "goal match\n");
  CHECK(p.code == 0);
  CHECK_THAT(p.out, Contains("\"top\":[{\"label\""));
  auto without = alone("--run '" + dir.file("run") + "'", "goal match\n");
  CHECK(without.code == 1);
  CHECK_THAT(without.err, Contains("ltk-predict-torch, which is not installed"));
  auto missing = run_app("ltk-predict", "--run '" + dir.file("nowhere") + "'", "goal\n");
  CHECK(missing.code == 1);
  CHECK_THAT(missing.err, Contains("nowhere"));
}
