// Data-parallel training (ltk/dist): the same result as one process, under ltk-train --nproc,
// torchrun and across two network namespaces; faults end every rank with the lost rank's name.
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/serialize.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/process.h"
#include "ltk/data/dataset.h"
#include "ltk/dist/dist.h"
#include "ltk/eval/evaluator.h"
#include "ltk/task/task.h"
#include "test_util.h"

namespace fs = std::filesystem;
using ltk::test::read_text;
using ltk::test::run_app;
using ltk::test::spawn_app;
using ltk::test::TempDir;
using ltk::test::wait_exit_code;
using ltk::test::write_file;

namespace {

// A corpus with lengths that vary (bucketing changes the batches) and many rare words (a batch
// touches few embedding rows, so their gradients go through the rows-only all-reduce), and a
// config for it in float64.
std::string corpus(int n, int offset) {
  const char* labels[] = {"sport", "food", "tech"};
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += std::string(labels[i % 3]) + "\t" + labels[i % 3] + "word";
    for (int k = 0; k <= (i * 7) % 5; ++k) out += " rare" + std::to_string((i + offset) * 5 + k);
    out += "\n";
  }
  return out;
}

std::string dist_config(const TempDir& dir, const std::string& optimizer, int batch_size, const std::string& run) {
  write_file(dir.file("train.tsv"), corpus(63, 0));  // 63 samples: the last global batch is uneven
  write_file(dir.file("valid.tsv"), corpus(12, 3));
  std::string cfg = R"({
  "name": "dist", "seed": 11, "device": "cpu", "threads": 1,
  "output_dir": ")" + dir.file(run) + R"(",
  "data": {"train": ")" + dir.file("train.tsv") + R"(", "valid": ")" + dir.file("valid.tsv") + R"("},
  "model": {"type": "bow", "embed_dim": 8},
  "optimizer": {"type": ")" + optimizer + R"(", "lr": 0.05, "weight_decay": 0.01},
  "trainer": {"epochs": 3, "batch_size": )" + std::to_string(batch_size) + R"(, "bucket_pool": 2, "dtype": "float64",
              "log_every": 1000, "dist_timeout_s": 30}
})";
  std::string path = dir.file(run + ".json");
  write_file(path, cfg);
  return path;
}

c10::Dict<c10::IValue, c10::IValue> last_weights(const std::string& run) {
  auto pointer = ltk::read_json_file(run + "/checkpoints/last.json");
  std::string raw = ltk::read_file(run + "/checkpoints/" + pointer.at("dir").get<std::string>() + "/weights.pt");
  return torch::pickle_load(std::vector<char>(raw.begin(), raw.end())).toGenericDict();
}

// The largest difference between two runs' last weights, over the largest weight: float64 sums in
// another order differ by ~1e-16 per operation, so 1e-9 is a bound on any CPU, not a tuned margin.
double weight_difference(const std::string& a, const std::string& b) {
  auto wa = last_weights(a), wb = last_weights(b);
  REQUIRE(wa.size() == wb.size());
  double diff = 0, scale = 1e-30;
  for (const auto& item : wa) {
    auto x = item.value().toTensor(), y = wb.at(item.key()).toTensor();
    REQUIRE(x.scalar_type() == y.scalar_type());
    diff = std::max(diff, (x - y).abs().max().item<double>());
    scale = std::max(scale, x.abs().max().item<double>());
  }
  return diff / scale;
}

// The rendezvous port of a job the test starts (below the ephemeral range, as --nproc's).
int free_port() {
  const int port = ltk::free_local_port();
  REQUIRE(port > 0);
  return port;
}

std::string sh(const std::string& cmd) {
  std::string out;
  FILE* p = popen(("(" + cmd + ") 2>&1").c_str(), "r");
  char buf[4096];
  while (p && fgets(buf, sizeof(buf), p)) out += buf;
  if (p) pclose(p);
  return out;
}

}  // namespace

TEST_CASE("dist: 2 processes x batch B give 1 process x 2B's weights - float64, SGD and AdamW, bucketing", "[dist]") {
  TempDir dir;
  // (the third: accumulation, validations mid-epoch and class weights, whose mean divides by the
  // summed target weights: each rank's share is its weights', not its sample count)
  for (std::string opt : {"sgd", "adamw", "adamw-accumulate"}) {
    INFO(opt);
    const bool acc = opt == "adamw-accumulate";
    const std::string optimizer = opt.substr(0, opt.find('-'));
    const std::string extra = acc ? " --set trainer.accumulate=2 --set trainer.eval_every=5 --set "
                                    "'task.class_weights={\"sport\": 5, \"food\": 1, \"tech\": 0.2}'"
                                  : "";
    auto one = run_app("ltk-train", "--config '" + dist_config(dir, optimizer, acc ? 4 : 8, "one-" + opt) + "'" + extra);
    REQUIRE(one.code == 0);
    fs::create_directories(dir.file("tmp"));
    auto two = run_app("ltk-train", "--nproc 2 --config '" + dist_config(dir, optimizer, acc ? 2 : 4, "two-" + opt) + "'" +
                       extra, "", "", "TMPDIR='" + dir.file("tmp") + "'");
    INFO(two.err);
    REQUIRE(two.code == 0);
    CHECK(two.err.find("[rank 0]") != std::string::npos);
    CHECK(last_weights(dir.file("two-" + opt)).begin()->value().toTensor().scalar_type() == torch::kDouble);
    CHECK(weight_difference(dir.file("one-" + opt), dir.file("two-" + opt)) < 1e-9);
    // ... with the embedding's gradient sent as the rows the batches touched: well under the dense size.
    double dense = 0;
    for (const auto& item : last_weights(dir.file("two-" + opt))) dense += item.value().toTensor().numel() * 8.0;
    auto at = two.err.find(" MB of gradients a step");
    REQUIRE(at != std::string::npos);
    const double sent = std::stod(two.err.substr(two.err.rfind(' ', at - 1) + 1)) * 1e6;
    CHECK(sent > 0);
    CHECK(sent < 0.5 * dense);
    // The validations agree too: the sharded one's metrics are the whole split's (the losses to
    // float64 rounding, the rest exactly), and so do the training losses logged.
    auto records = [&](const std::string& run) {
      std::vector<nlohmann::json> out;
      std::istringstream in(read_text(dir.file(run) + "/metrics.jsonl"));
      for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
      return out;
    };
    auto a = records("one-" + opt), b = records("two-" + opt);
    REQUIRE(a.size() == b.size());
    int valid = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      for (auto& [k, v] : a[i].items()) {
        if (k == "elapsed_s" || k.find("per_s") != std::string::npos) continue;
        INFO("record " << i << " key " << k);
        REQUIRE(b[i].contains(k));
        if (k == "loss") CHECK(v.get<double>() == Approx(b[i][k].get<double>()).epsilon(1e-9));
        else CHECK(v == b[i][k]);
      }
      valid += a[i]["kind"] == "valid";
    }
    CHECK(valid >= 3);
    // Rank 1 wrote nothing into the run directory, and its scratch directory is gone.
    CHECK(fs::is_empty(dir.file("tmp")));
  }
}

TEST_CASE("dist: torchrun launches the same job as --nproc - 2 processes x batch B give 1 process x 2B's weights",
          "[dist]") {
  // Debian's torchrun (its Python 3.11 needs --redirects/--tee, README).
  if (!fs::exists("/usr/bin/torchrun"))
    LTK_SKIP("torchrun is not installed (scripts/setup.sh --test installs python3-torch)");
  TempDir dir;
  auto one = run_app("ltk-train", "--config '" + dist_config(dir, "adamw", 8, "one-adamw") + "'");
  REQUIRE(one.code == 0);
  const std::string port = std::to_string(free_port());
  std::string out = sh("cd '" + dir.path().string() + "' && OMP_NUM_THREADS=1 timeout 120 /usr/bin/torchrun --nnodes 1 "
                       "--nproc_per_node 2 --master_port " + port + " --redirects 1 --tee 1 --no_python '" LTK_BIN_DIR
                       "/ltk-train' --config '" + dist_config(dir, "adamw", 4, "torchrun") + "'; echo rc=$?");
  INFO(out);
  REQUIRE(out.find("rc=0") != std::string::npos);
  CHECK(weight_difference(dir.file("one-adamw"), dir.file("torchrun")) < 1e-9);
}

TEST_CASE("dist: two hosts - one worker in each of two network namespaces joined by a veth pair", "[dist]") {
  if (geteuid() != 0 || sh("command -v ip").empty()) {
    LTK_SKIP("needs root and iproute2 (CI has both)");
  }
  TempDir dir;
  auto one = run_app("ltk-train", "--config '" + dist_config(dir, "adamw", 8, "one") + "'");
  REQUIRE(one.code == 0);
  const std::string tag = std::to_string(getpid() % 100000);
  const std::string a = "ltkA" + tag, b = "ltkB" + tag;
  struct Cleanup {  // the namespaces go whatever happens (the veth pair goes with them)
    std::string a, b;
    ~Cleanup() { sh("ip netns del " + a + "; ip netns del " + b); }
  } cleanup{a, b};
  const int octet = 10 + static_cast<int>(getpid() % 200);
  const std::string addr_a = "10.213." + std::to_string(octet) + ".1", addr_b = "10.213." + std::to_string(octet) + ".2";
  sh("ip netns del " + a + "; ip netns del " + b);  // left by a run that was killed
  std::string setup = sh("set -e; ip netns add " + a + "; ip netns add " + b + "; ip link add v" + a + " type veth peer name v" + b +
                         "; ip link set v" + a + " netns " + a + "; ip link set v" + b + " netns " + b +
                         "; ip -n " + a + " addr add " + addr_a + "/24 dev v" + a + "; ip -n " + b + " addr add " + addr_b +
                         "/24 dev v" + b + "; ip -n " + a + " link set v" + a + " up; ip -n " + b + " link set v" + b +
                         " up; ip -n " + a + " link set lo up; ip -n " + b + " link set lo up; echo ok");
  INFO(setup);
  if (setup.find("ok") == std::string::npos &&
      (setup.find("Operation not permitted") != std::string::npos || setup.find("Permission denied") != std::string::npos)) {
    LTK_SKIP("this sandbox forbids network namespaces even to root (" << setup << ")");
  }
  REQUIRE(setup.find("ok") != std::string::npos);
  const std::string cfg = dist_config(dir, "adamw", 4, "two-hosts");
  auto worker = [&](const std::string& ns, int rank) {
    return "ip netns exec " + ns + " env RANK=" + std::to_string(rank) + " WORLD_SIZE=2 MASTER_ADDR=" + addr_a +
           " MASTER_PORT=29533 OMP_NUM_THREADS=1 timeout 120 '" LTK_BIN_DIR "/ltk-train' --config '" + cfg + "'";
  };
  std::string out = sh("(" + worker(b, 1) + " > '" + dir.file("rank1.log") + "' 2>&1 & " + worker(a, 0) +
                       "; echo rc0=$?; wait $!; echo rc1=$?)");
  INFO(out + read_text(dir.file("rank1.log")));
  CHECK(out.find("rc0=0") != std::string::npos);
  CHECK(out.find("rc1=0") != std::string::npos);
  CHECK(weight_difference(dir.file("one"), dir.file("two-hosts")) < 1e-9);
}

TEST_CASE("dist: a killed rank stops the others naming it - the job resumes bit-identically - Ctrl-C checkpoints",
          "[dist]") {
  TempDir dir;
  // float32 and dropout: each rank's random state must come back from the checkpoint.
  auto config = [&](const std::string& run) {
    std::string path = dist_config(dir, "adam", 4, run);
    std::string text = read_text(path);
    text.replace(text.find("\"embed_dim\": 8}"), 15, "\"embed_dim\": 8, \"dropout\": 0.3}");
    text.replace(text.find("\"float64\""), 9, "\"float32\"");
    write_file(path, text);
    return path;
  };
  const std::string opts = " --nproc 2 --set trainer.checkpoint_every=3 --set trainer.dist_timeout_s=20";
  auto ref = run_app("ltk-train", "--config '" + config("ref") + "'" + opts);
  REQUIRE(ref.code == 0);

  // Rank 1 dies (SIGKILL) after step 7, mid-epoch: rank 0 exits 1 within the timeout, naming it.
  const auto t0 = std::chrono::steady_clock::now();
  auto killed = run_app("ltk-train-faults", "--config '" + config("run") + "'" + opts, "", "",
                        "LTK_TEST_KILL=after_step:7 LTK_TEST_KILL_RANK=1");
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(killed.err);
  CHECK(killed.code == 128 + SIGKILL);  // the launcher exits as the first worker that failed
  CHECK(took < 20 + 10);  // trainer.dist_timeout_s; the launcher's own wait (timeout + 15 s) never came
  CHECK(killed.err.find("was killed by signal 9") != std::string::npos);
  CHECK(killed.err.find("ltk-train [rank 0]: error: distributed training failed on rank 0 of 2: lost rank 1") !=
        std::string::npos);
  CHECK(ltk::read_json_file(dir.file("run") + "/checkpoints/last.json").at("step").get<int>() == 6);

  // Another number of processes is refused; the same number resumes and ends as the uninterrupted run.
  auto other = run_app("ltk-train", "--resume '" + dir.file("run") + "'");
  CHECK(other.code == 2);
  CHECK(other.err.find("was written by 2 training process(es) and this job has 1") != std::string::npos);
  auto resumed = run_app("ltk-train", "--resume '" + dir.file("run") + "' --nproc 2");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK(weight_difference(dir.file("ref"), dir.file("run")) == 0);
  CHECK(ltk::test::strip_timing(read_text(dir.file("ref") + "/metrics.jsonl")) ==
        ltk::test::strip_timing(read_text(dir.file("run") + "/metrics.jsonl")));

  // Ctrl-C (SIGINT to the launcher): every worker stops after the same step; rank 0 writes the checkpoint.
  std::string cfg = config("long");
  pid_t launcher = spawn_app("ltk-train", {"--config", cfg, "--set", "trainer.epochs=100000", "--nproc", "2"},
                             dir.file("int.err"));
  bool started = false;
  for (int i = 0; i < 600 && !started; ++i) {
    started = fs::exists(dir.file("long") + "/checkpoints/last.json");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(started);
  kill(launcher, SIGINT);
  int code = wait_exit_code(launcher, 60);
  std::string err = read_text(dir.file("int.err"));
  INFO(err);
  CHECK(code == 130);
  CHECK(err.find("[rank 0] [train] stopped by signal 2") != std::string::npos);
  CHECK(err.find("error") == std::string::npos);
}

TEST_CASE("dist: a rank that fails names its error on every rank - a port in use - an unreachable master", "[dist]") {
  TempDir dir;
  std::string cfg = dist_config(dir, "adam", 4, "run");
  const std::string port = std::to_string(free_port());
  auto env = [&](int rank) {
    return "RANK=" + std::to_string(rank) + " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port;
  };
  // Rank 1 cannot read its data: both ranks fail with that message.
  std::string out = sh("cd '" + dir.path().string() + "' && (env " + env(1) + " OMP_NUM_THREADS=1 timeout 60 '" LTK_BIN_DIR
                       "/ltk-train' --config '" + cfg + "' --set data.train=missing.tsv > r1.log 2>&1 & env " + env(0) +
                       " OMP_NUM_THREADS=1 timeout 60 '" LTK_BIN_DIR "/ltk-train' --config '" + cfg +
                       "' --overwrite; echo rc0=$?; wait $!; echo rc1=$?)");
  std::string r1 = read_text(dir.file("r1.log"));
  INFO(out + r1);
  CHECK(out.find("rc0=1") != std::string::npos);
  CHECK(out.find("rc1=1") != std::string::npos);
  CHECK(out.find("rank 1 failed: config key 'data.train': missing.tsv does not exist") != std::string::npos);
  CHECK(r1.find("ltk-train [rank 1]: error: config key 'data.train': missing.tsv does not exist") != std::string::npos);

  // Rank 0, which holds the store, fails: rank 1 still learns why before the store goes.
  out = sh("cd '" + dir.path().string() + "' && (env " + env(1) + " OMP_NUM_THREADS=1 timeout 60 '" LTK_BIN_DIR
           "/ltk-train' --config '" + cfg + "' > r1.log 2>&1 & env " + env(0) + " OMP_NUM_THREADS=1 timeout 60 '"
           LTK_BIN_DIR "/ltk-train' --config '" + cfg + "' --overwrite --set data.valid=missing.tsv; echo rc0=$?; "
           "wait $!; echo rc1=$?)");
  r1 = read_text(dir.file("r1.log"));
  {
    INFO(out + r1);
    CHECK(out.find("rc0=1") != std::string::npos);
    CHECK(out.find("rc1=1") != std::string::npos);
    CHECK(r1.find("rank 0 failed: config key 'data.valid': missing.tsv does not exist") != std::string::npos);
  }

  // A port in use: rank 0 says so at once.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(a);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(listen(fd, 1) == 0);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  auto busy = run_app("ltk-train", "--config '" + cfg + "' --overwrite", "", "",
                      "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(ntohs(a.sin_port)));
  close(fd);
  CHECK(busy.code == 1);
  CHECK(busy.err.find("is the port in use by another job?") != std::string::npos);

  // Nobody at the master's address: rank 1 gives up after trainer.dist_timeout_s.
  auto lonely = run_app("ltk-train", "--config '" + cfg + "' --set trainer.dist_timeout_s=2", "", "",
                        "RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port()));
  CHECK(lonely.code == 1);
  CHECK(lonely.err.find("rank 1 cannot reach the master at 127.0.0.1:") != std::string::npos);
  // Sparse gradients are refused on every rank.
  auto sparse = run_app("ltk-train", "--config '" + cfg + "' --overwrite --nproc 2 --set model.sparse=true "
                        "--set optimizer.type=adagrad --set optimizer.weight_decay=0");
  {
    INFO(sparse.err);
    CHECK(sparse.code == 2);
    CHECK(sparse.err.find("set model.sparse to false") != std::string::npos);
  }
  // A malformed launch environment is a config error naming the variable.
  auto bad = run_app("ltk-train", "--config '" + cfg + "'", "", "", "RANK=2 WORLD_SIZE=2");
  CHECK(bad.code == 2);
  CHECK(bad.err.find("environment variable RANK=2") != std::string::npos);
}

namespace {

// The article's multi-GPU pitfall: a forward that returns a scalar (here, the mean of the outputs).
struct ScalarModel : ltk::TextModel {
  torch::Tensor w;
  bool scalar;
  explicit ScalarModel(bool s) : scalar(s) { w = register_parameter("w", torch::ones({3})); }
  torch::Tensor forward(const ltk::Batch& batch) override {
    auto out = torch::ones({batch.size(), 3}) * w;
    return scalar ? out.mean() : out;
  }
};

}  // namespace

TEST_CASE("dist: a model whose forward returns a scalar is refused before training", "[dist]") {
  ltk::TextDataset data;
  data.add({2, 3}, 2, {0}, 0, 1);
  data.add({4}, 1, {1}, 0, 2);
  data.add({5, 6, 7}, 3, {2}, 0, 3);
  data.set_source("mem", ltk::TargetKind::class_id, 3);
  ltk::LabelMap labels = ltk::LabelMap::from_labels({"a", "b", "c"});
  ltk::TaskConfig tc;
  auto task = ltk::make_task(tc, labels);
  ScalarModel bad(true), good(false);
  CHECK_NOTHROW(ltk::check_forward_outputs(good, *task, data, torch::kCPU, "good"));
  try {
    ltk::check_forward_outputs(bad, *task, data, torch::kCPU, "scalar");
    FAIL("a scalar output was accepted");
  } catch (const ltk::ConfigError& e) {
    CHECK(std::string(e.what()).find("model 'scalar': forward returned shape [] for a batch of 2 sample(s)") !=
          std::string::npos);
  }
}
