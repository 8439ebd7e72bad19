// Helpers shared by the test files: temporary directories, files, and running the apps.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <algorithm>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace ltk::test {

namespace fs = std::filesystem;

/// The exit code of a test process whose case could not run here (ctest's SKIP_RETURN_CODE).
constexpr int kSkipExitCode = 77;

/// Set by LTK_SKIP: the case that ran could not check what it is for on this machine.
inline std::string& skip_reason() {
  static std::string reason;
  return reason;
}

/// A fresh directory, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("LTK_TEST_TMP");
    fs::path root = base ? fs::path(base) : fs::temp_directory_path() / "ltk-tests";
    fs::create_directories(root);
    std::random_device rd;
    path_ = root / ("t" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// `n` lines of text made from a fixed seed, the same on every machine: English words (some
/// capitalised, some accented, some with digits), punctuation, and, for a `cjk_share` of the lines,
/// Chinese words and characters (full-width punctuation included). For the tokenizer parity tests.
inline std::vector<std::string> generated_corpus(int n, uint32_t seed, double cjk_share) {
  static const char* latin[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "kernel", "panic",
                                "unbelievable", "running", "jumped", "happily", "Café", "naïve", "résumé", "Zoë",
                                "don't", "e-mail", "C++", "x86_64", "2024", "3.14", "hello", "WORLD", "Ünïcödé",
                                "tokenization", "self-attention", "GPU", "naïvely", "façade"};
  static const char* cjk[] = {"我们", "北京", "大学", "计算机", "语言", "模型", "学习", "今天", "天气", "很好",
                              "中国", "科学院", "研究", "生命", "起源", "人工智能", "长江", "大桥", "的", "了",
                              "和", "是", "在", "一", "个", "说", "确实", "乒乓球", "拍卖", "完"};
  static const char* punct[] = {",", ".", "!", "?", ";", ":", "(", ")", "\"", "-", "...", "，", "。", "！", "“", "”",
                                "《", "》", "、", "％", "ＡＢＣ", "１２３"};
  uint64_t x = seed;
  auto next = [&x](uint64_t m) {  // a fixed LCG, not std::uniform_*_distribution (library-defined)
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<size_t>((x >> 33) % m);
  };
  std::vector<std::string> lines;
  for (int i = 0; i < n; ++i) {
    const bool chinese = static_cast<double>(next(1000)) < cjk_share * 1000;
    std::string line;
    size_t words = 3 + next(14);
    for (size_t w = 0; w < words; ++w) {
      if (chinese) {
        line += next(5) == 0 ? latin[next(std::size(latin))] : cjk[next(std::size(cjk))];
      } else {
        if (!line.empty()) line += next(6) == 0 ? "  " : " ";
        line += latin[next(std::size(latin))];
      }
      if (next(5) == 0) line += punct[next(std::size(punct))];
    }
    lines.push_back(line);
  }
  return lines;
}

struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

// A small tmpfs mounted at `path` for the test's lifetime (root only; `mounted` says whether it is):
// the disk-full tests.
struct SmallDisk {
  std::string path;
  bool mounted = false;
  SmallDisk(const std::string& p, const std::string& size) : path(p) {
    std::filesystem::create_directories(path);
    if (geteuid() != 0) return;
    mounted = std::system(("mount -t tmpfs -o size=" + size + " ltk-test '" + path + "' 2>/dev/null").c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted) std::system(("umount -l '" + path + "'").c_str());
  }
  // Fills the disk but for `leave` bytes (in a file of its own, `fill`).
  void fill(int64_t leave = 0) const {
    const std::string f = path + "/fill";
    int fd = ::open(f.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) throw std::runtime_error("cannot create " + f);
    std::string chunk(1 << 16, 'x');
    int64_t size = 0;
    for (;;) {
      ssize_t n = ::write(fd, chunk.data(), chunk.size());
      if (n <= 0) break;
      size += n;
    }
    if (::ftruncate(fd, std::max<int64_t>(0, size - leave)) != 0) throw std::runtime_error("cannot truncate " + f);
    ::close(fd);
  }
  void free_space() const { std::filesystem::remove(path + "/fill"); }
};

/// Runs an app of build/bin with `args` (already shell-quoted where needed) and optional stdin.
inline RunResult run_app(const std::string& app, const std::string& args, const std::string& stdin_text = "",
                         const std::string& workdir = "", const std::string& env = "") {
  static int counter = 0;
  fs::path tmp = fs::temp_directory_path() / ("ltk-run-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::string in = tmp.string() + ".in", out = tmp.string() + ".out", err = tmp.string() + ".err";
  write_file(in, stdin_text);
  std::string cmd = (workdir.empty() ? "" : "cd '" + workdir + "' && ") + env + " OMP_NUM_THREADS=1 '" LTK_BIN_DIR "/" +
                    app + "' " + args + " <'" + in + "' >'" + out + "' 2>'" + err + "'";
  int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_text(out);
  r.err = read_text(err);
  fs::remove(in);
  fs::remove(out);
  fs::remove(err);
  return r;
}

/// Starts an app of build/bin with `args`, stdin and stdout on /dev/null, stderr into `err`, one
/// OpenMP thread.
inline pid_t spawn_app(const std::string& app, const std::vector<std::string>& args, const std::string& err) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null = ::open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(fd, 2);
    setenv("OMP_NUM_THREADS", "1", 1);
    std::string path = std::string(LTK_BIN_DIR) + "/" + app;
    std::vector<char*> argv{path.data()};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Waits at most `seconds` for the process, then kills it (a test never leaves a trainer running).
inline int wait_exit_code(pid_t pid, int seconds = 120) {
  int status = 0;
  for (int i = 0; i < seconds * 10; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    usleep(100000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

/// metrics.jsonl without its wall-clock fields (samples_per_s, eval_samples_per_s, elapsed_s), for
/// comparing two runs.
inline std::string strip_timing(const std::string& jsonl) {
  std::istringstream in(jsonl);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    for (const char* key : {"\"samples_per_s\":", "\"eval_samples_per_s\":", "\"elapsed_s\":"}) {
      auto pos = line.find(key);
      if (pos == std::string::npos) continue;
      auto end = line.find_first_of(",}", pos);
      if (end != std::string::npos && line[end] == ',') ++end;  // the field and its comma
      line.erase(pos, end - pos);
    }
    out += line + "\n";
  }
  return out;
}

/// A small separable corpus: each label has its own words, so a model can reach 100%.
inline std::string toy_corpus(int per_label = 20, uint32_t seed = 1) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> words = {
      {"sport", {"goal", "match", "team", "score", "coach", "league"}},
      {"food", {"bread", "cheese", "soup", "apple", "salad", "pasta"}},
      {"tech", {"linux", "kernel", "compiler", "cpu", "memory", "bug"}}};
  std::mt19937 rng(seed);
  std::ostringstream out;
  for (int i = 0; i < per_label; ++i) {
    for (const auto& [label, vocab] : words) {
      int n = 2 + static_cast<int>(rng() % 6);
      out << label << '\t';
      for (int k = 0; k < n; ++k) out << (k ? " " : "") << vocab[rng() % vocab.size()];
      out << '\n';
    }
  }
  return out.str();
}

/// A config for the toy corpus in `dir` (train.tsv and valid.tsv written there).
inline std::string toy_config(const TempDir& dir, const std::string& extra_trainer = "") {
  write_file(dir.file("train.tsv"), toy_corpus(20, 1));
  write_file(dir.file("valid.tsv"), toy_corpus(5, 2));
  std::string cfg = R"({
  "name": "toy", "seed": 7, "device": "cpu", "threads": 1,
  "output_dir": ")" + dir.file("run") + R"(",
  "data": {"train": ")" + dir.file("train.tsv") + R"(", "valid": ")" + dir.file("valid.tsv") + R"(",
           "test": ")" + dir.file("valid.tsv") + R"("},
  "model": {"type": "bow", "embed_dim": 16},
  "optimizer": {"type": "adam", "lr": 0.05},
  "trainer": {"epochs": 15, "batch_size": 8, "log_every": 5)" + extra_trainer + R"(}
})";
  write_file(dir.file("config.json"), cfg);
  return dir.file("config.json");
}

}  // namespace ltk::test

/// Ends the current test case as skipped: its environment is missing here (not root, no torchrun,
/// no fixtures). ctest then reports it as "Not Run (Skipped)", never as passed (tests/main.cpp
/// exits kSkipExitCode when a skip was recorded and nothing failed).
#define LTK_SKIP(reason)                             \
  do {                                               \
    std::ostringstream ltk_skip_os_;                 \
    ltk_skip_os_ << reason;                          \
    ::ltk::test::skip_reason() = ltk_skip_os_.str(); \
    WARN("skipped: " << ::ltk::test::skip_reason()); \
    return;                                          \
  } while (0)
