#include "ember/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>

namespace ember {

std::string device_str(const Device& d) {
  std::string s = d.type == DeviceType::kCPU ? "cpu" : "cuda";
  if (d.index >= 0) s += ":" + std::to_string(d.index);
  return s;
}

// ---------------------------------------------------------------- Storage

std::shared_ptr<Storage> Storage::allocate(size_t nbytes) {
  // Refuse sizes no machine could hold before asking the allocator (keeps hostile
  // metadata from turning into a std::bad_alloc far from its cause).
  constexpr size_t kMax = size_t{1} << 46;  // 64 TiB
  EMBER_CHECK(nbytes <= kMax, ErrorCode::kLimitExceeded, "tensor allocation of ", nbytes,
              " bytes exceeds the limit of ", kMax, " bytes");
  size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  EMBER_CHECK(p != nullptr, ErrorCode::kOutOfMemory, "could not allocate ", nbytes, " bytes");
  auto s = std::shared_ptr<Storage>(new Storage());
  s->data_ = static_cast<uint8_t*>(p);
  s->nbytes_ = nbytes;
  s->writable_ = true;
  s->owned_ = true;
  return s;
}

std::shared_ptr<Storage> Storage::borrow(const void* data, size_t nbytes,
                                         std::shared_ptr<const void> owner, bool writable) {
  auto s = std::shared_ptr<Storage>(new Storage());
  s->data_ = static_cast<uint8_t*>(const_cast<void*>(data));
  s->nbytes_ = nbytes;
  s->writable_ = writable;
  s->owned_ = false;
  s->owner_ = std::move(owner);
  return s;
}

Storage::~Storage() {
  if (owned_) std::free(data_);
}

// ---------------------------------------------------------------- shape helpers

Shape contiguous_strides(const Shape& sizes) {
  Shape strides(sizes.size());
  int64_t acc = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = acc;
    acc *= std::max<int64_t>(sizes[i], 1);
  }
  return strides;
}

int64_t shape_numel(const Shape& sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) {
    EMBER_CHECK(s >= 0, ErrorCode::kInvalidArgument, "negative size ", s, " in shape ", shape_str(sizes));
    int64_t r;
    EMBER_CHECK(!__builtin_mul_overflow(n, s, &r), ErrorCode::kLimitExceeded,
                "element count of shape ", shape_str(sizes), " overflows int64");
    n = r;
  }
  return n;
}

std::string shape_str(const Shape& sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(sizes[i]);
  }
  return s + "]";
}

int64_t normalize_dim(int64_t dim, int64_t rank, const char* what) {
  int64_t r = std::max<int64_t>(rank, 1);
  EMBER_CHECK(dim >= -r && dim < r, ErrorCode::kInvalidArgument, what, " ", dim,
              " is out of range for a tensor of rank ", rank, " (expected in [", -r, ", ", r - 1, "])");
  return dim < 0 ? dim + r : dim;
}

// ---------------------------------------------------------------- Tensor

Tensor::Tensor(std::shared_ptr<Storage> storage, DType dtype, Shape sizes, Shape strides,
               int64_t storage_offset, Device device)
    : storage_(std::move(storage)),
      dtype_(dtype),
      sizes_(std::move(sizes)),
      strides_(std::move(strides)),
      storage_offset_(storage_offset),
      device_(device) {
  EMBER_CHECK(storage_ != nullptr, ErrorCode::kInvalidArgument, "tensor needs a storage");
  EMBER_CHECK(dtype_size(dtype_) > 0, ErrorCode::kUnsupported, "tensor of dtype ", dtype_name(dtype_),
              " (", static_cast<int>(dtype_), ") is not supported");
  EMBER_CHECK(sizes_.size() == strides_.size(), ErrorCode::kInvalidArgument, "tensor has ", sizes_.size(),
              " sizes but ", strides_.size(), " strides");
  EMBER_CHECK(storage_offset_ >= 0, ErrorCode::kInvalidArgument, "negative storage_offset ", storage_offset_);
  int64_t numel = shape_numel(sizes_);
  if (numel == 0) return;
  // Smallest and largest element index addressed, checked for overflow.
  int64_t lo = storage_offset_, hi = storage_offset_;
  for (size_t i = 0; i < sizes_.size(); ++i) {
    int64_t ext;
    EMBER_CHECK(!__builtin_mul_overflow(sizes_[i] - 1, strides_[i], &ext), ErrorCode::kLimitExceeded,
                "tensor extent overflows int64 (sizes ", shape_str(sizes_), ", strides ", shape_str(strides_), ")");
    int64_t* bound = ext < 0 ? &lo : &hi;
    EMBER_CHECK(!__builtin_add_overflow(*bound, ext, bound), ErrorCode::kLimitExceeded,
                "tensor extent overflows int64 (sizes ", shape_str(sizes_), ", strides ", shape_str(strides_), ")");
  }
  int64_t end_byte;
  EMBER_CHECK(lo >= 0 && !__builtin_mul_overflow(hi + 1, static_cast<int64_t>(itemsize()), &end_byte) &&
                  static_cast<uint64_t>(end_byte) <= storage_->nbytes(),
              ErrorCode::kInvalidArgument, "tensor ", dtype_name(dtype_), shape_str(sizes_), " with strides ",
              shape_str(strides_), " and storage_offset ", storage_offset_, " needs elements [", lo, ", ", hi,
              "] but its storage holds ", storage_->nbytes(), " bytes");
}

Tensor Tensor::empty(const Shape& sizes, DType dtype) {
  size_t itemsize = dtype_size(dtype);
  EMBER_CHECK(itemsize > 0, ErrorCode::kUnsupported, "cannot allocate a tensor of dtype ", dtype_name(dtype));
  int64_t n = shape_numel(sizes);
  size_t bytes;
  EMBER_CHECK(!__builtin_mul_overflow(static_cast<size_t>(n), itemsize, &bytes), ErrorCode::kLimitExceeded,
              "tensor ", shape_str(sizes), " is too large");
  return Tensor(Storage::allocate(bytes), dtype, sizes, contiguous_strides(sizes), 0);
}

Tensor Tensor::zeros(const Shape& sizes, DType dtype) {
  Tensor t = empty(sizes, dtype);
  if (t.nbytes()) std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::from_blob(const void* data, const Shape& sizes, DType dtype, std::shared_ptr<const void> owner) {
  size_t bytes = static_cast<size_t>(shape_numel(sizes)) * dtype_size(dtype);
  return Tensor(Storage::borrow(data, bytes, std::move(owner), false), dtype, sizes, contiguous_strides(sizes), 0);
}

Tensor Tensor::scalar(double value, DType dtype) {
  Tensor t = empty({}, dtype);
  set_element_from_double(t, 0, value);
  return t;
}

int64_t Tensor::size(int64_t d) const { return sizes_[normalize_dim(d, dim(), "dimension")]; }
int64_t Tensor::stride(int64_t d) const { return strides_[normalize_dim(d, dim(), "dimension")]; }

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t s : sizes_) n *= s;
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = sizes_.size(); i-- > 0;) {
    if (sizes_[i] == 1) continue;
    if (sizes_[i] == 0) return true;
    if (strides_[i] != expected) return false;
    expected *= sizes_[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  if (!storage_) return nullptr;
  return storage_->data() + storage_offset_ * static_cast<int64_t>(itemsize());
}

void Tensor::check_element_size(size_t n) const {
  EMBER_CHECK(defined(), ErrorCode::kInvalidArgument, "access to an undefined tensor");
  EMBER_CHECK(n == itemsize(), ErrorCode::kDTypeMismatch, "tensor of dtype ", dtype_name(dtype_),
              " accessed with an element type of ", n, " bytes");
}

Tensor Tensor::as_strided(const Shape& sizes, const Shape& strides, int64_t storage_offset) const {
  return Tensor(storage_, dtype_, sizes, strides, storage_offset, device_);
}

Tensor Tensor::view(const Shape& sizes) const {
  Shape out = sizes;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      EMBER_CHECK(infer < 0, ErrorCode::kInvalidArgument, "view shape ", shape_str(sizes), " has more than one -1");
      infer = static_cast<int64_t>(i);
    } else {
      EMBER_CHECK(out[i] >= 0, ErrorCode::kInvalidArgument, "view shape ", shape_str(sizes), " has a negative size");
      known *= out[i];
    }
  }
  int64_t n = numel();
  if (infer >= 0) {
    EMBER_CHECK(known != 0 && n % known == 0, ErrorCode::kShapeMismatch, "cannot view ", to_string(), " as ",
                shape_str(sizes));
    out[infer] = n / known;
  }
  EMBER_CHECK(shape_numel(out) == n, ErrorCode::kShapeMismatch, "cannot view ", to_string(), " as ", shape_str(sizes),
              ": element counts differ");
  EMBER_CHECK(is_contiguous(), ErrorCode::kInvalidArgument, "view of a non-contiguous tensor ", to_string());
  return Tensor(storage_, dtype_, out, contiguous_strides(out), storage_offset_, device_);
}

namespace {

// Calls f(src_offset_elements, dst_flat_index) for every element in row-major order.
template <typename F>
void for_each_index(const Shape& sizes, const Shape& strides, int64_t base, F&& f) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  if (n == 0) return;
  size_t rank = sizes.size();
  std::vector<int64_t> idx(rank, 0);
  int64_t off = base;
  for (int64_t flat = 0; flat < n; ++flat) {
    f(off, flat);
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < sizes[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (sizes[d] - 1);
      idx[d] = 0;
    }
  }
}

}  // namespace

void Tensor::copy_from(const Tensor& src) {
  EMBER_CHECK(src.sizes_ == sizes_, ErrorCode::kShapeMismatch, "copy from ", src.to_string(), " into ", to_string());
  EMBER_CHECK(src.dtype_ == dtype_, ErrorCode::kDTypeMismatch, "copy from ", src.to_string(), " into ", to_string());
  size_t is = itemsize();
  if (is_contiguous() && src.is_contiguous()) {
    if (nbytes()) std::memmove(raw_data(), src.raw_data(), nbytes());
    return;
  }
  // Gather src into a contiguous buffer first so overlapping views behave like PyTorch's copy_.
  std::vector<uint8_t> tmp(nbytes());
  const uint8_t* sbase = src.storage_->data();
  for_each_index(src.sizes_, src.strides_, src.storage_offset_,
                 [&](int64_t off, int64_t flat) { std::memcpy(tmp.data() + flat * is, sbase + off * is, is); });
  uint8_t* dbase = storage_->data();
  for_each_index(sizes_, strides_, storage_offset_,
                 [&](int64_t off, int64_t flat) { std::memcpy(dbase + off * is, tmp.data() + flat * is, is); });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(sizes_, dtype_);
  out.device_ = device_;
  out.copy_from(*this);
  return out;
}

std::string Tensor::to_string() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_str(sizes_);
}

// ---------------------------------------------------------------- half / bfloat16

float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (absx < 0x38800000u) {                                                 // subnormal or zero in half
    float af;
    std::memcpy(&af, &absx, 4);
    // Scale so the half subnormal unit (2^-24) becomes 1, round to nearest even.
    float scaled = af * 16777216.0f;
    uint32_t m = static_cast<uint32_t>(std::nearbyint(scaled));
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t mant = absx & 0x7fffffu;
  uint32_t exp = (absx >> 23) - 127 + 15;
  uint32_t h = exp << 10 | mant >> 13;
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float bf16_to_float(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;
  return static_cast<uint16_t>(x >> 16);
}

// ---------------------------------------------------------------- element access

namespace {

int64_t element_offset(const Tensor& t, int64_t flat) {
  int64_t off = t.storage_offset();
  for (int64_t d = t.dim(); d-- > 0;) {
    int64_t s = t.sizes()[d];
    off += (flat % s) * t.strides()[d];
    flat /= s;
  }
  return off;
}

}  // namespace

double element_as_double(const Tensor& t, int64_t flat) {
  const uint8_t* p = t.storage()->data() + element_offset(t, flat) * static_cast<int64_t>(t.itemsize());
  auto rd = [p](auto tag) {
    decltype(tag) v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  };
  switch (t.dtype()) {
    case DType::kFloat32: return rd(float{});
    case DType::kFloat64: return rd(double{});
    case DType::kFloat16: return half_to_float(rd(uint16_t{}));
    case DType::kBFloat16: return bf16_to_float(rd(uint16_t{}));
    case DType::kInt64: return static_cast<double>(rd(int64_t{}));
    case DType::kInt32: return rd(int32_t{});
    case DType::kInt16: return rd(int16_t{});
    case DType::kInt8: return rd(int8_t{});
    case DType::kUInt8: return rd(uint8_t{});
    case DType::kUInt16: return rd(uint16_t{});
    case DType::kBool: return rd(uint8_t{}) != 0 ? 1.0 : 0.0;
    default: fail(ErrorCode::kUnsupported, "element access for dtype ", dtype_name(t.dtype()));
  }
}

void set_element_from_double(Tensor& t, int64_t flat, double v) {
  uint8_t* p = t.storage()->data() + element_offset(t, flat) * static_cast<int64_t>(t.itemsize());
  auto wr = [p](auto value) { std::memcpy(p, &value, sizeof(value)); };
  switch (t.dtype()) {
    case DType::kFloat32: wr(static_cast<float>(v)); break;
    case DType::kFloat64: wr(v); break;
    case DType::kFloat16: wr(float_to_half(static_cast<float>(v))); break;
    case DType::kBFloat16: wr(float_to_bf16(static_cast<float>(v))); break;
    case DType::kInt64: wr(static_cast<int64_t>(v)); break;
    case DType::kInt32: wr(static_cast<int32_t>(v)); break;
    case DType::kInt16: wr(static_cast<int16_t>(v)); break;
    case DType::kInt8: wr(static_cast<int8_t>(v)); break;
    case DType::kUInt8: wr(static_cast<uint8_t>(v)); break;
    case DType::kUInt16: wr(static_cast<uint16_t>(v)); break;
    case DType::kBool: wr(static_cast<uint8_t>(v != 0.0)); break;
    default: fail(ErrorCode::kUnsupported, "element access for dtype ", dtype_name(t.dtype()));
  }
}

}  // namespace ember
