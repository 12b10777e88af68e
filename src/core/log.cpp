#include "ember/log.h"

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace ember {
namespace {

void default_sink(LogLevel level, std::string_view message) {
  std::fprintf(stderr, "ember: %s: %.*s\n", log_level_name(level), static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
}

LogLevel initial_level() {
  if (const char* env = std::getenv("EMBER_LOG_LEVEL")) {
    if (auto level = log_level_from_name(env)) return *level;
    std::fprintf(stderr,
                 "ember: warning: EMBER_LOG_LEVEL='%s' is not one of debug, info, warning, error, off; "
                 "using warning\n",
                 env);
  }
  return LogLevel::kWarning;
}

struct LoggerState {
  std::mutex mutex;  // guards sink and serializes calls into it
  LogSink sink;      // empty: default_sink
  std::atomic<int> level{static_cast<int>(initial_level())};
};

LoggerState& state() {
  static LoggerState s;  // built on first use, so logging from static initializers is safe
  return s;
}

}  // namespace

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      return "off";
  }
  return "unknown";
}

std::optional<LogLevel> log_level_from_name(std::string_view name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError, LogLevel::kOff}) {
    if (lower == log_level_name(l)) return l;
  }
  if (lower == "warn") return LogLevel::kWarning;
  return std::nullopt;
}

LogSink set_log_sink(LogSink sink) {
  LoggerState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::swap(s.sink, sink);
  return sink;
}

LogLevel set_log_level(LogLevel level) {
  return static_cast<LogLevel>(state().level.exchange(static_cast<int>(level)));
}

LogLevel log_level() { return static_cast<LogLevel>(state().level.load()); }

bool log_enabled(LogLevel level) { return level != LogLevel::kOff && static_cast<int>(level) >= state().level.load(); }

void log_message(LogLevel level, std::string_view message) {
  if (!log_enabled(level)) return;
  LoggerState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.sink) {
    s.sink(level, message);
  } else {
    default_sink(level, message);
  }
}

}  // namespace ember
