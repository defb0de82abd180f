// One allocation for many activation buffers: reserve sizes first, then allocate once.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/tensor.h"

namespace lowband::nn {

class Arena {
 public:
  static constexpr int64_t kAlignBytes = 256;  // what cuBLASLt's fastest kernels want

  // Returns a handle for `count` elements of `dtype`; the pointer is valid after allocate().
  int reserve(int64_t count, runtime::DType dtype = runtime::DType::F32) {
    offsets_.push_back(bytes_);
    const int64_t bytes = count * static_cast<int64_t>(runtime::dtypeSize(dtype));
    bytes_ += (bytes + kAlignBytes - 1) / kAlignBytes * kAlignBytes;
    return static_cast<int>(offsets_.size()) - 1;
  }
  void allocate(runtime::Device device, const void* stream) {
    storage_ = std::make_unique<runtime::Storage>(device, bytes_, stream);
  }
  float* operator[](int handle) const { return as<float>(handle); }
  template <class T>
  T* as(int handle) const {
    return reinterpret_cast<T*>(static_cast<char*>(storage_->data()) + offsets_[handle]);
  }
  int64_t bytes() const { return bytes_; }

 private:
  std::vector<int64_t> offsets_;
  int64_t bytes_ = 0;
  std::unique_ptr<runtime::Storage> storage_;
};

}  // namespace lowband::nn
