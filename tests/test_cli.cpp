// CLI tests: run the real apps on tiny configs and check outputs, exit codes and error text.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>

#include "test_util.h"

using Catch::Matchers::Contains;
using ltk::test::run_app;
using ltk::test::TempDir;

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
  }
  auto r = run_app("ltk-train", "");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Contains("--config is required"));
  check_one_line_error(r);
  auto bogus = run_app("ltk-eval", "--bogus");
  CHECK(bogus.code == 2);
  check_one_line_error(bogus);
  auto cmd = run_app("ltk-data", "splt");
  CHECK(cmd.code == 2);
  CHECK_THAT(cmd.err, Contains("did you mean 'split'"));
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
  CHECK(rows[0]["score"] == rows[0]["scores"]["sport"]);

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
