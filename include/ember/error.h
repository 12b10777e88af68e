// Ember's one error type.
//
// Every public C++ API of Ember reports failure by throwing ember::Error (and nothing
// else: standard exceptions from dependencies are translated at module boundaries).
// An Error carries a code from a small banded enum and a message that names the
// file, node or field, what was expected and what was found. The C ABI (later) maps
// the code to a status value and keeps the message as the last-error string.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace ember {

enum class ErrorCode : int {
  kOk = 0,
  // 1x: the caller passed something wrong.
  kInvalidArgument = 10,
  kShapeMismatch = 11,
  kDTypeMismatch = 12,
  kNotFound = 13,
  // 2x: a file is malformed, truncated or corrupted.
  kCorrupt = 20,
  kTruncated = 21,
  kChecksumMismatch = 22,
  kLimitExceeded = 23,
  // 3x: well-formed but not something this build can handle.
  kUnsupported = 30,
  kVersionMismatch = 31,
  kIncompatibleTarget = 32,
  kNotAModel = 33,  // a file that holds no model Ember knows (e.g. a .so without a package descriptor)
  // 4x: the environment failed.
  kIo = 40,
  kOutOfMemory = 41,
  // 5x: a bug in Ember.
  kInternal = 50,
};

// Short stable name of a code ("corrupt", "io", ...), for logs and the CLI.
const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message)
      : std::runtime_error(std::move(message)), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Concatenates any streamable values: cat("expected ", 3, " dims, found ", n).
template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(ErrorCode code, Args&&... args) {
  throw Error(code, cat(std::forward<Args>(args)...));
}

}  // namespace ember

// EMBER_CHECK(cond, code, parts...): throws ember::Error(code, cat(parts...)) when !cond.
#define EMBER_CHECK(cond, code, ...)                     \
  do {                                                   \
    if (!(cond)) ::ember::fail((code), __VA_ARGS__);     \
  } while (0)
