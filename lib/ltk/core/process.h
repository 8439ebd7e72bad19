// Child processes, the one way ltk starts them: ltk-train --nproc's workers and ltk-sweep's trials.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace ltk {

/// A child to start. `argv[0]` is what the child sees as its name; `program` is what is executed.
struct ChildSpec {
  std::string program;
  std::vector<std::string> argv;
  /// NAME=VALUE set in the child; the parent's variables of the same names are dropped, the rest kept.
  std::vector<std::string> env;
  std::string stdout_path;  ///< "" = inherited; else truncated and written
  std::string stderr_path;  ///< "" = inherited; else appended to
  bool null_stdin = false;  ///< stdin from /dev/null
};

/// Forks and executes `spec`. The child gets a process group of its own (a Ctrl-C reaches the
/// parent, which passes it on once), the default SIGINT and SIGTERM handlers before any signal can
/// reach it (one sent right after spawn_child returns stops it, never runs the parent's handler), and dies with the
/// parent (SIGTERM: a trainer writes its checkpoint). argv and the environment are made before fork: the child only
/// redirects and executes; it exits 126 when a stream cannot be opened, 127 when execve fails. Throws Error when fork
/// fails.
pid_t spawn_child(const ChildSpec& spec);

/// A waitpid status as a shell tells it: the exit status, or 128 + the signal that killed it.
int exit_code_of(int status);

/// While one exists, SIGINT and SIGTERM are recorded (not acted on) for the code that owns the
/// children to pass on; the previous handlers come back when it goes.
class CapturedSignals {
 public:
  CapturedSignals();
  ~CapturedSignals();
  CapturedSignals(const CapturedSignals&) = delete;
  CapturedSignals& operator=(const CapturedSignals&) = delete;

  /// The last signal received, 0 when none.
  static int last();
  /// last(), cleared.
  static int take();

 private:
  struct Saved;
  Saved* saved_;
};

/// A TCP port that can be bound now (on every address), chosen at random below the kernel's
/// ephemeral range when it can be: a port from that range, free when chosen, may be taken by any
/// process's outgoing connection before the rendezvous binds it (seen with tests opening hundreds
/// of connections beside a data-parallel job). -1 when none is found.
int free_local_port();

}  // namespace ltk
