// One allocation for many activation buffers: reserve sizes first, then allocate once.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/tensor.h"

namespace lowband::nn {

class Arena {
 public:
  // Returns a handle; the pointer is valid after allocate().
  int reserve(int64_t floats) {
    offsets_.push_back(size_);
    size_ += (floats + 15) / 16 * 16;  // keep every buffer 64-byte aligned
    return static_cast<int>(offsets_.size()) - 1;
  }
  void allocate(runtime::Device device, const void* stream) {
    storage_ = std::make_unique<runtime::Storage>(device, size_ * sizeof(float), stream);
  }
  float* operator[](int handle) const {
    return static_cast<float*>(storage_->data()) + offsets_[handle];
  }
  int64_t bytes() const { return size_ * static_cast<int64_t>(sizeof(float)); }

 private:
  std::vector<int64_t> offsets_;
  int64_t size_ = 0;
  std::unique_ptr<runtime::Storage> storage_;
};

}  // namespace lowband::nn
