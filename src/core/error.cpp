#include "ember/error.h"

namespace ember {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kShapeMismatch: return "shape mismatch";
    case ErrorCode::kDTypeMismatch: return "dtype mismatch";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kTruncated: return "truncated";
    case ErrorCode::kChecksumMismatch: return "checksum mismatch";
    case ErrorCode::kLimitExceeded: return "limit exceeded";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kVersionMismatch: return "version mismatch";
    case ErrorCode::kIncompatibleTarget: return "incompatible target";
    case ErrorCode::kNotAModel: return "not a model";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kOutOfMemory: return "out of memory";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

}  // namespace ember
