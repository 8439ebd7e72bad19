// The client side of http.h, on cpp-httplib: the only file that includes it (see http.h).
#include "ltk/serve/http.h"

#include <httplib.h>

namespace ltk::serve {

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
