// core: durable files, the run-directory lock, and the OpenBLAS kernel decision.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/parallel.h"
#include "ltk/core/process.h"
#include "test_util.h"

using Catch::Matchers::Contains;

namespace {

ltk::CpuFeatures sse_only() { return {}; }
ltk::CpuFeatures avx_only() {
  ltk::CpuFeatures f;
  f.avx = true;
  return f;
}
ltk::CpuFeatures avx2() {
  ltk::CpuFeatures f = avx_only();
  f.avx2 = f.fma = true;
  return f;
}
ltk::CpuFeatures avx512() {
  ltk::CpuFeatures f = avx2();
  f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = true;
  return f;
}

}  // namespace

TEST_CASE("files: an atomic write replaces the file whole and leaves no temporary", "[core]") {
  ltk::test::TempDir dir;
  std::string path = dir.file("a.json");
  ltk::write_file_atomic(path, "one\n");
  ltk::write_file_atomic(path, "two\n");
  CHECK(ltk::read_file(path) == "two\n");
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  ltk::append_file_durable(dir.file("m.jsonl"), "a\n");
  ltk::append_file_durable(dir.file("m.jsonl"), "b\n");
  CHECK(ltk::read_file(dir.file("m.jsonl")) == "a\nb\n");
  std::filesystem::create_directories(dir.file("d.tmp/x"));
  ltk::rename_durable(dir.file("d.tmp"), dir.file("d"));
  CHECK(std::filesystem::is_directory(dir.file("d/x")));
  ltk::remove_tree(dir.file("d"));
  CHECK_FALSE(std::filesystem::exists(dir.file("d")));
  ltk::remove_tree(dir.file("never-existed"));  // fine
  CHECK_THROWS_WITH(ltk::write_file_atomic(dir.file("no/such/dir/f"), "x"), Contains("no/such/dir/f.tmp"));
  CHECK_THROWS_AS(ltk::read_file(dir.file("missing")), ltk::DataError);
  CHECK(ltk::parent_directory("a/b/c") == "a/b");
  CHECK(ltk::parent_directory("c") == ".");
}

TEST_CASE("files: on a full disk an atomic write keeps the old file and frees its temporary - an append leaves no torn "
          "line",
          "[core][faults]") {
  ltk::test::TempDir dir;
  ltk::test::SmallDisk disk(dir.file("disk"), "1m");
  if (!disk.mounted) {
    if (geteuid() == 0) FAIL("cannot mount a tmpfs as root");
    LTK_SKIP("not root: the full-disk case needs to mount a tmpfs");
  }
  const std::string file = disk.path + "/weights.pt", log = disk.path + "/metrics.jsonl";
  ltk::write_file_atomic(file, "old weights\n");
  // A page less 96 bytes: the page the file has holds 96 more, so a 500-byte record is cut off part way.
  const std::string lines = std::string(static_cast<size_t>(sysconf(_SC_PAGESIZE)) - 97, 'a') + "\n";
  ltk::append_file_durable(log, lines);
  disk.fill();
  CHECK_THROWS_WITH(ltk::write_file_atomic(file, std::string(1 << 20, 'w')),
                    Contains(file) && Contains("No space left on device"));
  CHECK(ltk::read_file(file) == "old weights\n");
  CHECK_FALSE(std::filesystem::exists(file + ".tmp"));  // its space is free again
  CHECK_THROWS_WITH(ltk::append_file_durable(log, "{\"record\": \"" + std::string(500, 'r') + "\"}\n"),
                    Contains(log) && Contains("No space left on device"));
  CHECK(ltk::read_file(log) == lines);  // whole lines only
  disk.free_space();
  ltk::append_file_durable(log, "{}\n");
  CHECK(ltk::read_file(log) == lines + "{}\n");
}

TEST_CASE("files: a second lock on a run directory fails naming the holder's pid", "[core]") {
  ltk::test::TempDir dir;
  {
    ltk::DirectoryLock first(dir.path().string());
    // flock locks belong to an open file description: a second open conflicts even in-process.
    CHECK_THROWS_WITH(ltk::DirectoryLock(dir.path().string()),
                      Contains("in use by another ltk-train (pid " + std::to_string(::getpid()) + ")"));
  }
  ltk::DirectoryLock again(dir.path().string());  // released with the first
}

TEST_CASE("blas: the strongest kernel a CPU runs, and how kernels rank", "[core][blas]") {
  CHECK(ltk::best_openblas_core(avx512()) == "SkylakeX");
  CHECK(ltk::best_openblas_core(avx2()) == "Haswell");
  CHECK(ltk::best_openblas_core(avx_only()) == "Sandybridge");
  CHECK(ltk::best_openblas_core(sse_only()).empty());
  ltk::CpuFeatures partial = avx2();
  partial.avx512f = true;  // AVX-512F without BW/DQ/VL (Knights Landing) does not run SkylakeX kernels
  CHECK(ltk::best_openblas_core(partial) == "Haswell");
  CHECK(ltk::openblas_core_rank("Prescott") == 0);
  CHECK(ltk::openblas_core_rank("SANDYBRIDGE") == 1);
  CHECK(ltk::openblas_core_rank("Zen") == 2);
  CHECK(ltk::openblas_core_rank("Cooperlake") == 3);
  CHECK(ltk::openblas_core_rank("SomeFutureCore") == -1);
}

TEST_CASE("cpu: a oneDNN instruction-set cap in the environment turns native bf16 and VNNI off", "[core][blas]") {
  for (const char* cap : {"", "ALL", "AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX512_CORE_FP16", "NOT_AN_ISA"})
    CHECK(ltk::onednn_cap_allows_bf16(cap));
  for (const char* cap : {"SSE41", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"})
    CHECK_FALSE(ltk::onednn_cap_allows_bf16(cap));
  ltk::CpuFeatures avx512_vnni = avx512(), avx_vnni = avx2(), amx = avx512();
  avx512_vnni.avx512_vnni = true;  // Cascade Lake
  avx_vnni.avx_vnni = true;        // Alder Lake: AVX-VNNI without AVX-512
  amx.amx_int8 = true;
  for (const auto& cpu : {avx512_vnni, avx_vnni, amx})
    for (const char* cap : {"", "ALL", "NOT_AN_ISA"}) CHECK(ltk::onednn_cap_allows_vnni(cap, cpu));
  for (const char* cap : {"", "AVX512_CORE_VNNI", "AVX2_VNNI"}) CHECK_FALSE(ltk::onednn_cap_allows_vnni(cap, avx512()));
  for (const char* cap : {"AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_AMX"}) {
    CHECK(ltk::onednn_cap_allows_vnni(cap, avx512_vnni));
    CHECK(ltk::onednn_cap_allows_vnni(cap, amx));
    CHECK_FALSE(ltk::onednn_cap_allows_vnni(cap, avx_vnni));  // the AVX2 branch is not under them
  }
  for (const char* cap : {"AVX2_VNNI", "AVX2_VNNI_2"}) {
    CHECK(ltk::onednn_cap_allows_vnni(cap, avx_vnni));
    CHECK_FALSE(ltk::onednn_cap_allows_vnni(cap, avx512_vnni));  // nor the AVX-512 one under these
  }
  for (const char* cap : {"SSE41", "AVX", "AVX2", "AVX512_CORE"})
    for (const auto& cpu : {avx512_vnni, avx_vnni, amx}) CHECK_FALSE(ltk::onednn_cap_allows_vnni(cap, cpu));
  // Read as oneDNN reads it: ONEDNN_ first, then DNNL_, in any case.
  unsetenv("LTK_NATIVE_BF16");
  unsetenv("LTK_VNNI");
  setenv("DNNL_MAX_CPU_ISA", "avx2", 1);
  CHECK(ltk::onednn_isa_cap().value == "AVX2");
  CHECK(ltk::onednn_isa_cap().variable == "DNNL_MAX_CPU_ISA");
  // Whatever this CPU has, oneDNN held to AVX2 computes neither bf16 nor int8 dot products natively.
  CHECK_FALSE(ltk::cpu_has_native_bf16());
  CHECK_FALSE(ltk::cpu_has_vnni());
  CHECK_FALSE(ltk::why_no_native_bf16().empty());
  const ltk::CpuFeatures here = ltk::detect_cpu_features();
  if (here.avx512_bf16 || here.amx_bf16)  // the cap is the reason here, and named
    CHECK_THAT(ltk::why_no_native_bf16(), Contains("DNNL_MAX_CPU_ISA=AVX2"));
  setenv("ONEDNN_MAX_CPU_ISA", "ALL", 1);
  CHECK(ltk::onednn_isa_cap().value == "ALL");
  CHECK(ltk::onednn_isa_cap().variable == "ONEDNN_MAX_CPU_ISA");
  setenv("LTK_NATIVE_BF16", "1", 1);  // the override wins over everything
  setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
  CHECK(ltk::cpu_has_native_bf16());
  setenv("LTK_NATIVE_BF16", "0", 1);
  CHECK_THAT(ltk::why_no_native_bf16(), Contains("LTK_NATIVE_BF16=0"));
  unsetenv("LTK_NATIVE_BF16");
  unsetenv("ONEDNN_MAX_CPU_ISA");
  unsetenv("DNNL_MAX_CPU_ISA");
  CHECK(ltk::onednn_isa_cap().variable.empty());
}

TEST_CASE("blas: the kernel decision from CPU, chosen kernel and environment", "[core][blas]") {
  struct Row {
    ltk::CpuFeatures cpu;
    std::string chosen;
    const char* openblas_coretype;
    const char* ltk_blas_coretype;
    const char* guard;
    bool reexec;
    std::string core;
  };
  const std::vector<Row> rows = {
      // The VM: AVX-512 present, OpenBLAS fell back to Prescott.
      {avx512(), "Prescott", nullptr, nullptr, nullptr, true, "SkylakeX"},
      {avx2(), "Prescott", nullptr, nullptr, nullptr, true, "Haswell"},
      {avx_only(), "Core2", nullptr, nullptr, nullptr, true, "Sandybridge"},
      {avx512(), "Haswell", nullptr, nullptr, nullptr, true, "SkylakeX"},
      {avx512(), "Sandybridge", "", nullptr, nullptr, true, "SkylakeX"},  // set but empty = unset
      // Nothing to fix: the kernel matches the CPU, or is stronger, or is unknown here.
      {avx512(), "SkylakeX", nullptr, nullptr, nullptr, false, ""},
      {avx512(), "Cooperlake", nullptr, nullptr, nullptr, false, ""},
      {avx2(), "Zen", nullptr, nullptr, nullptr, false, ""},
      {avx2(), "Haswell", nullptr, nullptr, nullptr, false, ""},
      {sse_only(), "Prescott", nullptr, nullptr, nullptr, false, ""},
      {avx512(), "NewCore", nullptr, nullptr, nullptr, false, ""},
      {avx512(), "", nullptr, nullptr, nullptr, false, ""},  // not OpenBLAS
      // A value the user or the system set is kept, whatever it is.
      {avx512(), "Prescott", "Prescott", nullptr, nullptr, false, ""},
      {avx512(), "Haswell", "Haswell", nullptr, nullptr, false, ""},
      // LTK_BLAS_CORETYPE=keep turns the fix off; any other value leaves it on.
      {avx512(), "Prescott", nullptr, "keep", nullptr, false, ""},
      {avx512(), "Prescott", nullptr, "auto", nullptr, true, "SkylakeX"},
      // The loop guard: a re-executed process never re-executes again.
      {avx512(), "Prescott", nullptr, nullptr, "Prescott", false, ""},
      {avx512(), "Prescott", nullptr, nullptr, "fallback:SkylakeX", false, ""},
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    INFO("row " << i << ": chosen " << r.chosen);
    auto d = ltk::decide_blas_core(r.cpu, r.chosen, r.openblas_coretype, r.ltk_blas_coretype, r.guard);
    CHECK(d.reexec == r.reexec);
    CHECK(d.core == r.core);
    if (d.reexec) CHECK_THAT(d.reason, Contains(r.chosen) && Contains("OPENBLAS_CORETYPE=" + r.core));
  }
}

TEST_CASE("blas: the loaded BLAS computes a correct GEMM and names its kernel", "[core][blas]") {
  CHECK(ltk::blas_gemm_is_correct());
  std::string described = ltk::describe_blas();
  INFO(described);
  // Under OpenBLAS (what setup.sh installs) the kernel is one the decision knows how to rank.
  std::string core = ltk::openblas_core();
  if (!core.empty()) {
    CHECK_THAT(described, Contains("OpenBLAS"));
    CHECK(ltk::openblas_core_rank(core) >= 0);
  }
}

namespace {

extern "C" void ltk_test_marker_handler(int) {}

int wait_code(pid_t pid) {
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  return ltk::exit_code_of(status);
}

}  // namespace

TEST_CASE(
    "process: a child gets its environment, streams and process group - its exit as a shell tells it - signals "
    "are captured and the old handlers come back",
    "[core]") {
  ltk::test::TempDir dir;
  ltk::test::write_file(dir.file("err"), "before\n");
  ltk::ChildSpec child;
  child.program = "/bin/sh";
  child.argv = {"sh", "-c", "echo \"$LTK_TEST_X $OMP_NUM_THREADS $(cat)\"; echo err >&2; exit 3"};
  child.env = {"LTK_TEST_X=hello", "OMP_NUM_THREADS=5"};
  child.stdout_path = dir.file("out");
  child.stderr_path = dir.file("err");
  child.null_stdin = true;
  // This process's stdin, for the moment, a pipe holding a line: the child reads /dev/null instead
  // when asked to, and the pipe otherwise.
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  REQUIRE(write(pipe_fds[1], "piped", 5) == 5);
  close(pipe_fds[1]);
  const int saved_stdin = dup(0);
  dup2(pipe_fds[0], 0);
  close(pipe_fds[0]);
  const int code = wait_code(ltk::spawn_child(child));
  child.null_stdin = false;
  child.stdout_path = dir.file("out2");
  const int code2 = wait_code(ltk::spawn_child(child));
  dup2(saved_stdin, 0);
  close(saved_stdin);
  CHECK(code == 3);
  CHECK(code2 == 3);
  CHECK(ltk::test::read_text(dir.file("out")) == "hello 5 \n");          // stdin was /dev/null
  CHECK(ltk::test::read_text(dir.file("out2")) == "hello 5 piped\n");    // the parent's stdin
  CHECK(ltk::test::read_text(dir.file("err")) == "before\nerr\nerr\n");  // appended to
  // A stream that cannot be opened: 126, and the program never runs.
  child.stdout_path = dir.file("no/such/dir/out");
  CHECK(wait_code(ltk::spawn_child(child)) == 126);
  CHECK(ltk::test::read_text(dir.file("err")) == "before\nerr\nerr\n");
  // A group of its own (a Ctrl-C reaches the parent only), and death by a signal is 128 + it.
  child = ltk::ChildSpec();
  child.program = "/bin/sleep";
  child.argv = {"sleep", "30"};
  const pid_t sleeper = ltk::spawn_child(child);
  CHECK(getpgid(sleeper) == sleeper);
  kill(sleeper, SIGTERM);
  CHECK(wait_code(sleeper) == 128 + SIGTERM);
  // A program that cannot be executed: 127.
  child.program = "/nonexistent/ltk-train";
  child.argv = {"ltk-train"};
  CHECK(wait_code(ltk::spawn_child(child)) == 127);
  // Signals are recorded while captured; the handler that was there before comes back.
  struct sigaction mine {
  }, now{};
  mine.sa_handler = ltk_test_marker_handler;
  sigemptyset(&mine.sa_mask);
  struct sigaction before {};
  sigaction(SIGINT, &mine, &before);
  {
    ltk::CapturedSignals signals;
    CHECK(ltk::CapturedSignals::last() == 0);
    raise(SIGINT);
    CHECK(ltk::CapturedSignals::last() == SIGINT);
    CHECK(ltk::CapturedSignals::take() == SIGINT);
    CHECK(ltk::CapturedSignals::last() == 0);
  }
  sigaction(SIGINT, &before, &now);
  CHECK(now.sa_handler == ltk_test_marker_handler);
}

TEST_CASE("parallel_chunks: every item once, in contiguous chunks - the first chunk's error - nested calls in place",
          "[core]") {
  for (int64_t n : {0, 1, 7, 1000, 4096}) {
    for (int threads : {1, 2, 5}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      std::atomic<int> chunks{0};
      ltk::parallel_chunks(n, threads, 100, [&](int64_t begin, int64_t end) {
        ++chunks;
        for (int64_t i = begin; i < end; ++i) ++seen[static_cast<size_t>(i)];
      });
      for (auto& s : seen) REQUIRE(s == 1);
      CHECK(chunks <= std::max<int64_t>(1, std::min<int64_t>(threads, n / 100)));
    }
  }
  // Each chunk throws: the error is the first chunk's, whichever finished first.
  REQUIRE_THROWS_WITH(ltk::parallel_chunks(4000, 4, 1,
                                           [](int64_t begin, int64_t) {
                                             if (begin == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
                                             throw ltk::Error("chunk at " + std::to_string(begin));
                                           }),
                      "chunk at 0");
  // Inside a chunk, another call runs on that thread as one chunk.
  std::atomic<int> inner{0};
  ltk::parallel_chunks(1000, 2, 1, [&](int64_t, int64_t) {
    ltk::parallel_chunks(1000, 4, 1, [&](int64_t begin, int64_t end) {
      CHECK(begin == 0);
      CHECK(end == 1000);
      ++inner;
    });
  });
  CHECK(inner == 2);
}
