#include "ltk/dist/dist.h"

// ProcessGroupGloo.hpp declares the Gloo backend only with this define (LibTorch's own build
// sets it; Debian's libtorch was built with Gloo, whose headers come from libgloo-dev).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "ltk/core/log.h"
#include "ltk/core/stop.h"

namespace ltk::dist {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kHeartbeat = std::chrono::milliseconds(500);

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, int fallback, int lo, int hi) {
  auto v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v->c_str(), &end, 10);
  if (errno || end == v->c_str() || *end || x < lo || x > hi)
    throw ConfigError(fmt::format("environment variable {}={}: expected an integer in [{}, {}]", name, *v, lo, hi));
  return static_cast<int>(x);
}

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

// The local address on the route to the master: the one the other ranks can reach this one on
// (a host name can resolve to 127.0.1.1, which is no use to another host).
std::string local_address_towards(const std::string& master, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  if (getaddrinfo(master.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res)
    throw DistError(fmt::format("MASTER_ADDR {}: cannot resolve this address", master));
  std::string out;
  int fd = socket(res->ai_family, SOCK_DGRAM, 0);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    char buf[INET6_ADDRSTRLEN] = {0};
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof(buf));
      else
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof(buf));
      out = buf;
    }
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  if (out.empty()) throw DistError(fmt::format("MASTER_ADDR {}: no route to it from this host", master));
  return out;
}

// ltk's keys in the store; a torchrun restart gets fresh ones (the agent's store outlives attempts).
int g_attempt = 0;
std::string key(const char* what, int rank) { return fmt::format("ltk/{}/{}/{}", g_attempt, what, rank); }
std::string key(const char* what) { return fmt::format("ltk/{}/{}", g_attempt, what); }

}  // namespace

Launch launch_from_env() {
  Launch l;
  l.world = env_int("WORLD_SIZE", 1, 1, 1 << 20);
  l.rank = env_int("RANK", 0, 0, l.world - 1);
  l.local_rank = env_int("LOCAL_RANK", l.rank, 0, 1 << 20);
  if (l.world > 1) {
    if (!env("RANK")) throw ConfigError(fmt::format("environment variable WORLD_SIZE={} is set but RANK is not: "
                                                    "set both (torchrun does), or neither for one process", l.world));
    if (!env("MASTER_ADDR") || !env("MASTER_PORT"))
      throw ConfigError(fmt::format("WORLD_SIZE={}: MASTER_ADDR and MASTER_PORT must name rank 0's host and a free "
                                    "port (torchrun sets them; ltk-train --nproc N sets them for local workers)",
                                    l.world));
  }
  if (auto a = env("MASTER_ADDR")) l.master_addr = *a;
  l.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  l.agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
  l.restart = env_int("TORCHELASTIC_RESTART_COUNT", 0, 0, 1 << 20);
  return l;
}

struct Group::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::thread heartbeat;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool broken = false;    // a collective failed: work may still be queued behind it
  bool finished = false;  // finish() ran: every rank is past its last collective

  // A process group whose collective failed is let go of, not destroyed: its destructor would wait
  // for the work still queued, each piece up to the timeout. The process is about to exit.
  void drop_group() {
    if (broken) {
      (void)pg.release();
      return;
    }
    pg.reset();
  }

  void stop_heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
    }
    cv.notify_all();
    if (heartbeat.joinable()) heartbeat.join();
  }
};

Group::Group(const Launch& launch, double timeout_s) : launch_(launch), timeout_s_(timeout_s), impl_(new Impl) {
  // A rank that exits closes its sockets; a write to one (Gloo's; the store's sends already pass
  // MSG_NOSIGNAL) must fail with EPIPE and be reported, not raise SIGPIPE, which ended rank 0
  // without a word (exit 141, seen in CI while rank 1 failed on its data). Not restored: a group
  // whose collective failed is let go of with its threads still running (Impl::drop_group).
  std::signal(SIGPIPE, SIG_IGN);
  const std::string where = fmt::format("{}:{}", launch.master_addr, launch.master_port);
  g_attempt = launch.restart;
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<uint16_t>(launch.master_port);
  opts.isServer = launch.rank == 0 && !launch.agent_store;
  opts.numWorkers = static_cast<size_t>(launch.world);
  opts.waitWorkers = false;
  opts.timeout = millis(timeout_s);
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, opts);
  } catch (const std::exception& e) {
    if (opts.isServer)
      throw DistError(fmt::format("rank 0 cannot hold the rendezvous at MASTER_PORT {} ({}): is the port in use by "
                                  "another job? Choose another MASTER_PORT",
                                  launch.master_port, e.what()));
    throw DistError(fmt::format("rank {} cannot reach the master at {} within {} s (trainer.dist_timeout_s): is "
                                "rank 0 running, and is MASTER_ADDR an address of its host that this host can reach? ({})",
                                launch.rank, where, timeout_s, e.what()));
  }
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  const std::string me = fmt::format("{} pid {}", host, getpid());
  impl_->store->set(key("join", launch.rank), std::vector<uint8_t>(me.begin(), me.end()));
  auto options = c10d::ProcessGroupGloo::Options::create(millis(timeout_s));
  if (auto ifname = env("GLOO_SOCKET_IFNAME"))
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(*ifname));
  else
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(
        local_address_towards(launch.master_addr, launch.master_port)));
  options->threads = 2;
  // The heartbeat, on a connection of its own (a store client is not shared between threads), from
  // before the process group forms: a rank waiting for the others shows it is alive.
  auto hb_opts = opts;
  hb_opts.isServer = false;
  c10::intrusive_ptr<c10d::TCPStore> hb_store;
  try {
    hb_store = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, hb_opts);
  } catch (const std::exception& e) {
    throw DistError(fmt::format("rank {} lost the master at {} while joining ({})", launch.rank, where, e.what()));
  }
  impl_->heartbeat = std::thread([impl = impl_.get(), hb_store, k = key("hb", launch.rank)] {
    std::unique_lock<std::mutex> lock(impl->mu);
    while (!impl->stopping) {
      lock.unlock();  // the store call may block: stop_heartbeat() must not wait for it
      try {
        hb_store->add(k, 1);
      } catch (const std::exception&) {
        // The master is gone or slow: try again (a collective reports a lost master).
      }
      lock.lock();
      impl->cv.wait_for(lock, kHeartbeat);
    }
  });
  try {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(key("pg"), impl_->store);
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, launch.rank, launch.world, options);
  } catch (const std::exception& e) {
    impl_->stop_heartbeat();  // the destructor does not run for a constructor that throws
    std::vector<std::string> missing, failed;
    try {
      for (int r = 0; r < launch.world; ++r) {
        if (!impl_->store->check({key("join", r)})) missing.push_back(std::to_string(r));
        if (r != launch.rank && impl_->store->check({key("error", r)})) {
          auto bytes = impl_->store->get(key("error", r));
          failed.push_back(fmt::format("rank {} failed: {}", r, std::string(bytes.begin(), bytes.end())));
        }
      }
    } catch (const std::exception&) {
    }
    if (!failed.empty())
      throw DistError(fmt::format("distributed training failed on rank {} of {}: {}", launch.rank, launch.world,
                                  fmt::join(failed, "; ")));
    throw DistError(fmt::format("the process group did not form within {} s (trainer.dist_timeout_s){}: {}", timeout_s,
                                missing.empty() ? std::string()
                                                : fmt::format("; rank(s) {} never joined", fmt::join(missing, ", ")),
                                e.what()));
  }
  log::debug("[dist] rank {} of {} joined the group at {}", launch.rank, launch.world, where);
}

Group::~Group() {
  impl_->stop_heartbeat();
  impl_->drop_group();
  impl_->store.reset();
}

std::string Group::diagnose() {
  auto& store = *impl_->store;
  try {
    std::vector<std::string> failed;
    for (int r = 0; r < world(); ++r) {
      if (r == rank() || !store.check({key("error", r)})) continue;
      auto bytes = store.get(key("error", r));
      failed.push_back(fmt::format("rank {} failed: {}", r, std::string(bytes.begin(), bytes.end())));
    }
    if (!failed.empty()) {
      store.set(key("ack", rank()), std::vector<uint8_t>{1});
      return fmt::format("{}", fmt::join(failed, "; "));
    }
    std::vector<int64_t> before(static_cast<size_t>(world()));
    for (int r = 0; r < world(); ++r) before[r] = store.add(key("hb", r), 0);
    std::this_thread::sleep_for(3 * kHeartbeat);
    std::vector<std::string> lost;
    for (int r = 0; r < world(); ++r)
      if (r != rank() && store.add(key("hb", r), 0) == before[r]) lost.push_back(std::to_string(r));
    if (!lost.empty())
      return fmt::format("lost rank {} (no heartbeat for {} ms: killed, crashed, or its host is unreachable)",
                         fmt::join(lost, ", "), 3 * kHeartbeat.count());
    return fmt::format("every rank is alive, but a collective did not complete within {} s (trainer.dist_timeout_s): "
                       "the ranks are out of step, or one is much slower than the others (raise the timeout)",
                       timeout_s_);
  } catch (const std::exception&) {
    if (rank() != 0)
      return fmt::format("lost rank 0 (the master at {}:{}, which holds the store): it exited, or its host is "
                         "unreachable",
                         launch_.master_addr, launch_.master_port);
    return "the store is unreachable";
  }
}

void Group::raise(const std::string& op, const std::exception& e) {
  impl_->broken = true;
  std::string why = diagnose();
  // A rank stopped by a signal before the ranks could agree on a step (while the data loaded):
  // the job stops as that rank did, with the same signal, not as a failure.
  const std::string stopped = "failed: stopped by signal ";
  if (auto at = why.find(stopped); at != std::string::npos) throw StopRequested(std::atoi(why.c_str() + at + stopped.size()));
  throw DistError(fmt::format("distributed training failed on rank {} of {}: {} ({} failed: {})", rank(), world(), why,
                              op, e.what()));
}

void Group::all_reduce_sum(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes) {
  struct Bucket {
    std::vector<size_t> members;
    torch::Tensor flat;
  };
  std::vector<Bucket> buckets;
  std::map<int, size_t> open;  // dtype -> the bucket being filled
  std::map<size_t, int64_t> bytes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    int dtype = static_cast<int>(t.scalar_type());
    auto it = open.find(dtype);
    int64_t size = t.numel() * static_cast<int64_t>(t.element_size());
    if (it == open.end() || bytes[it->second] + size > bucket_bytes) {
      buckets.push_back({});
      it = open.insert_or_assign(dtype, buckets.size() - 1).first;
      bytes[it->second] = 0;
    }
    buckets[it->second].members.push_back(i);
    bytes[it->second] += size;
  }
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    for (auto& b : buckets) {
      if (b.members.size() == 1 && tensors[b.members[0]].is_contiguous()) {
        b.flat = tensors[b.members[0]];
      } else {
        std::vector<torch::Tensor> parts;
        for (size_t i : b.members) parts.push_back(tensors[i].reshape({-1}));
        b.flat = torch::cat(parts);
      }
      std::vector<at::Tensor> io{b.flat};
      works.push_back(impl_->pg->allreduce(io));
    }
    for (auto& w : works) w->wait();
  } catch (const DistError&) {
    throw;
  } catch (const std::exception& e) {
    raise("all-reduce", e);
  }
  for (auto& b : buckets) {
    if (b.members.size() == 1 && b.flat.is_same(tensors[b.members[0]])) continue;
    int64_t offset = 0;
    for (size_t i : b.members) {
      auto& t = tensors[i];
      t.copy_(b.flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

int64_t Group::all_reduce_rows(const std::vector<torch::Tensor>& matrices, const std::vector<torch::Tensor>& others,
                               const torch::Tensor& header, const std::function<bool()>& before_gradients,
                               int64_t bucket_bytes) {
  // 1. The header, and which rows of each matrix each rank touched (their counts, by rank).
  const auto h = header.numel(), m_count = static_cast<int64_t>(matrices.size());
  auto first = torch::zeros({h + m_count * world()}, torch::kDouble);
  first.narrow(0, 0, h).copy_(header);
  std::vector<torch::Tensor> rows;
  for (int64_t m = 0; m < m_count; ++m) {
    rows.push_back(matrices[static_cast<size_t>(m)].ne(0).any(1).nonzero().flatten());
    first[h + m * world() + rank()] = static_cast<double>(rows.back().numel());
  }
  all_reduce_sum({first});
  header.copy_(first.narrow(0, 0, h));
  if (!before_gradients()) return first.numel() * 8;
  auto counts = first.narrow(0, h, m_count * world()).view({m_count, world()});
  // 2. Sparse where the gathered rows are fewer than half the matrix; the rest dense. The row
  // numbers travel in the gradients' type where it holds them exactly (float32: below 2^24).
  std::vector<torch::Tensor> all = others, packed;
  std::vector<size_t> sparse;
  std::vector<int64_t> width;
  int64_t sent = first.numel() * 8;
  for (const auto& t : others) sent += t.numel() * static_cast<int64_t>(t.element_size());
  for (size_t m = 0; m < matrices.size(); ++m) {
    const auto& g = matrices[m];
    const auto most = static_cast<int64_t>(counts[static_cast<int64_t>(m)].max().item<double>());
    const bool exact = g.scalar_type() == torch::kDouble || (g.scalar_type() == torch::kFloat && g.size(0) < (1 << 24));
    if (!exact || most * world() * 2 >= g.size(0)) {
      all.push_back(g);
      sent += g.numel() * static_cast<int64_t>(g.element_size());
      continue;
    }
    // Each rank fills its own slot (row number, then the row); the sum is everyone's rows.
    auto slots = torch::zeros({world(), std::max<int64_t>(most, 1), g.size(1) + 1}, g.options());
    const auto n = rows[m].numel();
    if (n) {
      auto mine = slots[rank()].narrow(0, 0, n);
      mine.select(1, 0).copy_(rows[m]);
      mine.narrow(1, 1, g.size(1)).copy_(g.index_select(0, rows[m]));
    }
    sparse.push_back(m);
    packed.push_back(slots);
    all.push_back(slots);
    sent += slots.numel() * static_cast<int64_t>(slots.element_size());
  }
  all_reduce_sum(all, bucket_bytes);
  for (size_t k = 0; k < sparse.size(); ++k) {
    auto g = matrices[sparse[k]];
    g.zero_();
    for (int r = 0; r < world(); ++r) {  // in rank order: every rank adds the same numbers alike
      const auto n = static_cast<int64_t>(counts[static_cast<int64_t>(sparse[k])][r].item<double>());
      if (!n) continue;
      auto theirs = packed[k][r].narrow(0, 0, n);
      g.index_add_(0, theirs.select(1, 0).to(torch::kLong), theirs.narrow(1, 1, g.size(1)));
    }
  }
  return sent;
}

void Group::broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  try {
    for (const auto& t : tensors) {
      std::vector<at::Tensor> io{t.is_contiguous() ? t : t.contiguous()};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      impl_->pg->broadcast(io, o)->wait();
      if (!io[0].is_same(t)) t.copy_(io[0]);
    }
  } catch (const std::exception& e) {
    raise("broadcast", e);
  }
}

void Group::barrier() {
  try {
    impl_->pg->barrier()->wait();
  } catch (const std::exception& e) {
    raise("barrier", e);
  }
}

std::vector<std::string> Group::all_gather_string(const std::string& name, const std::string& value) {
  // Through the process group, not the store: a rank that fails instead ends this at once.
  auto lengths = torch::zeros({world()}, torch::kDouble);
  lengths[rank()] = static_cast<double>(value.size());
  all_reduce_sum({lengths});
  const auto longest = static_cast<int64_t>(lengths.max().item<double>());
  auto bytes = torch::zeros({world(), std::max<int64_t>(longest, 1)}, torch::kDouble);
  for (size_t i = 0; i < value.size(); ++i) bytes[rank()][static_cast<int64_t>(i)] = static_cast<unsigned char>(value[i]);
  all_reduce_sum({bytes});
  std::vector<std::string> out;
  auto b = bytes.accessor<double, 2>();
  for (int r = 0; r < world(); ++r) {
    std::string s(static_cast<size_t>(lengths[r].item<double>()), '\0');
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(static_cast<unsigned char>(b[r][static_cast<int64_t>(i)]));
    out.push_back(std::move(s));
  }
  (void)name;
  return out;
}

void Group::fail(const std::string& message) noexcept {
  if (impl_->finished) return;  // the others are past their last collective (or gone)
  try {
    impl_->store->set(key("error", rank()), std::vector<uint8_t>(message.begin(), message.end()));
  } catch (const std::exception&) {
  }
  try {
    impl_->drop_group();  // closes the connections: the others' collectives fail now, not at their timeout
  } catch (const std::exception&) {
  }
  if (rank() == 0) {
    // The store lives in this process: keep it until every other rank has read why, failed on its
    // own, or stopped beating (killed).
    const auto until = Clock::now() + std::min(millis(timeout_s_), std::chrono::milliseconds(10000));
    try {
      auto& store = *impl_->store;
      std::vector<int64_t> beats(static_cast<size_t>(world()), -1);
      std::vector<Clock::time_point> moved(static_cast<size_t>(world()), Clock::now());
      while (Clock::now() < until) {
        int done = 0;
        for (int r = 1; r < world(); ++r) {
          const int64_t b = store.add(key("hb", r), 0);
          if (b != beats[r]) {
            beats[r] = b;
            moved[r] = Clock::now();
          }
          if (store.check({key("ack", r)}) || store.check({key("error", r)}) || Clock::now() - moved[r] > 3 * kHeartbeat)
            ++done;
        }
        if (done >= world() - 1) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    } catch (const std::exception&) {
    }
  }
}

void Group::finish() {
  barrier();
  impl_->finished = true;
  impl_->stop_heartbeat();
}

}  // namespace ltk::dist
