#include "ltk/serve/http_parse.h"

#include <brotli/decode.h>
#include <strings.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace ltk::serve {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The target's path, percent-decoded; false on a malformed escape or a decoded NUL.
bool decode_path(std::string_view target, std::string& path) {
  target = target.substr(0, target.find('?'));
  path.clear();
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] != '%') {
      path += target[i];
      continue;
    }
    if (i + 2 >= target.size()) return false;
    const int hi = hex_value(target[i + 1]), lo = hex_value(target[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
    path += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

RequestHead refuse(RequestHead h, int status, std::string why) {
  h.error_status = status;
  h.error = std::move(why);
  return h;
}

bool parse_request_line(std::string_view line, RequestHead& h) {
  const size_t a = line.find(' '), b = line.rfind(' ');
  if (a == std::string_view::npos || a == b || a == 0) return false;
  h.method = std::string(line.substr(0, a));
  h.target = std::string(line.substr(a + 1, b - a - 1));
  const std::string_view version = line.substr(b + 1);
  if (!std::all_of(h.method.begin(), h.method.end(), is_token_char) || h.target.empty() ||
      h.target.find(' ') != std::string::npos)
    return false;
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !std::isdigit(static_cast<unsigned char>(version[5])) ||
      version[6] != '.' || !std::isdigit(static_cast<unsigned char>(version[7])))
    return false;
  h.minor_version = version[5] == '1' ? version[7] - '0' : -1;
  return true;
}

// The framing and connection headers, once every header is in.
RequestHead interpret_headers(RequestHead h, size_t max_body) {
  bool close = false, keep = false, has_te = false;
  for (const auto& [name, value] : h.headers) {
    if (iequals(name, "Content-Length")) {
      int64_t n = -1;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || n < 0)
        return refuse(std::move(h), 400, "Content-Length is not a number: '" + value + "'");
      if (h.content_length >= 0 && h.content_length != n)
        return refuse(std::move(h), 400, "two different Content-Length headers");
      h.content_length = n;
    } else if (iequals(name, "Transfer-Encoding")) {
      has_te = true;
      if (!iequals(value, "chunked"))
        return refuse(std::move(h), 501, "Transfer-Encoding '" + value + "' is not supported (only chunked)");
      h.chunked = true;
    } else if (iequals(name, "Connection")) {
      // a list of options: close, keep-alive, others ignored
      std::string_view rest = value;
      while (!rest.empty()) {
        const size_t comma = rest.find(',');
        const std::string_view option = trim(rest.substr(0, comma));
        close = close || iequals(option, "close");
        keep = keep || iequals(option, "keep-alive");
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
    } else if (iequals(name, "Expect")) {
      if (!iequals(value, "100-continue"))
        return refuse(std::move(h), 417, "only \"Expect: 100-continue\" is understood");
      h.expect_continue = true;
    } else if (iequals(name, "Content-Encoding")) {
      if (iequals(value, "gzip") || iequals(value, "x-gzip"))
        h.content_encoding = "gzip";
      else if (iequals(value, "deflate"))
        h.content_encoding = "deflate";
      else if (iequals(value, "br"))
        h.content_encoding = "br";
      else if (!iequals(value, "identity"))
        return refuse(std::move(h), 415, "Content-Encoding '" + value + "' is not supported (gzip, deflate, br)");
    }
  }
  if (has_te && h.content_length >= 0)
    return refuse(std::move(h), 400, "both Content-Length and Transfer-Encoding: send one");
  h.keep_alive = h.minor_version >= 1 ? !close : keep && !close && !has_te;  // RFC 9112 6.1
  if (h.content_length > 0 && static_cast<uint64_t>(h.content_length) > max_body)
    return refuse(std::move(h), 413, "the request body is larger than the server's --max-body");
  return h;
}

}  // namespace

size_t find_head_end(std::string_view buffer, size_t& scanned) {
  // A head ends at an empty line: "\r\n\r\n", or "\n\n" from a client that sends bare newlines.
  size_t from = scanned > 3 ? scanned - 3 : 0;
  for (size_t i = buffer.find('\n', from); i != std::string_view::npos; i = buffer.find('\n', i + 1)) {
    if (i + 1 < buffer.size() && buffer[i + 1] == '\n') return i + 2;
    if (i + 2 < buffer.size() && buffer[i + 1] == '\r' && buffer[i + 2] == '\n') return i + 3;
  }
  scanned = buffer.size();
  return 0;
}

RequestHead parse_head(std::string_view head, size_t max_body) {
  RequestHead h;
  // A bare CR or a NUL would let another parser on the way (a proxy) split the lines otherwise
  // (RFC 9112 2.2): refused.
  for (size_t i = 0; i < head.size(); ++i)
    if (head[i] == '\0' || (head[i] == '\r' && (i + 1 == head.size() || head[i + 1] != '\n')))
      return refuse(std::move(h), 400, "a bare CR or a NUL byte in the request head");
  // Empty lines before the request line are ignored (RFC 9112 2.2).
  while (!head.empty() && (head.front() == '\r' || head.front() == '\n')) head.remove_prefix(1);
  size_t eol = head.find('\n');
  const std::string_view line = trim(head.substr(0, eol));
  if (line.size() > kMaxRequestLine) return refuse(std::move(h), 414, "the request line is longer than 8192 bytes");
  if (!parse_request_line(line, h)) return refuse(std::move(h), 400, "malformed request line");
  if (h.minor_version < 0) return refuse(std::move(h), 505, "only HTTP/1.0 and HTTP/1.1 are served");
  if (!decode_path(h.target, h.path)) return refuse(std::move(h), 400, "malformed percent-escape in the path");
  while (eol != std::string_view::npos) {
    const size_t start = eol + 1;
    eol = head.find('\n', start);
    std::string_view raw = head.substr(start, eol == std::string_view::npos ? std::string_view::npos : eol - start);
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    if (raw.empty()) break;  // the blank line
    if (raw.front() == ' ' || raw.front() == '\t')
      return refuse(std::move(h), 400, "folded header lines are not accepted");
    const size_t colon = raw.find(':');
    if (colon == std::string_view::npos || colon == 0) return refuse(std::move(h), 400, "malformed header line");
    const std::string_view name = raw.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_token_char))
      return refuse(std::move(h), 400, "malformed header name");
    h.headers.emplace_back(std::string(name), std::string(trim(raw.substr(colon + 1))));
  }
  return interpret_headers(std::move(h), max_body);
}

ChunkedDecoder::Result ChunkedDecoder::feed(std::string_view in, size_t& pos, std::string& body, size_t max_body) {
  constexpr size_t kMaxLine = 4096;  // a chunk-size line with its extensions, or a trailer line
  for (;;) {
    if (state_ == State::data) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - pos));
      if (body.size() + take > max_body) return Result::too_large;
      body.append(in.data() + pos, take);
      pos += take;
      remaining_ -= take;
      if (remaining_ > 0) return Result::more;
      state_ = State::data_end;
      continue;
    }
    const size_t eol = in.find('\n', pos);
    if (eol == std::string_view::npos) return in.size() - pos > kMaxLine ? Result::bad : Result::more;
    if (eol - pos > kMaxLine) return Result::bad;  // the same verdict however the bytes arrive
    std::string_view line = in.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = eol + 1;
    if (state_ == State::data_end) {
      if (!line.empty()) return Result::bad;
      state_ = State::size;
    } else if (state_ == State::trailer) {
      if (line.empty()) return Result::done;
    } else {
      line = line.substr(0, line.find(';'));  // chunk extensions are ignored
      line = trim(line);
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), n, 16);
      if (line.empty() || ec != std::errc() || end != line.data() + line.size()) return Result::bad;
      if (n > max_body - std::min(max_body, body.size())) return Result::too_large;
      remaining_ = n;
      state_ = n == 0 ? State::trailer : State::data;
    }
  }
}

namespace {

int inflate_zlib(std::string& body, size_t max_body) {
  z_stream z{};
  // 15 + 32: a zlib or a gzip stream, told apart by its header ("deflate" is zlib-wrapped in HTTP).
  if (inflateInit2(&z, 15 + 32) != Z_OK) return 400;
  std::string out;
  char buf[64 * 1024];
  z.next_in = reinterpret_cast<Bytef*>(body.data());
  z.avail_in = static_cast<uInt>(body.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    const size_t got = sizeof buf - z.avail_out;
    if (out.size() + got > max_body) {
      inflateEnd(&z);
      return 413;
    }
    out.append(buf, got);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // truncated
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return 400;
  body.swap(out);
  return 0;
}

int inflate_brotli(std::string& body, size_t max_body) {
  BrotliDecoderState* s = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
  if (!s) return 400;
  std::string out;
  char buf[64 * 1024];
  const uint8_t* next_in = reinterpret_cast<const uint8_t*>(body.data());
  size_t avail_in = body.size();
  BrotliDecoderResult rc = BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT;
  int status = 0;
  while (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) {
    uint8_t* next_out = reinterpret_cast<uint8_t*>(buf);
    size_t avail_out = sizeof buf;
    rc = BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, &next_out, nullptr);
    const size_t got = sizeof buf - avail_out;
    if (out.size() + got > max_body) {
      status = 413;
      break;
    }
    out.append(buf, got);
  }
  BrotliDecoderDestroyInstance(s);
  if (status) return status;
  if (rc != BROTLI_DECODER_RESULT_SUCCESS) return 400;
  body.swap(out);
  return 0;
}

}  // namespace

int decode_content(const std::string& encoding, std::string& body, size_t max_body) {
  if (encoding.empty()) return 0;
  return encoding == "br" ? inflate_brotli(body, max_body) : inflate_zlib(body, max_body);
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Entity";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace ltk::serve
