// ltk-serve's request parsing (ltk/serve/http_parse.h) on whatever a client sends: the head, a
// chunked body, a compressed body. The first byte picks --max-body (16 to 4096). Checks: nothing
// throws or overruns; the head's end is found the same whether the bytes come at once or one by
// one; a chunked body decodes the same whole or in pieces, and never past --max-body; a decoded
// body is never larger than --max-body.
#include "../fuzz.h"
#include "ltk/serve/http_parse.h"

namespace {

using ltk::serve::ChunkedDecoder;

ChunkedDecoder::Result decode_chunked(std::string_view in, size_t piece, size_t max_body, std::string& body,
                                      std::string& rest) {
  ChunkedDecoder d;
  std::string buffer;
  auto r = ChunkedDecoder::Result::more;
  size_t fed = 0;
  while (r == ChunkedDecoder::Result::more && fed < in.size()) {
    buffer.append(in.substr(fed, piece));
    fed += std::min(piece, in.size() - fed);
    size_t pos = 0;
    r = d.feed(buffer, pos, body, max_body);
    ltk::fuzz::fuzz_check(pos <= buffer.size(), "the chunked decoder consumed more than it was given");
    buffer.erase(0, pos);
  }
  rest = buffer + std::string(in.substr(fed));
  return r;
}

}  // namespace

LTK_FUZZ_TARGET(http_request) {
  const size_t max_body = 16 + static_cast<size_t>(ltk::fuzz::take_byte(input)) * 16;
  size_t scanned = 0, end = 0;
  for (size_t n = 1; n <= input.size() && end == 0; ++n) end = ltk::serve::find_head_end(input.substr(0, n), scanned);
  size_t whole_scan = 0;
  ltk::fuzz::fuzz_check(end == ltk::serve::find_head_end(input, whole_scan),
                        "the head's end depends on how its bytes arrived");
  if (end) {
    const auto head = ltk::serve::parse_head(input.substr(0, end), max_body);
    if (head.error_status == 0) {
      ltk::fuzz::fuzz_check(head.content_length <= static_cast<int64_t>(max_body), "a length over --max-body passed");
      ltk::fuzz::fuzz_check(!(head.chunked && head.content_length >= 0), "both framings accepted");
    }
  }
  const std::string_view body = end ? input.substr(end) : input;
  std::string whole, pieces, rest_whole, rest_pieces;
  const auto a = decode_chunked(body, body.size() + 1, max_body, whole, rest_whole);
  const auto b = decode_chunked(body, 7, max_body, pieces, rest_pieces);
  ltk::fuzz::fuzz_check(a == b, "a chunked body decodes differently in pieces");
  if (a == ChunkedDecoder::Result::done)
    ltk::fuzz::fuzz_check(whole == pieces && rest_whole == rest_pieces, "a chunked body decodes differently in pieces");
  ltk::fuzz::fuzz_check(whole.size() <= max_body && pieces.size() <= max_body, "a chunked body passed --max-body");
  for (const char* coding : {"gzip", "deflate", "br"}) {
    std::string decoded(body);
    if (ltk::serve::decode_content(coding, decoded, max_body) == 0)
      ltk::fuzz::fuzz_check(decoded.size() <= max_body, "a decoded body passed --max-body");
  }
}
