// The only file that includes cpp-httplib (see http.h).
#include "ltk/serve/http.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <strings.h>

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
             "server's --timeout-s; a POST needs a Content-Length)\"}";
    case 404: return "{\"error\": \"no such endpoint\"}";
    case 413: return "{\"error\": \"the request body is larger than the server's --max-body\"}";
    case 414: return "{\"error\": \"the request URI is too long\"}";
    default: return "{\"error\": \"the server could not answer this request\"}";
  }
}

}  // namespace

HttpServer::HttpServer(HttpOptions options, Handler handler, Observer on_response)
    : impl_(std::make_unique<Impl>()), options_(std::move(options)) {
  auto& s = impl_->server;
  const int threads = std::max(1, options_.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_payload_max_length(options_.max_body);
  // SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, with which a second server on the
  // same port starts without an error and takes half the connections.
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof yes);
  });
  s.set_read_timeout(options_.read_timeout_s, 0);
  s.set_write_timeout(options_.write_timeout_s, 0);
  s.set_keep_alive_timeout(options_.keep_alive_s);
  s.set_keep_alive_max_count(options_.keep_alive_max);
  auto route = [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    HttpRequest r;
    r.method = req.method;
    r.path = req.path;
    r.body = req.body;
    r.remote_addr = req.remote_addr;
    r.headers.assign(req.headers.begin(), req.headers.end());
    HttpResponse out = handler(r);
    res.status = out.status;
    for (auto& [k, v] : out.headers) res.set_header(k.c_str(), v);
    res.set_content(std::move(out.body), out.content_type.c_str());
  };
  s.Get(".*", route);
  s.Post(".*", route);
  s.Put(".*", route);
  s.Delete(".*", route);
  s.Patch(".*", route);
  // The library's own answers (413 for a body over --max-body, 400 for a malformed request, a
  // method it does not route) get a JSON body like every other error.
  s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) res.set_content(reason_json(res.status), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(nlohmann::json{{"error", "internal error: " + what}}.dump(), "application/json");
  });
  if (on_response)
    s.set_logger([on_response](const httplib::Request& req, const httplib::Response& res) {
      on_response(req.path, res.status);
    });
}

HttpServer::~HttpServer() { stop(); }

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
  if (!ok) {
    const int err = errno;
    std::string why = err ? std::strerror(err) : "the address does not resolve or cannot be bound";
    if (err == EADDRINUSE) why += " (another server holds the port: stop it or give another --port)";
    throw ServeError("cannot listen on " + options_.host + ":" + std::to_string(options_.port) + ": " + why);
  }
}

void HttpServer::run() { impl_->server.listen_after_bind(); }

void HttpServer::stop() {
  if (impl_) impl_->server.stop();
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
