// UTF-8 decoding and validation used by the readers and tokenizers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ltk::utf8 {

/// Decodes the code point at s[i] and advances i. Invalid bytes decode to U+FFFD, one byte each.
char32_t next(std::string_view s, size_t& i);

/// Appends the UTF-8 encoding of `cp`.
void append(std::string& out, char32_t cp);

/// Offset of the first invalid byte, or npos when `s` is valid UTF-8.
size_t find_invalid(std::string_view s);

/// Strips a leading UTF-8 byte order mark.
std::string_view strip_bom(std::string_view s);

}  // namespace ltk::utf8
