#include "ember/dtype.h"

#include <array>

namespace ember {
namespace {

struct DTypeInfo {
  DType dtype;
  size_t size;
  const char* name;
  const char* safetensors;
};

constexpr std::array<DTypeInfo, 19> kInfo{{
    {DType::kUnknown, 0, "unknown", nullptr},
    {DType::kUInt8, 1, "uint8", "U8"},
    {DType::kInt8, 1, "int8", "I8"},
    {DType::kInt16, 2, "int16", "I16"},
    {DType::kInt32, 4, "int32", "I32"},
    {DType::kInt64, 8, "int64", "I64"},
    {DType::kFloat16, 2, "float16", "F16"},
    {DType::kFloat32, 4, "float32", "F32"},
    {DType::kFloat64, 8, "float64", "F64"},
    {DType::kComplex32, 4, "complex32", nullptr},
    {DType::kComplex64, 8, "complex64", "C64"},
    {DType::kComplex128, 16, "complex128", nullptr},
    {DType::kBool, 1, "bool", "BOOL"},
    {DType::kBFloat16, 2, "bfloat16", "BF16"},
    {DType::kUInt16, 2, "uint16", "U16"},
    {DType::kFloat8E4M3FN, 1, "float8_e4m3fn", "F8_E4M3"},
    {DType::kFloat8E5M2, 1, "float8_e5m2", "F8_E5M2"},
    {DType::kFloat8E4M3FNUZ, 1, "float8_e4m3fnuz", nullptr},
    {DType::kFloat8E5M2FNUZ, 1, "float8_e5m2fnuz", nullptr},
}};

const DTypeInfo* find(DType t) {
  for (const auto& i : kInfo)
    if (i.dtype == t) return &i;
  return nullptr;
}

}  // namespace

size_t dtype_size(DType t) {
  const DTypeInfo* i = find(t);
  return i ? i->size : 0;
}

const char* dtype_name(DType t) {
  const DTypeInfo* i = find(t);
  return i ? i->name : "unknown";
}

const char* dtype_safetensors_name(DType t) {
  const DTypeInfo* i = find(t);
  return i ? i->safetensors : nullptr;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  if (name.starts_with("torch.")) name.remove_prefix(6);
  if (name == "float" ) return DType::kFloat32;
  if (name == "half") return DType::kFloat16;
  if (name == "double") return DType::kFloat64;
  if (name == "long") return DType::kInt64;
  if (name == "int") return DType::kInt32;
  for (const auto& i : kInfo) {
    if (i.dtype == DType::kUnknown) continue;
    if (name == i.name || (i.safetensors && name == i.safetensors)) return i.dtype;
  }
  return std::nullopt;
}

std::optional<DType> dtype_from_schema(int64_t value) {
  for (const auto& i : kInfo)
    if (i.dtype != DType::kUnknown && static_cast<int64_t>(i.dtype) == value) return i.dtype;
  return std::nullopt;
}

bool dtype_is_floating(DType t) {
  switch (t) {
    case DType::kFloat16: case DType::kFloat32: case DType::kFloat64: case DType::kBFloat16:
    case DType::kFloat8E4M3FN: case DType::kFloat8E5M2: case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2FNUZ:
      return true;
    default:
      return false;
  }
}

bool dtype_is_integral(DType t) {
  switch (t) {
    case DType::kUInt8: case DType::kInt8: case DType::kInt16: case DType::kInt32:
    case DType::kInt64: case DType::kUInt16:
      return true;
    default:
      return false;
  }
}

}  // namespace ember
