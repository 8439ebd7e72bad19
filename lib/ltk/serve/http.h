// HTTP/1.1 for ltk-serve and its tests, on Debian's cpp-httplib (libcpp-httplib-dev). This header
// is free of cpp-httplib and LibTorch: http.cpp alone includes httplib.h, compiled with the flags
// Debian built the library with (its pkg-config Cflags), outside the precompiled header.
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
  int port = 8080;            ///< 0: any free port (HttpServer::port() tells which)
  int threads = 64;           ///< connections served at once (one thread each, keep-alive included)
  size_t max_body = 1 << 20;  ///< larger bodies are answered 413 (read and discarded, never kept)
  int read_timeout_s = 5;     ///< a client that sends nothing for this long is disconnected
  int write_timeout_s = 5;
  int keep_alive_s = 5;       ///< idle keep-alive connections close after this
  size_t keep_alive_max = 1000;  ///< requests per connection before it is closed
};

/// A blocking HTTP server: every request goes to one handler (on the connection's thread), and
/// every response, the server's own errors (413, 400 on a malformed request) included, to
/// `on_response` with the request's path and status.
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
  /// Serves until stop(): then returns once every request being handled has been answered
  /// (connections waiting for a thread are closed; an idle keep-alive connection closes within the
  /// keep-alive timeout, after at most one more request). Returns at once when stop() came first;
  /// ServeError when the accept loop fails.
  void run();
  /// Stops accepting connections (safe from any thread, before or during run(); idempotent).
  void stop();

 private:
  struct Impl;
  void close_unserved_socket();
  std::unique_ptr<Impl> impl_;
  HttpOptions options_;
  int port_ = 0;
  int listen_fd_ = -1;  ///< the listening socket, once bound
  std::atomic<bool> entered_{false}, finished_{false}, stop_requested_{false};
};

/// A client call for tests and tools: `method` GET or POST to http://host:port/path. Returns the
/// response, or status -1 and the error in `body` when there is no answer.
HttpResponse http_call(const std::string& host, int port, const std::string& method, const std::string& path,
                       const std::string& body = "", const std::vector<std::pair<std::string, std::string>>& headers = {},
                       int timeout_s = 30);

}  // namespace ltk::serve
