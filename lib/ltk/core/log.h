// ltk's logging: spdlog stays behind this header. Lines go to stderr and, once a run
// directory exists, to its train.log as well. stdout is never written.
#pragma once

#include <fmt/format.h>

#include <string>

namespace ltk::log {

enum class Level { debug, info, warn, error, off };

/// Writes one message at `level` to every sink.
void write(Level level, const std::string& message);

/// Sets the lowest level written to stderr (the log file always takes info and above).
void set_level(Level level);

/// Parses "debug|info|warn|error|off"; throws ltk::ConfigError on anything else.
Level parse_level(const std::string& name);

/// Puts `prefix` before every message from now on (distributed training: "[rank 1] ").
void set_prefix(const std::string& prefix);

/// Adds (or replaces) the log file sink; the file is appended to.
void set_file(const std::string& path);

/// Removes the log file sink (tests open many runs in one process).
void close_file();

/// Shows `line` as a live progress bar on stderr when it is a terminal (overwritten in place,
/// never written to the log file); log lines printed meanwhile appear above it.
void progress(const std::string& line);
/// Ends the live progress bar (moves to a fresh line).
void progress_done();
/// True when stderr is a terminal.
bool stderr_is_terminal();

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ltk::log
