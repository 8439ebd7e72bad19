// ltk-serve's HTTP server, each connection (the phases are described in http_server_impl.h):
// reading a request's head and then its body within their deadlines, handing the whole request to
// a handler thread, writing the answer, refusing and lingering after an error; and accepting new
// connections within --max-connections and --max-connections-per-client.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "ltk/serve/http_server_impl.h"

namespace ltk::serve {

namespace {

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

}  // namespace

using namespace http_detail;

void HttpServer::Impl::close_conn(Conn* c) {
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

void HttpServer::Impl::reset_request(Conn* c) {
  // a large body's buffer is not kept for the life of a keep-alive connection
  if (c->in.capacity() > 64 * 1024) std::string(c->in).swap(c->in);
  c->have_head = false;
  c->head = RequestHead{};
  c->chunks = ChunkedDecoder{};
  c->body.clear();
  c->scanned = 0;
}

void HttpServer::Impl::send_bytes(Conn* c, std::string bytes, bool close) {
  c->out = std::move(bytes);
  c->out_pos = 0;
  c->close_after = close;
  c->phase = Phase::writing;
  c->deadline = now + seconds(o.write_timeout_s);
  flush(c);
}

// The server's own refusal of the request being read: answered, then the connection closes.
void HttpServer::Impl::refuse(Conn* c, int status, const std::string& message) {
  HttpResponse r = error_json(status, message);
  add_common(r);
  if (observer) observer(c->head.path, status);
  const int minor = c->have_head ? c->head.minor_version : 1;
  reset_request(c);
  send_bytes(c, serialize(r, false, true, minor), true);
}

void HttpServer::Impl::flush(Conn* c) {
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

void HttpServer::Impl::after_write(Conn* c) {
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

void HttpServer::Impl::start_linger(Conn* c) {
  ::shutdown(c->fd, SHUT_WR);
  c->phase = Phase::lingering;
  c->deadline = now + seconds(std::min(2.0, std::max(o.header_timeout_s, 0.5)));
  std::string().swap(c->in);
  on_readable(c);
}

HttpServer::Impl::ReadResult HttpServer::Impl::read_some(Conn* c) {
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

void HttpServer::Impl::on_readable(Conn* c) {
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
void HttpServer::Impl::process(Conn* c) {
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

void HttpServer::Impl::complete(Conn* c) {
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

void HttpServer::Impl::refuse_connection(int fd, const std::string& why) {
  HttpResponse r = error_json(503, why);
  r.headers.emplace_back("Retry-After", "1");
  const std::string bytes = serialize(r, false, true, 1);
  [[maybe_unused]] auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::close(fd);
}

void HttpServer::Impl::accept_ready() {
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

void HttpServer::Impl::sweep() {
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

}  // namespace ltk::serve
