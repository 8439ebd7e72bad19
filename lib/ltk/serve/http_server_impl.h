// The state of ltk-serve's HTTP server (http.h's HttpServer::Impl), shared by its two sources and
// nothing else: http.cpp (the event loop, the handler threads, the drain) and http_connections.cpp
// (each connection's reading, writing and deadlines, and the accepting of new ones). One event
// thread owns every socket (epoll, edge-triggered) and does all of their I/O; handler threads only
// run the handler on a request that has arrived whole and hand the serialised response back through
// a queue and an eventfd.
//
// A connection is in one phase at a time:
//   idle      no request under way (a keep-alive connection between requests, a new connection)
//   header    a request's first bytes arrived, its head has not        (deadline: header_timeout_s)
//   body      its head is parsed, its body is arriving                  (deadline: body_timeout_s)
//   handling  a handler thread has it; the socket is not read           (no deadline)
//   writing   its response is being written                             (deadline: write_timeout_s)
//   lingering an error response went out; what the client still sends is read and dropped until it
//             closes (so that closing does not reset the connection before the client read the answer)
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ltk/serve/http.h"
#include "ltk/serve/http_parse.h"

namespace ltk::serve {

namespace http_detail {

using Clock = std::chrono::steady_clock;

// After an error response, what the client still sends is read and dropped: at most this much per
// wake-up, and the connection is closed once this much in all was dropped.
constexpr size_t kLingerReadPerCall = 256 * 1024;
constexpr size_t kLingerReadMax = 1 << 20;

enum class Phase { idle, header, body, handling, writing, lingering };

inline bool is_reading(Phase p) {
  return p == Phase::idle || p == Phase::header || p == Phase::body;
}

struct Conn {
  int fd = -1;
  std::string peer;
  Phase phase = Phase::idle;
  Clock::time_point deadline;
  bool dead = false, peer_eof = false, close_after = false;
  size_t requests = 0;
  size_t dropped = 0;  ///< bytes read and dropped while lingering
  // the request being read
  std::string in;      ///< bytes read and not consumed (after the head is parsed: from the body on)
  size_t scanned = 0;  ///< how far find_head_end looked
  bool have_head = false;
  RequestHead head;
  ChunkedDecoder chunks;
  std::string body;
  // the response being written
  std::string out;
  size_t out_pos = 0;
};

/// A whole request, for a handler thread.
struct Task {
  Conn* conn;
  HttpRequest request;
  std::string content_encoding;  ///< the body's, still to decode
  bool head_only, keep_alive;
  int minor_version;
};

/// A handler thread's serialised response, for the event thread to write.
struct Done {
  Conn* conn;
  std::string bytes;
  bool close;
};

inline std::chrono::nanoseconds seconds(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

/// The response's bytes: status line, Content-Type, Content-Length, its headers, Connection.
std::string serialize(const HttpResponse& r, bool head_only, bool close, int minor_version);
/// A response {"error": message} with that status.
HttpResponse error_json(int status, const std::string& message);

}  // namespace http_detail

struct HttpServer::Impl {
  using Clock = http_detail::Clock;
  using Conn = http_detail::Conn;

  HttpOptions o;
  Handler handler;
  Observer observer;
  HeaderSource common;
  int epfd = -1, wakefd = -1, listen_fd = -1;
  bool entered = false;
  std::atomic<bool> stopping{false};
  int64_t max_connections = 0;
  char listen_tag = 0, wake_tag = 0;  // epoll data for the two non-connection descriptors

  // the event thread's own
  std::unordered_map<int, std::unique_ptr<Conn>> conns;
  std::unordered_map<std::string, int> per_client;
  std::vector<std::unique_ptr<Conn>> closed;  // freed after the events of the wait that closed them
  bool draining = false, accept_paused = false;
  Clock::time_point now, resume_accept, next_sweep;
  std::vector<char> buffer = std::vector<char>(64 * 1024);

  // handler threads
  std::mutex task_mutex;
  std::condition_variable task_cv;
  std::deque<http_detail::Task> tasks;
  bool workers_stop = false;
  std::vector<std::thread> workers;
  std::mutex done_mutex;
  std::vector<http_detail::Done> done;

  struct Counters {
    std::atomic<int64_t> open{0}, accepted{0}, refused_total{0}, refused_per_client{0};
    std::atomic<int64_t> header{0}, body{0}, idle{0}, write{0};
  } counters;

  Impl(HttpOptions options, Handler h, Observer obs, HeaderSource c);
  ~Impl();

  // ---- http.cpp: the event loop, the handler threads, the drain --------------------------------
  void wake();
  void add_common(HttpResponse& r) const;
  void worker();
  HttpResponse answer(http_detail::Task& t);
  void start_workers();
  void stop_workers();
  void take_done();
  void begin_drain();
  void loop();

  // ---- http_connections.cpp: each connection, accepting, deadlines -----------------------------
  void close_conn(Conn* c);
  void reset_request(Conn* c);
  void send_bytes(Conn* c, std::string bytes, bool close);
  void refuse(Conn* c, int status, const std::string& message);
  void flush(Conn* c);
  void after_write(Conn* c);
  void start_linger(Conn* c);
  enum class ReadResult { again, eof, full, error };
  ReadResult read_some(Conn* c);
  void on_readable(Conn* c);
  void process(Conn* c);
  void complete(Conn* c);
  void refuse_connection(int fd, const std::string& why);
  void accept_ready();
  void sweep();
};

}  // namespace ltk::serve
