#include "ltk/core/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <random>
#include <string_view>

#include "ltk/core/error.h"

namespace ltk {

namespace {

volatile sig_atomic_t g_signal = 0;
extern "C" void on_captured_signal(int sig) {
  g_signal = sig;
}

bool named_in(std::string_view kv, const std::vector<std::string>& vars) {
  for (const auto& v : vars) {
    const size_t eq = v.find('=');
    if (kv.size() > eq && kv.compare(0, eq + 1, std::string_view(v).substr(0, eq + 1)) == 0) return true;
  }
  return false;
}

}  // namespace

pid_t spawn_child(const ChildSpec& spec) {
  std::vector<std::string> args = spec.argv, vars = spec.env;
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& v : vars) envp.push_back(v.data());
  for (char** e = environ; *e; ++e)
    if (!named_in(*e, spec.env)) envp.push_back(*e);
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  // Signals wait until the child has its default handlers: one sent right after fork would
  // otherwise run the parent's handler in the child (and a stop request be lost there).
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &before);
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGINT, SIG_DFL);  // not the parent's handler: a signal before execve must still stop it
    signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    setpgid(0, 0);                     // Ctrl-C reaches the parent, which passes it on once
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // a parent that dies takes its children with it
    if (getppid() != parent) _exit(1);
    if (spec.null_stdin) {
      const int in = ::open("/dev/null", O_RDONLY);
      if (in < 0 || dup2(in, 0) < 0) _exit(126);
      if (in > 2) close(in);
    }
    if (!spec.stdout_path.empty()) {
      const int out = ::open(spec.stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (out < 0 || dup2(out, 1) < 0) _exit(126);
      if (out > 2) close(out);  // not left open in the program
    }
    if (!spec.stderr_path.empty()) {
      const int err = ::open(spec.stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (err < 0 || dup2(err, 2) < 0) _exit(126);
      if (err > 2) close(err);
    }
    execve(spec.program.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  if (pid < 0) throw Error("fork failed: cannot start " + spec.program);
  setpgid(pid, pid);  // set on both sides: whichever runs first
  return pid;
}

int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct CapturedSignals::Saved {
  struct sigaction int_ {
  }, term_{};
};

CapturedSignals::CapturedSignals() : saved_(new Saved) {
  g_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_captured_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &saved_->int_);
  sigaction(SIGTERM, &sa, &saved_->term_);
}

CapturedSignals::~CapturedSignals() {
  sigaction(SIGINT, &saved_->int_, nullptr);
  sigaction(SIGTERM, &saved_->term_, nullptr);
  delete saved_;
}

int CapturedSignals::last() {
  return g_signal;
}

int CapturedSignals::take() {
  const int sig = g_signal;
  g_signal = 0;
  return sig;
}

int free_local_port() {
  auto bindable = [](int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<uint16_t>(port));
    socklen_t len = sizeof(a);
    int got = -1;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      got = ntohs(a.sin_port);
    close(fd);
    return got;
  };
  int ephemeral_low = 32768;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%d", &ephemeral_low) != 1) ephemeral_low = 32768;
    std::fclose(f);
  }
  const int lo = std::max(1024, ephemeral_low - 12000), hi = ephemeral_low - 1;
  if (hi > lo) {
    std::mt19937 rng(std::random_device{}());
    for (int i = 0; i < 64; ++i)
      if (int port = bindable(lo + static_cast<int>(rng() % static_cast<unsigned>(hi - lo + 1))); port > 0) return port;
  }
  return bindable(0);
}

}  // namespace ltk
