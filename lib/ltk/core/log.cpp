#include "ltk/core/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cstdio>
#include <mutex>

#include "ltk/core/error.h"

namespace ltk::log {
namespace {

struct State {
  std::shared_ptr<spdlog::sinks::sink> console;
  std::shared_ptr<spdlog::sinks::sink> file;
  std::shared_ptr<spdlog::logger> logger;
  std::mutex mutex;
  bool bar_shown = false;
  std::string prefix;

  State() {
    // The color sink prints plain text when stderr is not a terminal.
    console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_pattern("[%H:%M:%S] %^%l%$ %v");
    console->set_level(spdlog::level::info);
    rebuild();
  }
  void rebuild() {
    std::vector<spdlog::sink_ptr> sinks{console};
    if (file) sinks.push_back(file);
    logger = std::make_shared<spdlog::logger>("ltk", sinks.begin(), sinks.end());
    logger->set_level(spdlog::level::debug);
    logger->flush_on(spdlog::level::info);
  }
};

State& state() {
  static State s;
  return s;
}

spdlog::level::level_enum to_spd(Level level) {
  switch (level) {
    case Level::debug: return spdlog::level::debug;
    case Level::info: return spdlog::level::info;
    case Level::warn: return spdlog::level::warn;
    case Level::error: return spdlog::level::err;
    case Level::off: return spdlog::level::off;
  }
  return spdlog::level::info;
}

}  // namespace

void write(Level level, const std::string& message) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.bar_shown) {
    std::fputs("\r\033[K", stderr);  // the bar is redrawn by the next progress()
    s.bar_shown = false;
  }
  if (s.prefix.empty())
    s.logger->log(to_spd(level), message);
  else
    s.logger->log(to_spd(level), s.prefix + message);
}

void set_prefix(const std::string& prefix) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.prefix = prefix;
}

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

void progress(const std::string& line) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::fprintf(stderr, "\r%s\033[K", line.c_str());
  std::fflush(stderr);
  s.bar_shown = true;
}

void progress_done() {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.bar_shown) std::fputs("\n", stderr);
  s.bar_shown = false;
}

void set_level(Level level) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.console->set_level(to_spd(level));
}

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "off") return Level::off;
  throw ConfigError("unknown log level '" + name + "': use debug, info, warn, error or off");
}

void set_file(const std::string& path) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
    sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] %l %v");
    sink->set_level(spdlog::level::info);
    s.file = sink;
  } catch (const spdlog::spdlog_ex& e) {
    throw Error("cannot open log file " + path + ": " + e.what());
  }
  s.rebuild();
}

void close_file() {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.file.reset();
  s.rebuild();
}

}  // namespace ltk::log
