// Element types. The numeric values are the ones torch.export's serialization schema
// (torch/_export/serde/schema.py, ScalarType) writes in "dtype" fields, so a value
// read from JSON can be cast directly after validation with dtype_from_schema().
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ember {

enum class DType : int32_t {
  kUnknown = 0,
  kUInt8 = 1,     // BYTE
  kInt8 = 2,      // CHAR
  kInt16 = 3,     // SHORT
  kInt32 = 4,     // INT
  kInt64 = 5,     // LONG
  kFloat16 = 6,   // HALF
  kFloat32 = 7,   // FLOAT
  kFloat64 = 8,   // DOUBLE
  kComplex32 = 9,
  kComplex64 = 10,
  kComplex128 = 11,
  kBool = 12,
  kBFloat16 = 13,
  kUInt16 = 28,
  kFloat8E4M3FN = 29,
  kFloat8E5M2 = 30,
  kFloat8E4M3FNUZ = 31,
  kFloat8E5M2FNUZ = 32,
};

// Bytes per element; 0 for kUnknown.
size_t dtype_size(DType t);
// "float32", "int64", ... (PyTorch's names without the "torch." prefix).
const char* dtype_name(DType t);
// Inverse of dtype_name; also accepts safetensors names ("F32", "I64", "BOOL", ...).
std::optional<DType> dtype_from_name(std::string_view name);
// Validates a schema integer; nullopt if it names no known dtype.
std::optional<DType> dtype_from_schema(int64_t value);
// Safetensors spelling ("F32", "BF16", ...); nullptr if it has none.
const char* dtype_safetensors_name(DType t);

bool dtype_is_floating(DType t);
bool dtype_is_integral(DType t);  // bool excluded

}  // namespace ember
