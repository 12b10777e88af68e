// Ember's logger: one process-wide sink and a minimum level.
//
// Messages at or above the minimum level go to the sink. The default sink writes
// "ember: warning: <message>" lines to stderr; applications (and tests) can install
// their own with set_log_sink(). The minimum level starts at kWarning, or at the value
// of the environment variable EMBER_LOG_LEVEL (debug, info, warning, error, off) when
// it is set. All functions are thread-safe; calls into the sink are serialized, so a
// sink must not itself log.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "ember/error.h"

namespace ember {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

// "debug", "info", "warning", "error", "off".
const char* log_level_name(LogLevel level);
// Inverse of log_level_name (case-insensitive); nullopt for anything else.
std::optional<LogLevel> log_level_from_name(std::string_view name);

using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// Installs `sink` and returns the previous one. An empty function restores the default
// stderr sink.
LogSink set_log_sink(LogSink sink);
// Sets the minimum level and returns the previous one.
LogLevel set_log_level(LogLevel level);
LogLevel log_level();
bool log_enabled(LogLevel level);

// Sends one message (no trailing newline needed) to the sink when `level` is enabled.
void log_message(LogLevel level, std::string_view message);

// Formatting helpers; the parts are concatenated with ember::cat only when enabled.
template <typename... Args>
void log(LogLevel level, Args&&... args) {
  if (log_enabled(level)) log_message(level, cat(std::forward<Args>(args)...));
}
template <typename... Args>
void log_debug(Args&&... args) {
  log(LogLevel::kDebug, std::forward<Args>(args)...);
}
template <typename... Args>
void log_info(Args&&... args) {
  log(LogLevel::kInfo, std::forward<Args>(args)...);
}
template <typename... Args>
void log_warning(Args&&... args) {
  log(LogLevel::kWarning, std::forward<Args>(args)...);
}
template <typename... Args>
void log_error(Args&&... args) {
  log(LogLevel::kError, std::forward<Args>(args)...);
}

// Installs a sink (and optionally a level) for the lifetime of the object, restoring the
// previous ones on destruction. Handy in tests.
class ScopedLogSink {
 public:
  explicit ScopedLogSink(LogSink sink, std::optional<LogLevel> level = std::nullopt)
      : previous_sink_(set_log_sink(std::move(sink))), previous_level_(level ? set_log_level(*level) : log_level()) {}
  ~ScopedLogSink() {
    set_log_sink(std::move(previous_sink_));
    set_log_level(previous_level_);
  }
  ScopedLogSink(const ScopedLogSink&) = delete;
  ScopedLogSink& operator=(const ScopedLogSink&) = delete;

 private:
  LogSink previous_sink_;
  LogLevel previous_level_;
};

}  // namespace ember
