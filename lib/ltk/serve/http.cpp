// The only file that includes cpp-httplib (see http.h).
#include "ltk/serve/http.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <strings.h>
#include <unistd.h>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

namespace ltk::serve {

std::string HttpRequest::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return "";
}

struct HttpServer::Impl {
  httplib::Server server;
};

namespace {

const char* reason_json(int status) {
  switch (status) {
    case 400:
      return "{\"error\": \"malformed or incomplete HTTP request (a client that stops sending is cut off after the "
             "server's --timeout-s)\"}";
    case 415: return "{\"error\": \"send the request as JSON, not multipart form data\"}";
    case 404: return "{\"error\": \"no such endpoint\"}";
    case 413: return "{\"error\": \"the request body is larger than the server's --max-body\"}";
    case 414: return "{\"error\": \"the request URI is too long\"}";
    default: return "{\"error\": \"the server could not answer this request\"}";
  }
}

}  // namespace

namespace {

// The library's own answers (400 for a malformed request, a method it does not route, 413) and an
// exception escaping a handler (500) get a JSON body and the common headers like every other response.
void install_error_handlers(httplib::Server& s, const std::function<void(httplib::Response&)>& add_common) {
  s.set_error_handler(
      httplib::Server::HandlerWithResponse([add_common](const httplib::Request&, httplib::Response& res) {
        add_common(res);
        if (res.body.empty()) res.set_content(reason_json(res.status), "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler([add_common](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    add_common(res);
    res.set_content(nlohmann::json{{"error", "internal error: " + what}}.dump(-1, ' ', false,
                                                                              nlohmann::json::error_handler_t::replace),
                    "application/json");
  });
}

}  // namespace

HttpServer::HttpServer(HttpOptions options, Handler handler, Observer on_response, HeaderSource common_headers)
    : impl_(std::make_unique<Impl>()), options_(std::move(options)) {
  auto& s = impl_->server;
  const int threads = std::max(1, options_.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_payload_max_length(options_.max_body);
  s.set_read_timeout(options_.read_timeout_s, 0);
  s.set_write_timeout(options_.write_timeout_s, 0);
  s.set_keep_alive_timeout(options_.keep_alive_s);
  s.set_keep_alive_max_count(options_.keep_alive_max);
  // Without it a response written in two parts (head, body) waits for the client's delayed ACK:
  // 40 ms a request on Linux.
  s.set_tcp_nodelay(true);
  // SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, with which a second server on the
  // same port starts without an error and takes half the connections.
  s.set_socket_options([this](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof yes);
    listen_fd_ = static_cast<int>(sock);
  });
  auto add_common = [common_headers](httplib::Response& res) {
    if (!common_headers) return;
    for (auto& [k, v] : common_headers())
      if (!res.has_header(k.c_str())) res.set_header(k.c_str(), v);
  };
  auto respond = [handler, add_common](HttpRequest r, const httplib::Request& req, httplib::Response& res) {
    r.method = req.method;
    r.path = req.path;
    r.remote_addr = req.remote_addr;
    r.headers.assign(req.headers.begin(), req.headers.end());
    HttpResponse out = handler(r);
    res.status = out.status;
    for (auto& [k, v] : out.headers) res.set_header(k.c_str(), v);
    add_common(res);
    res.set_content(std::move(out.body), out.content_type.c_str());
  };
  s.Get(".*", [respond](const httplib::Request& req, httplib::Response& res) { respond(HttpRequest{}, req, res); });
  // Bodies are read here, chunk by chunk, and refused past max_body whatever their framing
  // (Content-Length, chunked, compressed: cpp-httplib inflates gzip and brotli before this sees it)
  // and content type (cpp-httplib's own path caps form-encoded bodies, as curl -d sends, at 8 KiB).
  const size_t max_body = options_.max_body;
  auto with_body = [respond, max_body, add_common](const httplib::Request& req, httplib::Response& res,
                                                   const httplib::ContentReader& reader) {
    HttpRequest r;
    bool too_large = false;
    // The whole body is consumed even when it is refused: cpp-httplib keeps the connection open,
    // and unread bytes would be taken for the next request.
    auto keep = [&](const char* data, size_t n) {
      if (too_large || r.body.size() + n > max_body) too_large = true;
      else r.body.append(data, n);
      return true;
    };
    bool complete;
    int status = 0;
    if (req.is_multipart_form_data()) {
      complete = reader([](const httplib::MultipartFormData&) { return true; },
                        [](const char*, size_t) { return true; });
      status = 415;
    } else {
      complete = reader(keep);
    }
    // A declared length over the limit: cpp-httplib skips the body and sets 413; cut off (the
    // client stopped sending): 400.
    if (!complete) status = res.status >= 400 ? res.status : 400;
    else if (too_large) status = 413;
    if (status) {
      res.status = status;
      add_common(res);
      res.set_content(reason_json(status), "application/json");
      return;
    }
    respond(std::move(r), req, res);
  };
  s.Post(".*", with_body);
  s.Put(".*", with_body);
  s.Delete(".*", with_body);
  s.Patch(".*", with_body);
  install_error_handlers(s, add_common);
  if (on_response)
    s.set_logger([on_response](const httplib::Request& req, const httplib::Response& res) {
      on_response(req.path, res.status);
    });
}

HttpServer::~HttpServer() {
  stop();
  if (!entered_) close_unserved_socket();
}

void HttpServer::close_unserved_socket() {
  // cpp-httplib closes its socket when its accept loop ends; one that never ran would leave it
  // listening (clients would connect and hang) until the process exits.
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

void HttpServer::bind() {
  auto& s = impl_->server;
  errno = 0;
  bool ok;
  if (options_.port == 0) {
    port_ = s.bind_to_any_port(options_.host);
    ok = port_ > 0;
  } else {
    ok = s.bind_to_port(options_.host, options_.port);
    port_ = options_.port;
  }
  // cpp-httplib listens with a backlog of 5: when clients reconnect together (64 keep-alive
  // connections reaching their request limit in the same batch), the kernel drops their SYNs and
  // they retry 1 s and 3 s later (a 3.8 s p99 at 64 connections). Listening again on the bound
  // socket raises the backlog.
  if (ok && listen_fd_ >= 0) ::listen(listen_fd_, SOMAXCONN);
  if (!ok) {
    const int err = errno;
    std::string why = err ? std::strerror(err) : "the address does not resolve or cannot be bound";
    if (err == EADDRINUSE) why += " (another server holds the port: stop it or give another --port)";
    throw ServeError("cannot listen on " + options_.host + ":" + std::to_string(options_.port) + ": " + why);
  }
}

void HttpServer::run() {
  entered_ = true;
  if (stop_requested_) {
    close_unserved_socket();
    return;
  }
  const bool ok = impl_->server.listen_after_bind();
  finished_ = true;
  if (!ok && !stop_requested_)
    throw ServeError("the server on " + options_.host + ":" + std::to_string(port_) + " stopped accepting connections");
}

void HttpServer::stop() {
  if (!impl_) return;
  stop_requested_ = true;
  // cpp-httplib ignores a stop before its accept loop runs: wait for the loop when run() was
  // entered (run() returns at once when it was not).
  for (int i = 0; i < 1000 && entered_ && !finished_ && !impl_->server.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  impl_->server.stop();
}

HttpResponse http_call(const std::string& host, int port, const std::string& method, const std::string& path,
                       const std::string& body, const std::vector<std::pair<std::string, std::string>>& headers,
                       int timeout_s) {
  httplib::Client client(host, port);
  client.set_connection_timeout(timeout_s, 0);
  client.set_read_timeout(timeout_s, 0);
  client.set_write_timeout(timeout_s, 0);
  httplib::Headers h(headers.begin(), headers.end());
  httplib::Result res = method == "GET"    ? client.Get(path, h)
                        : method == "POST" ? client.Post(path, h, body, "application/json")
                                           : client.Delete(path, h, body, "application/json");
  HttpResponse out;
  if (!res) {
    out.status = -1;
    out.body = httplib::to_string(res.error());
    return out;
  }
  out.status = res->status;
  out.body = res->body;
  out.content_type = res->get_header_value("Content-Type");
  for (const auto& [k, v] : res->headers) out.headers.emplace_back(k, v);
  return out;
}

}  // namespace ltk::serve
