// ltk-serve's HTTP/1.1 server (see http.h): one event thread owns every socket (epoll, edge-
// triggered) and does all of their I/O; handler threads only run the handler on a request that has
// arrived whole and hand the serialised response back through a queue and an eventfd.
//
// A connection is in one phase at a time:
//   idle      no request under way (a keep-alive connection between requests, a new connection)
//   header    a request's first bytes arrived, its head has not        (deadline: header_timeout_s)
//   body      its head is parsed, its body is arriving                  (deadline: body_timeout_s)
//   handling  a handler thread has it; the socket is not read           (no deadline)
//   writing   its response is being written                             (deadline: write_timeout_s)
//   lingering an error response went out; what the client still sends is read and dropped until it
//             closes (so that closing does not reset the connection before the client read the answer)
#include "ltk/serve/http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "ltk/serve/http_parse.h"

namespace ltk::serve {

std::string HttpRequest::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return "";
}

int64_t raise_open_files_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 1024;
  if (r.rlim_cur < r.rlim_max) {
    rlimit raised = r;
    raised.rlim_cur = r.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  return r.rlim_cur == RLIM_INFINITY ? int64_t{1} << 20 : static_cast<int64_t>(r.rlim_cur);
}

namespace {

using Clock = std::chrono::steady_clock;

// After an error response, what the client still sends is read and dropped: at most this much per
// wake-up, and the connection is closed once this much in all was dropped.
constexpr size_t kLingerReadPerCall = 256 * 1024;
constexpr size_t kLingerReadMax = 1 << 20;

enum class Phase { idle, header, body, handling, writing, lingering };

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

struct Task {
  Conn* conn;
  HttpRequest request;
  std::string content_encoding;  ///< the body's, still to decode
  bool head_only, keep_alive;
  int minor_version;
};

struct Done {
  Conn* conn;
  std::string bytes;
  bool close;
};

std::chrono::nanoseconds seconds(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

bool has_header(const std::vector<std::pair<std::string, std::string>>& headers, const std::string& name) {
  for (const auto& h : headers)
    if (strcasecmp(h.first.c_str(), name.c_str()) == 0) return true;
  return false;
}

std::string serialize(const HttpResponse& r, bool head_only, bool close, int minor_version) {
  std::string s;
  s.reserve(128 + r.content_type.size() + r.body.size() + 64 * r.headers.size());
  s += "HTTP/1.1 ";
  s += std::to_string(r.status);
  s += ' ';
  s += reason_phrase(r.status);
  s += "\r\nContent-Type: ";
  s += r.content_type;
  s += "\r\nContent-Length: ";
  s += std::to_string(r.body.size());
  s += "\r\n";
  for (const auto& [k, v] : r.headers) {
    s += k;
    s += ": ";
    s += v;
    s += "\r\n";
  }
  if (close)
    s += "Connection: close\r\n";
  else if (minor_version == 0)
    s += "Connection: keep-alive\r\n";
  s += "\r\n";
  if (!head_only) s += r.body;
  return s;
}

HttpResponse error_json(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.body = nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

std::string address_of(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
  return buf;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

bool is_reading(Phase p) {
  return p == Phase::idle || p == Phase::header || p == Phase::body;
}

}  // namespace

struct HttpServer::Impl {
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
  std::deque<Task> tasks;
  bool workers_stop = false;
  std::vector<std::thread> workers;
  std::mutex done_mutex;
  std::vector<Done> done;

  struct Counters {
    std::atomic<int64_t> open{0}, accepted{0}, refused_total{0}, refused_per_client{0};
    std::atomic<int64_t> header{0}, body{0}, idle{0}, write{0};
  } counters;

  Impl(HttpOptions options, Handler h, Observer obs, HeaderSource c)
      : o(std::move(options)), handler(std::move(h)), observer(std::move(obs)), common(std::move(c)) {
    epfd = epoll_create1(EPOLL_CLOEXEC);
    wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd < 0 || wakefd < 0) {
      const std::string why = std::strerror(errno);
      if (epfd >= 0) ::close(epfd);
      if (wakefd >= 0) ::close(wakefd);
      throw ServeError("cannot create the event loop: " + why);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &wake_tag;
    epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev);
  }
  ~Impl() {
    for (auto& [fd, c] : conns) ::close(fd);
    if (listen_fd >= 0) ::close(listen_fd);
    ::close(epfd);
    ::close(wakefd);
  }

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wakefd, &one, sizeof one);
  }

  void add_common(HttpResponse& r) const {
    if (!common) return;
    for (auto& [k, v] : common())
      if (!has_header(r.headers, k)) r.headers.emplace_back(k, v);
  }

  // ---- handler threads ----------------------------------------------------------------------

  void worker() {
    for (;;) {
      Task t;
      {
        std::unique_lock<std::mutex> lock(task_mutex);
        task_cv.wait(lock, [&] { return workers_stop || !tasks.empty(); });
        if (tasks.empty()) return;
        t = std::move(tasks.front());
        tasks.pop_front();
      }
      HttpResponse r = answer(t);
      add_common(r);
      const bool close = !t.keep_alive || stopping;
      Done d{t.conn, serialize(r, t.head_only, close, t.minor_version), close};
      if (observer) observer(t.request.path, r.status);
      bool was_empty;
      {
        std::lock_guard<std::mutex> lock(done_mutex);
        was_empty = done.empty();
        done.push_back(std::move(d));
      }
      if (was_empty) wake();
    }
  }

  // The handler's response to a request, or the refusal of its body: decompressed here, off the
  // event thread (inflating up to --max-body takes milliseconds).
  HttpResponse answer(Task& t) {
    const int decoded = decode_content(t.content_encoding, t.request.body, o.max_body);
    if (decoded == 413)
      return error_json(413, "the request body is larger than the server's --max-body once decompressed");
    if (decoded) return error_json(400, "the body is not valid " + t.content_encoding);
    const std::string type = t.request.header("Content-Type");
    if (strncasecmp(type.c_str(), "multipart/form-data", 19) == 0)
      return error_json(415, "send the request as JSON, not multipart form data");
    try {
      return handler(t.request);
    } catch (const std::exception& e) {
      return error_json(500, std::string("internal error: ") + e.what());
    } catch (...) {
      return error_json(500, "internal error");
    }
  }

  void start_workers() {
    const int n = std::max(1, o.threads);
    try {
      for (int i = 0; i < n; ++i) workers.emplace_back([this] { worker(); });
    } catch (const std::system_error& e) {
      if (workers.empty()) {
        throw ServeError(std::string("cannot start a handler thread: ") + e.what());
      }
      // fewer handler threads than asked for: serve with those
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(task_mutex);
      workers_stop = true;
    }
    task_cv.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
  }

  // ---- connections --------------------------------------------------------------------------

  void close_conn(Conn* c) {
    if (c->dead) return;
    c->dead = true;
    // (removed explicitly: a descriptor duplicated into a child process would keep it registered)
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, nullptr);
    ::close(c->fd);
    auto pc = per_client.find(c->peer);
    if (pc != per_client.end() && --pc->second <= 0) per_client.erase(pc);
    auto it = conns.find(c->fd);
    closed.push_back(std::move(it->second));
    conns.erase(it);
    counters.open = static_cast<int64_t>(conns.size());
  }

  void reset_request(Conn* c) {
    // a large body's buffer is not kept for the life of a keep-alive connection
    if (c->in.capacity() > 64 * 1024) std::string(c->in).swap(c->in);
    c->have_head = false;
    c->head = RequestHead{};
    c->chunks = ChunkedDecoder{};
    c->body.clear();
    c->scanned = 0;
  }

  void send_bytes(Conn* c, std::string bytes, bool close) {
    c->out = std::move(bytes);
    c->out_pos = 0;
    c->close_after = close;
    c->phase = Phase::writing;
    c->deadline = now + seconds(o.write_timeout_s);
    flush(c);
  }

  // The server's own refusal of the request being read: answered, then the connection closes.
  void refuse(Conn* c, int status, const std::string& message) {
    HttpResponse r = error_json(status, message);
    add_common(r);
    if (observer) observer(c->head.path, status);
    const int minor = c->have_head ? c->head.minor_version : 1;
    reset_request(c);
    send_bytes(c, serialize(r, false, true, minor), true);
  }

  void flush(Conn* c) {
    while (c->out_pos < c->out.size()) {
      const ssize_t n = ::send(c->fd, c->out.data() + c->out_pos, c->out.size() - c->out_pos, MSG_NOSIGNAL);
      if (n > 0) {
        c->out_pos += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;  // EPOLLOUT resumes it
      } else {
        close_conn(c);
        return;
      }
    }
    if (c->out.capacity() > 256 * 1024)
      std::string().swap(c->out);
    else
      c->out.clear();
    after_write(c);
  }

  void after_write(Conn* c) {
    if (c->close_after || draining) {
      if (c->peer_eof)
        close_conn(c);  // nothing more will come to linger for
      else
        start_linger(c);
      return;
    }
    c->phase = Phase::idle;
    c->deadline = now + seconds(o.idle_timeout_s);
    process(c);  // a request that came right behind (pipelined), even from a client that has half-closed
    if (c->dead || !is_reading(c->phase)) return;
    if (c->peer_eof)
      close_conn(c);  // no whole request left, and no more bytes coming
    else
      on_readable(c);  // what arrived while it was handled
  }

  void start_linger(Conn* c) {
    ::shutdown(c->fd, SHUT_WR);
    c->phase = Phase::lingering;
    c->deadline = now + seconds(std::min(2.0, std::max(o.header_timeout_s, 0.5)));
    std::string().swap(c->in);
    on_readable(c);
  }

  enum class ReadResult { again, eof, full, error };

  ReadResult read_some(Conn* c) {
    // Enough for the part of the request under way and then some: past this, its head or its body
    // is whole or refused. While lingering, what is read is dropped, a bounded amount per call (a
    // client streaming into an error does not keep the event thread).
    const size_t cap = (c->phase == Phase::body ? o.max_body : 0) + kMaxHead + buffer.size();
    size_t dropped = 0;
    for (;;) {
      const ssize_t n = ::recv(c->fd, buffer.data(), buffer.size(), 0);
      if (n > 0) {
        if (c->phase == Phase::lingering) {
          dropped += static_cast<size_t>(n);
          c->dropped += static_cast<size_t>(n);
          if (dropped >= kLingerReadPerCall) return ReadResult::full;
          continue;
        }
        c->in.append(buffer.data(), static_cast<size_t>(n));
        if (c->in.size() >= cap) return ReadResult::full;
      } else if (n == 0) {
        return ReadResult::eof;
      } else if (errno == EINTR) {
        continue;
      } else {
        return errno == EAGAIN || errno == EWOULDBLOCK ? ReadResult::again : ReadResult::error;
      }
    }
  }

  void on_readable(Conn* c) {
    while (!c->dead && (is_reading(c->phase) || c->phase == Phase::lingering)) {
      const ReadResult r = read_some(c);
      if (r == ReadResult::error || (r == ReadResult::eof && c->phase == Phase::lingering)) {
        close_conn(c);
        return;
      }
      if (c->phase == Phase::lingering) {
        if (r == ReadResult::full && c->dropped > kLingerReadMax) close_conn(c);
        if (r == ReadResult::full) return;  // the rest when more arrives, or at the linger deadline
        continue;
      }
      process(c);
      if (c->dead) return;
      if (r == ReadResult::eof) {
        c->peer_eof = true;  // a request that arrived whole is still answered
        if (is_reading(c->phase)) close_conn(c);
        return;
      }
      if (r == ReadResult::again) return;
    }
  }

  // Moves the request being read along: its head, then its body; hands it to a handler thread
  // once whole, or refuses it.
  void process(Conn* c) {
    if (!is_reading(c->phase) || (c->in.empty() && !c->have_head)) return;
    if (c->phase == Phase::idle) {
      c->phase = Phase::header;
      // a new connection's first head is due header_timeout_s after its accept (set there)
      if (c->requests > 0) c->deadline = now + seconds(o.header_timeout_s);
    }
    if (!c->have_head) {
      const size_t end = find_head_end(c->in, c->scanned);
      if (end == 0 || end > kMaxHead) {
        if (end > kMaxHead || c->in.size() > kMaxHead)
          refuse(c, 431, "the request's head (request line and headers) is larger than 64 KiB");
        return;
      }
      c->head = parse_head(std::string_view(c->in).substr(0, end), o.max_body);
      c->have_head = true;
      c->in.erase(0, end);
      if (c->head.error_status) {
        refuse(c, c->head.error_status, c->head.error);
        return;
      }
      if (c->head.chunked || c->head.content_length > 0) {
        c->phase = Phase::body;
        c->deadline = now + seconds(o.body_timeout_s);
        const size_t have = c->in.size();
        // (HTTP/1.0 clients never get one: RFC 9110 15.2.1; a send that does not go out whole is
        // harmless, clients send the body after a short wait anyway)
        if (c->head.expect_continue && c->head.minor_version >= 1 &&
            (c->head.chunked || have < static_cast<size_t>(c->head.content_length))) {
          static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
          ::send(c->fd, kContinue, sizeof kContinue - 1, MSG_NOSIGNAL);
        }
      }
    }
    if (c->head.chunked) {
      size_t pos = 0;
      const auto r = c->chunks.feed(c->in, pos, c->body, o.max_body);
      c->in.erase(0, pos);
      if (r == ChunkedDecoder::Result::more) return;
      if (r == ChunkedDecoder::Result::bad) return refuse(c, 400, "malformed chunked body");
      if (r == ChunkedDecoder::Result::too_large)
        return refuse(c, 413, "the request body is larger than the server's --max-body");
    } else if (c->head.content_length > 0) {
      const auto n = static_cast<size_t>(c->head.content_length);
      if (c->in.size() < n) return;
      c->body.assign(c->in, 0, n);
      c->in.erase(0, n);
    }
    complete(c);
  }

  void complete(Conn* c) {
    Task t;
    t.conn = c;
    t.content_encoding = std::move(c->head.content_encoding);  // decoded on the handler thread
    t.head_only = c->head.method == "HEAD";
    t.request.method = t.head_only ? "GET" : std::move(c->head.method);
    t.request.path = std::move(c->head.path);
    t.request.body = std::move(c->body);
    t.request.remote_addr = c->peer;
    t.request.headers = std::move(c->head.headers);
    t.minor_version = c->head.minor_version;
    t.keep_alive = c->head.keep_alive && ++c->requests < o.keep_alive_max && !draining;
    reset_request(c);
    c->phase = Phase::handling;
    {
      std::lock_guard<std::mutex> lock(task_mutex);
      tasks.push_back(std::move(t));
    }
    task_cv.notify_one();
  }

  void take_done() {
    uint64_t count;
    [[maybe_unused]] auto n = ::read(wakefd, &count, sizeof count);
    std::vector<Done> ready;
    {
      std::lock_guard<std::mutex> lock(done_mutex);
      ready.swap(done);
    }
    for (auto& d : ready) {
      if (draining && !d.close) {
        // serialised before the drain began: it must tell the client that the connection closes
        d.bytes.insert(d.bytes.find("\r\n\r\n") + 2, "Connection: close\r\n");
        d.close = true;
      }
      send_bytes(d.conn, std::move(d.bytes), d.close);
    }
  }

  // ---- accepting ----------------------------------------------------------------------------

  void refuse_connection(int fd, const std::string& why) {
    HttpResponse r = error_json(503, why);
    r.headers.emplace_back("Retry-After", "1");
    const std::string bytes = serialize(r, false, true, 1);
    [[maybe_unused]] auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd);
  }

  void accept_ready() {
    for (int i = 0; i < 256; ++i) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: the pending connection stays in the backlog; try again shortly.
          epoll_ctl(epfd, EPOLL_CTL_DEL, listen_fd, nullptr);
          accept_paused = true;
          resume_accept = now + std::chrono::milliseconds(100);
        }
        return;
      }
      ++counters.accepted;
      std::string peer = address_of(ss);
      if (static_cast<int64_t>(conns.size()) >= max_connections) {
        ++counters.refused_total;
        refuse_connection(
            fd, "the server holds --max-connections " + std::to_string(max_connections) + " connections; retry later");
        continue;
      }
      int& from_peer = per_client[peer];
      if (o.max_connections_per_client > 0 && from_peer >= o.max_connections_per_client) {
        ++counters.refused_per_client;
        refuse_connection(fd, "this address holds --max-connections-per-client " +
                                  std::to_string(o.max_connections_per_client) + " connections; close some first");
        continue;
      }
      ++from_peer;
      int yes = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      c->peer = std::move(peer);
      c->deadline = now + seconds(o.header_timeout_s);  // the first request's head is due from the accept
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.ptr = c.get();
      Conn* raw = c.get();
      conns.emplace(fd, std::move(c));
      counters.open = static_cast<int64_t>(conns.size());
      if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) close_conn(raw);
    }
  }

  // ---- deadlines and the drain --------------------------------------------------------------

  void sweep() {
    std::vector<Conn*> late;
    for (auto& [fd, c] : conns)
      if (c->phase != Phase::handling && now >= c->deadline) late.push_back(c.get());
    for (Conn* c : late) {
      switch (c->phase) {
        case Phase::idle:
          ++counters.idle;
          close_conn(c);
          break;
        case Phase::header:
          ++counters.header;
          refuse(c, 408,
                 "the request's head did not arrive within the server's --header-timeout-s (" +
                     seconds_text(o.header_timeout_s) + " s): the client stops sending");
          break;
        case Phase::body:
          ++counters.body;
          refuse(c, 408,
                 "the request's body did not arrive within the server's --body-timeout-s (" +
                     seconds_text(o.body_timeout_s) + " s): the client stops sending");
          break;
        case Phase::writing:
          ++counters.write;
          close_conn(c);
          break;
        default:
          close_conn(c);
      }
      // a refusal's own write gets its deadline; a client that does not read it is cut then
    }
    if (accept_paused && now >= resume_accept && listen_fd >= 0) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = &listen_tag;
      if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) == 0) accept_paused = false;
    }
  }

  void begin_drain() {
    draining = true;
    if (listen_fd >= 0) {
      ::close(listen_fd);
      listen_fd = -1;
    }
    // What has arrived is answered: bytes already received are read first, and a connection whose
    // request head is still incomplete after that (idle, or a head on its way) is closed.
    std::vector<Conn*> reading;
    for (auto& [fd, c] : conns)
      if (c->phase == Phase::idle || c->phase == Phase::header) reading.push_back(c.get());
    for (Conn* c : reading) {
      on_readable(c);
      if (!c->dead && (c->phase == Phase::idle || c->phase == Phase::header)) close_conn(c);
    }
  }

  void loop() {
    std::vector<epoll_event> events(512);
    next_sweep = Clock::now();
    for (;;) {
      if (stopping && !draining) begin_drain();
      if (draining && conns.empty()) return;
      const int timeout_ms = conns.empty() && !accept_paused ? -1 : 100;
      const int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), timeout_ms);
      if (n < 0 && errno != EINTR) throw ServeError(std::string("the event loop failed: ") + std::strerror(errno));
      now = Clock::now();
      for (int i = 0; i < n; ++i) {
        void* p = events[i].data.ptr;
        if (p == &wake_tag)
          take_done();
        else if (p == &listen_tag) {
          if (!draining && listen_fd >= 0) accept_ready();
        } else {
          Conn* c = static_cast<Conn*>(p);
          if (c->dead) continue;
          if (c->phase == Phase::writing && (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            flush(c);
          else if (is_reading(c->phase) || c->phase == Phase::lingering)
            on_readable(c);
        }
      }
      if (now >= next_sweep) {
        sweep();
        next_sweep = now + std::chrono::milliseconds(100);
      }
      closed.clear();
    }
  }
};

HttpServer::HttpServer(HttpOptions options, Handler handler, Observer on_response, HeaderSource common_headers)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler), std::move(on_response),
                                   std::move(common_headers))) {}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::bind() {
  auto& s = *impl_;
  const std::string where = s.o.host + ":" + std::to_string(s.o.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int gai = getaddrinfo(s.o.host.c_str(), std::to_string(s.o.port).c_str(), &hints, &found);
  if (gai != 0) throw ServeError("cannot listen on " + where + ": " + gai_strerror(gai));
  std::string why = "the address does not resolve or cannot be bound";
  for (addrinfo* a = found; a && s.listen_fd < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;
    // SO_REUSEADDR only: with SO_REUSEPORT a second server on the same port would start without an
    // error and take half the connections.
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    // A backlog of SOMAXCONN: clients that reconnect together must not have their SYNs dropped.
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) {
      s.listen_fd = fd;
      break;
    }
    why = std::strerror(errno);
    if (errno == EADDRINUSE) why += " (another server holds the port: stop it or give another --port)";
    ::close(fd);
  }
  freeaddrinfo(found);
  if (s.listen_fd < 0) throw ServeError("cannot listen on " + where + ": " + why);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(s.listen_fd, reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(ss).sin6_port
                                         : reinterpret_cast<sockaddr_in&>(ss).sin_port);
  // Descriptors kept for the process's own files (checkpoints, logs, the model's threads).
  const int64_t files = raise_open_files_limit();
  s.max_connections = std::max<int64_t>(1, std::min<int64_t>(s.o.max_connections, files - 64));
}

void HttpServer::run() {
  auto& s = *impl_;
  s.entered = true;
  if (s.stopping || s.listen_fd < 0) {
    if (s.listen_fd >= 0) ::close(s.listen_fd);
    s.listen_fd = -1;
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &s.listen_tag;
  epoll_ctl(s.epfd, EPOLL_CTL_ADD, s.listen_fd, &ev);
  s.start_workers();
  struct Join {
    Impl& s;
    ~Join() { s.stop_workers(); }
  } join{s};
  s.loop();
}

void HttpServer::stop() {
  if (!impl_) return;
  impl_->stopping = true;
  impl_->wake();
}

ConnectionStats HttpServer::stats() const {
  const auto& c = impl_->counters;
  ConnectionStats s;
  s.open = c.open;
  s.accepted = c.accepted;
  s.refused_total = c.refused_total;
  s.refused_per_client = c.refused_per_client;
  s.timeouts_header = c.header;
  s.timeouts_body = c.body;
  s.timeouts_idle = c.idle;
  s.timeouts_write = c.write;
  s.max_connections = impl_->max_connections;
  return s;
}

}  // namespace ltk::serve
