// HTTP/1.1 for ltk-serve: its server (http.cpp and http_connections.cpp, an epoll event loop of
// ltk's own, on http_parse.h) and a client for tests and tools (http_client.cpp, on Debian's cpp-httplib, the one
// file that includes httplib.h, compiled with the flags Debian built it with, outside the
// precompiled header). This header is free of both and of LibTorch.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ltk/core/error.h"

namespace ltk::serve {

/// The server cannot start or keep serving (a port in use, an address it cannot bind).
class ServeError : public Error {
 public:
  using Error::Error;
};

struct HttpRequest {
  std::string method;       ///< GET, POST, ...
  std::string path;         ///< without the query string
  std::string body;
  std::string remote_addr;  ///< the client's address ("127.0.0.1", "::1", ...)
  std::vector<std::pair<std::string, std::string>> headers;
  /// The first header of that name (case-insensitive), or "".
  std::string header(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       ///< 0: any free port (HttpServer::port() tells which)
  int threads = 64;                      ///< requests handled at once: a connection holds none while it is read or idle
  size_t max_body = 1 << 20;             ///< larger bodies are answered 413 (never kept)
  double header_timeout_s = 5;           ///< a request's line and headers must all arrive within this of its first byte
                                         ///< (a new connection's first request: of its accept); else 408 and closed
                                         ///< (a new connection that sent nothing: closed, counted as idle)
  double body_timeout_s = 10;            ///< its body within this of its headers; else 408 and closed
  double idle_timeout_s = 5;             ///< a keep-alive connection with no request for this long is closed
  double write_timeout_s = 10;           ///< a client that takes longer to read its response is disconnected
  size_t keep_alive_max = 1000;          ///< requests per connection before it is closed
  int max_connections = 10000;           ///< open at once (capped below the open-files limit); more: 503 and closed
  int max_connections_per_client = 256;  ///< open at once from one address (0: no cap); more: 503 and closed
};

/// What became of the server's connections (for /metrics).
struct ConnectionStats {
  int64_t open = 0, accepted = 0;
  int64_t refused_total = 0, refused_per_client = 0;  ///< over max_connections, over the per-client cap
  int64_t timeouts_header = 0, timeouts_body = 0, timeouts_idle = 0, timeouts_write = 0;
  int64_t max_connections = 0;  ///< the cap in force (max_connections, or less under the open-files limit)
};

/// An event-driven HTTP/1.1 server: one thread reads every connection (epoll), so idle, slow and
/// half-open connections cost memory only (a few hundred bytes each) and never a thread; a request
/// whose head and body have arrived whole goes to one of `threads` handler threads, and its
/// response is written back by the event thread. Every response to a request, the server's own
/// refusals (400, 408, 413, 415, 431, ...) included, goes to `on_response` with the request's path and
/// status; connections refused at the caps (503) are counted in stats() instead.
class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  using Observer = std::function<void(const std::string& path, int status)>;
  /// Headers every response carries unless the handler set them (the server's own errors too).
  using HeaderSource = std::function<std::vector<std::pair<std::string, std::string>>()>;
  HttpServer(HttpOptions options, Handler handler, Observer on_response, HeaderSource common_headers = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds the listening socket; ServeError naming host:port and the reason (address in use,
  /// cannot assign the address) when it cannot.
  void bind();
  int port() const { return port_; }
  /// Serves until stop(): then returns once every request that had arrived (its head whole) has
  /// been answered: idle connections and requests whose head is still arriving are closed at
  /// once, a body on its way gets its deadline. Returns at once when stop() came first; ServeError
  /// when the event loop fails.
  void run();
  /// Stops accepting connections (safe from any thread, before or during run(); idempotent).
  void stop();
  ConnectionStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

/// Raises this process's open-files limit to its hard limit (each connection is a file); returns
/// the limit now in force.
int64_t raise_open_files_limit();

/// A client call for tests and tools: `method` GET or POST to http://host:port/path. Returns the
/// response, or status -1 and the error in `body` when there is no answer.
HttpResponse http_call(const std::string& host, int port, const std::string& method, const std::string& path,
                       const std::string& body = "", const std::vector<std::pair<std::string, std::string>>& headers = {},
                       int timeout_s = 30);

}  // namespace ltk::serve
