// Data-parallel training across processes: the torchrun launch convention and a process group on
// PyTorch's c10d engine (its TCPStore for the rendezvous, Gloo for the collectives on CPU).
//
// Every collective is called by every rank in the same order; a failure (a rank that died, exited
// with an error, or stopped answering) surfaces as a DistError naming the rank at fault, never a hang:
// each collective waits at most the group's timeout.
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ltk/core/error.h"

namespace ltk::dist {

class DistError : public Error {
 public:
  using Error::Error;
};

/// Where this process sits in the job, from torchrun's environment variables (RANK, WORLD_SIZE,
/// LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Without WORLD_SIZE (or with 1) the job is one process.
struct Launch {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// Under torchrun the agent holds the store at MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE): rank
  /// 0 connects to it instead of serving one.
  bool agent_store = false;
  int restart = 0;  ///< TORCHELASTIC_RESTART_COUNT: keys of an earlier attempt are not read
};

/// Reads the launch from the environment; ConfigError naming the variable for a malformed or
/// inconsistent one (RANK >= WORLD_SIZE, a port out of range, WORLD_SIZE without MASTER_ADDR...).
Launch launch_from_env();

/// A process group: rendezvous through a TCPStore held by rank 0 at MASTER_ADDR:MASTER_PORT, then
/// Gloo over TCP. Each rank also sends a heartbeat to the store, so that a failed collective can
/// name the rank that was lost. Making one ignores SIGPIPE for the rest of the process: a write to
/// a peer that exited fails (EPIPE) and is reported instead of ending the rank silently.
class Group {
 public:
  /// Joins the group; DistError when the port is taken (rank 0), the master cannot be reached or
  /// not every rank joins within `timeout_s`.
  Group(const Launch& launch, double timeout_s);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return launch_.rank; }
  int world() const { return launch_.world; }
  int local_rank() const { return launch_.local_rank; }
  double timeout_s() const { return timeout_s_; }

  /// Sums the tensors over the ranks, in place, packed into flat buffers of at most `bucket_bytes`
  /// (one collective per buffer, all in flight at once). Same shapes and dtypes on every rank.
  void all_reduce_sum(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
  /// Sums 2-D gradients over the ranks, in place, sending only the rows some rank has non-zero
  /// when those are few (an embedding's gradient touches the batch's tokens only): each rank's
  /// rows are gathered and added in rank order, so every rank gets the same sums. Tensors whose
  /// touched rows are many go through all_reduce_sum, as do `others`. `header` (float64, 1-D) is
  /// summed in the first collective, before the gradients are touched: `before_gradients` sees it
  /// summed and may scale them. Two collectives in all (each costs a thread hand-off and a round
  /// trip). Returns the bytes this rank sent.
  int64_t all_reduce_rows(const std::vector<torch::Tensor>& matrices, const std::vector<torch::Tensor>& others,
                          const torch::Tensor& header, const std::function<bool()>& before_gradients,
                          int64_t bucket_bytes = 25 << 20);
  /// Copies rank `root`'s tensors to every rank, in place.
  void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0);
  void barrier();
  /// Every rank's `value`, by rank (small values such as fingerprints; `name` says what for).
  std::vector<std::string> all_gather_string(const std::string& key, const std::string& value);

  /// Tells the other ranks why this one is failing (they name it in their own error) and closes
  /// its connections so that they notice at once. Rank 0, which holds the store, waits a little
  /// for the others to read the message. No collective may follow.
  void fail(const std::string& message) noexcept;
  /// The end of the job on this rank: waits for every rank, then stops the heartbeat.
  void finish();

 private:
  [[noreturn]] void raise(const std::string& op, const std::exception& e);
  std::string diagnose();

  struct Impl;
  Launch launch_;
  double timeout_s_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ltk::dist
