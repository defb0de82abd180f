// Storage owns memory (64-byte aligned host memory, or device memory from the caching
// allocator); Tensor is a non-owning typed view {Storage*, byte offset, dtype, shape} of it.
// Parameters, fragments and shards are views of one flat Storage.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "runtime/device.h"

namespace lowband::runtime {

enum class DType { F32, BF16, F16, I32, U16, U8 };

struct Bf16;  // runtime/bf16.h

std::size_t dtypeSize(DType dtype);
const char* dtypeName(DType dtype);

template <class T>
constexpr DType dtypeOf();
template <>
constexpr DType dtypeOf<float>() {
  return DType::F32;
}
template <>
constexpr DType dtypeOf<Bf16>() {
  return DType::BF16;
}
template <>
constexpr DType dtypeOf<int32_t>() {
  return DType::I32;
}
template <>
constexpr DType dtypeOf<uint16_t>() {
  return DType::U16;
}
template <>
constexpr DType dtypeOf<uint8_t>() {
  return DType::U8;
}

class Storage {
 public:
  static constexpr std::size_t kAlignment = 64;
  static constexpr std::size_t kMapBytes = 1 << 20;  // host storage this big is mmap'ed

  // Host storage is zero-filled; device storage is uninitialised. `stream` is the stream the
  // device memory will be used on (the caching allocator's reuse rule).
  Storage(Device device, std::size_t bytes, const void* stream = nullptr);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  Device device() const { return device_; }
  std::size_t bytes() const { return bytes_; }
  void* data() const { return data_; }

 private:
  Device device_;
  std::size_t bytes_;
  void* data_ = nullptr;
  std::size_t mapped_ = 0;  // bytes of an mmap'ed host allocation
};

class Shape {
 public:
  static constexpr int kMaxDims = 4;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  int ndim() const { return ndim_; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t numel() const;
  std::string str() const;  // "[2, 3]"
  bool operator==(const Shape& other) const;

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int ndim_ = 0;
};

class Tensor {
 public:
  Tensor() = default;
  // A view of `storage` starting `offset` elements of `dtype` in; throws ShapeError when it
  // would reach past the end of the storage.
  Tensor(Storage& storage, DType dtype, Shape shape, int64_t offset = 0);

  Storage* storage() const { return storage_; }
  Device device() const;
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return shape_.numel(); }
  std::size_t nbytes() const { return numel() * dtypeSize(dtype_); }
  int64_t offset() const { return offset_; }  // in elements

  void* raw() const;
  template <class T>
  T* data() const {
    checkDType(dtypeOf<T>());
    return static_cast<T*>(raw());
  }

  // 1-D view of elements [begin, begin + count) of this tensor's flat range.
  Tensor range(int64_t begin, int64_t count) const;
  Tensor reshape(Shape shape) const;

  void checkDType(DType expected) const;

 private:
  Storage* storage_ = nullptr;
  DType dtype_ = DType::F32;
  Shape shape_;
  int64_t offset_ = 0;
};

}  // namespace lowband::runtime
