// ltk-serve's HTTP/1.1 server (see http.h): the public HttpServer, its event loop, its handler
// threads and its drain. Each connection's reading, writing and deadlines are in
// http_connections.cpp; both work on HttpServer::Impl (http_server_impl.h, which also describes a
// connection's phases).
#include "ltk/serve/http.h"

#include <netdb.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ltk/serve/http_server_impl.h"

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

namespace http_detail {

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

}  // namespace http_detail

namespace {

bool has_header(const std::vector<std::pair<std::string, std::string>>& headers, const std::string& name) {
  for (const auto& h : headers)
    if (strcasecmp(h.first.c_str(), name.c_str()) == 0) return true;
  return false;
}

}  // namespace

using namespace http_detail;

HttpServer::Impl::Impl(HttpOptions options, Handler h, Observer obs, HeaderSource c)
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

HttpServer::Impl::~Impl() {
  for (auto& [fd, c] : conns) ::close(fd);
  if (listen_fd >= 0) ::close(listen_fd);
  ::close(epfd);
  ::close(wakefd);
}

void HttpServer::Impl::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wakefd, &one, sizeof one);
}

void HttpServer::Impl::add_common(HttpResponse& r) const {
  if (!common) return;
  for (auto& [k, v] : common())
    if (!has_header(r.headers, k)) r.headers.emplace_back(k, v);
}

void HttpServer::Impl::worker() {
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
HttpResponse HttpServer::Impl::answer(Task& t) {
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

void HttpServer::Impl::start_workers() {
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

void HttpServer::Impl::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(task_mutex);
    workers_stop = true;
  }
  task_cv.notify_all();
  for (auto& t : workers) t.join();
  workers.clear();
}

void HttpServer::Impl::take_done() {
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

void HttpServer::Impl::begin_drain() {
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

void HttpServer::Impl::loop() {
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
