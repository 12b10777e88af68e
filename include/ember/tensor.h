// Tensors: typed, strided views over reference-counted storage.
//
// A Tensor never owns bytes directly: it holds a shared_ptr<Storage>. Storage is either
// owned (allocated by Ember, 64-byte aligned) or borrowed (a window into memory that some
// other object keeps alive, e.g. an mmap'd archive; the Storage holds a reference to that
// owner, so the mapping lives as long as any tensor views it). Copying a Tensor copies
// the view, not the data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ember/dtype.h"
#include "ember/error.h"

namespace ember {

using Shape = std::vector<int64_t>;

enum class DeviceType : int32_t { kCPU = 0, kCUDA = 1 };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int32_t index = -1;  // -1: unspecified
  bool operator==(const Device&) const = default;
};
std::string device_str(const Device& d);  // "cpu", "cuda:0"

class Storage {
 public:
  // Owned, uninitialized, 64-byte aligned. Throws kOutOfMemory / kLimitExceeded.
  static std::shared_ptr<Storage> allocate(size_t nbytes);
  // Borrowed: `data` stays valid while `owner` is alive. `writable` says whether kernels
  // may write through it (mmap'd archives are read-only).
  static std::shared_ptr<Storage> borrow(const void* data, size_t nbytes,
                                         std::shared_ptr<const void> owner, bool writable = false);

  uint8_t* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  bool writable() const { return writable_; }
  bool owned() const { return owned_; }

  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

 private:
  Storage() = default;
  uint8_t* data_ = nullptr;
  size_t nbytes_ = 0;
  bool writable_ = false;
  bool owned_ = false;
  std::shared_ptr<const void> owner_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor
  // A view; validates that every addressable element lies inside the storage
  // (throws kInvalidArgument otherwise). Sizes must be >= 0; strides may be any value.
  Tensor(std::shared_ptr<Storage> storage, DType dtype, Shape sizes, Shape strides,
         int64_t storage_offset = 0, Device device = {});

  // New owned contiguous tensor, uninitialized / zero-filled.
  static Tensor empty(const Shape& sizes, DType dtype);
  static Tensor zeros(const Shape& sizes, DType dtype);
  // Borrowed contiguous read-only view of `data`, kept valid by `owner`.
  static Tensor from_blob(const void* data, const Shape& sizes, DType dtype,
                          std::shared_ptr<const void> owner);
  // 0-d tensor holding one value.
  static Tensor scalar(double value, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& sizes() const { return sizes_; }
  const Shape& strides() const { return strides_; }
  int64_t storage_offset() const { return storage_offset_; }
  const Device& device() const { return device_; }
  int64_t dim() const { return static_cast<int64_t>(sizes_.size()); }
  // Size of dimension d; negative d counts from the end. Throws kInvalidArgument if out of range.
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const;
  size_t itemsize() const { return dtype_size(dtype_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * itemsize(); }
  bool is_contiguous() const;

  const std::shared_ptr<Storage>& storage() const { return storage_; }
  // Address of element [0, 0, ...] (storage base + storage_offset * itemsize).
  void* raw_data() const;
  // Typed pointer; throws kDTypeMismatch if sizeof(T) differs from the element size.
  template <typename T>
  T* data() const {
    check_element_size(sizeof(T));
    return static_cast<T*>(raw_data());
  }

  // Views (share storage). view() needs a contiguous tensor; -1 is inferred.
  Tensor as_strided(const Shape& sizes, const Shape& strides, int64_t storage_offset) const;
  Tensor view(const Shape& sizes) const;
  // Copies. contiguous() returns *this when already contiguous.
  Tensor contiguous() const;
  Tensor clone() const;
  // Element-wise copy of `src` into this tensor (same shape, same dtype); any strides.
  void copy_from(const Tensor& src);

  bool writable() const { return storage_ && storage_->writable(); }
  // "float32[2, 3]"
  std::string to_string() const;

 private:
  void check_element_size(size_t n) const;
  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::kUnknown;
  Shape sizes_;
  Shape strides_;
  int64_t storage_offset_ = 0;
  Device device_;
};

// Row-major strides for `sizes`.
Shape contiguous_strides(const Shape& sizes);
// Product of sizes; throws kLimitExceeded on overflow or negative sizes.
int64_t shape_numel(const Shape& sizes);
// "[2, 3]"
std::string shape_str(const Shape& sizes);
// Normalizes a possibly negative dimension index for a tensor of rank `rank`
// (throws kInvalidArgument naming `what` when out of range).
int64_t normalize_dim(int64_t dim, int64_t rank, const char* what = "dim");

// IEEE half / bfloat16 conversions (round to nearest even).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bf16_to_float(uint16_t b);
uint16_t float_to_bf16(float f);

// Reads element i (in row-major logical order) of any dtype as double / writes one.
// Slow, for reference code, tests and printing.
double element_as_double(const Tensor& t, int64_t flat_index);
void set_element_from_double(Tensor& t, int64_t flat_index, double value);

}  // namespace ember
