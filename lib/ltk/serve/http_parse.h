// HTTP/1.1 requests as bytes arrive (RFC 9112): the request head, a chunked body, a compressed
// body. No sockets and no LibTorch here: each connection's reading (http_connections.cpp) feeds
// these what it reads, and the tests feed them bytes directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ltk::serve {

/// Limits on a request's head: a longer request line is 414, a longer head 431.
inline constexpr size_t kMaxRequestLine = 8192;
inline constexpr size_t kMaxHead = 64 * 1024;

/// The request line and headers of one request, or the status that refuses it.
struct RequestHead {
  std::string method, target, path;  ///< path: the target without its query, percent-decoded
  int minor_version = 1;             ///< HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers;
  int64_t content_length = -1;  ///< -1: none given
  bool chunked = false;
  bool keep_alive = true;        ///< what the client asked for (HTTP/1.0: only with "Connection: keep-alive")
  bool expect_continue = false;  ///< "Expect: 100-continue"
  std::string content_encoding;  ///< "" (identity), "gzip", "deflate" or "br"
  int error_status = 0;          ///< non-zero: refuse the request with this status and `error`
  std::string error;
};

/// Where the head of the request at the start of `buffer` ends (just past its blank line), or 0
/// when it has not all arrived. `scanned`: how far an earlier call looked (kept between calls so that
/// a head arriving byte by byte is searched once).
size_t find_head_end(std::string_view buffer, size_t& scanned);

/// Parses a head (request line, header lines, the blank line). Framing errors are 400 (both
/// Content-Length and Transfer-Encoding, two different lengths, a length that is not a number,
/// a header line without a colon or folded), 414, 501 (a transfer coding other than chunked), 505
/// (not HTTP/1.x); a declared length over `max_body` is 413 before any of the body is read; a
/// content coding other than gzip, deflate or br is 415.
RequestHead parse_head(std::string_view head, size_t max_body);

/// Decodes a chunked body as it arrives.
class ChunkedDecoder {
 public:
  enum class Result { more, done, bad, too_large };
  /// Consumes what it can of `in` from `pos` (advanced past it), appending the chunks' data to
  /// `body`; `too_large` as soon as the body would pass `max_body`, `bad` on a malformed chunk.
  Result feed(std::string_view in, size_t& pos, std::string& body, size_t max_body);

 private:
  enum class State { size, data, data_end, trailer } state_ = State::size;
  uint64_t remaining_ = 0;
};

/// Replaces `body` by its decoding under `encoding` ("" leaves it as it is): 0, or 413 when the
/// decoded body passes `max_body` (decoding stops there), 400 when it is not valid in that coding.
int decode_content(const std::string& encoding, std::string& body, size_t max_body);

/// The reason phrase of a status ("Not Found").
const char* reason_phrase(int status);

}  // namespace ltk::serve
