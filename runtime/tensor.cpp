#include "runtime/tensor.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "runtime/allocator.h"
#include "runtime/error.h"

namespace lowband::runtime {

std::size_t dtypeSize(DType dtype) {
  switch (dtype) {
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::BF16:
    case DType::F16:
    case DType::U16:
      return 2;
    case DType::U8:
      return 1;
  }
  return 0;
}

const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "f32";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
    case DType::I32:
      return "i32";
    case DType::U16:
      return "u16";
    case DType::U8:
      return "u8";
  }
  return "?";
}

Storage::Storage(Device device, std::size_t bytes, const void* stream)
    : device_(device), bytes_(bytes) {
  if (device_.isCuda()) {
    data_ = deviceAllocator(device_.index).allocate(bytes, stream);
    return;
  }
  std::size_t padded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (padded == 0) padded = kAlignment;
  if (padded >= kMapBytes) {
    // Fresh anonymous pages read as zero and take memory only once written (a plan builds a
    // model it never trains; first touch also places pages near the thread that uses them).
    data_ = ::mmap(nullptr, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    LB_REQUIRE(data_ != MAP_FAILED, OutOfMemoryError,
               "cannot map " + std::to_string(bytes) + " bytes of host memory");
    mapped_ = padded;
    return;
  }
  data_ = std::aligned_alloc(kAlignment, padded);
  LB_REQUIRE(data_ != nullptr, OutOfMemoryError,
             "cannot allocate " + std::to_string(bytes) + " bytes of host memory");
  std::memset(data_, 0, padded);
}

Storage::~Storage() {
  if (device_.isCuda()) {
    try {
      deviceAllocator(device_.index).release(data_);
    } catch (...) {
    }
  } else if (mapped_ > 0) {
    ::munmap(data_, mapped_);
  } else {
    std::free(data_);
  }
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  if (dims.size() > static_cast<std::size_t>(kMaxDims))
    LB_THROW(ShapeError, "at most " + std::to_string(kMaxDims) + " dimensions are supported");
  for (int64_t d : dims) {
    LB_REQUIRE(d >= 0, ShapeError, "negative dimension " + std::to_string(d));
    dims_[ndim_++] = d;
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= dims_[i];
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
  return s + "]";
}

bool Shape::operator==(const Shape& other) const {
  if (ndim_ != other.ndim_) return false;
  for (int i = 0; i < ndim_; ++i)
    if (dims_[i] != other.dims_[i]) return false;
  return true;
}

Tensor::Tensor(Storage& storage, DType dtype, Shape shape, int64_t offset)
    : storage_(&storage), dtype_(dtype), shape_(shape), offset_(offset) {
  std::size_t end = (offset + shape.numel()) * dtypeSize(dtype);
  LB_REQUIRE(offset >= 0 && end <= storage.bytes(), ShapeError,
             "view " + shape.str() + " at element " + std::to_string(offset) + " of " +
                 dtypeName(dtype) + " needs " + std::to_string(end) +
                 " bytes but the storage has " + std::to_string(storage.bytes()));
}

Device Tensor::device() const { return storage_ ? storage_->device() : Device::cpu(); }

void* Tensor::raw() const {
  LB_REQUIRE(storage_ != nullptr, ShapeError, "use of an empty tensor");
  return static_cast<char*>(storage_->data()) + offset_ * dtypeSize(dtype_);
}

Tensor Tensor::range(int64_t begin, int64_t count) const {
  LB_REQUIRE(begin >= 0 && count >= 0 && begin + count <= numel(), ShapeError,
             "range [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                 ") outside a tensor of " + std::to_string(numel()) + " elements");
  return Tensor(*storage_, dtype_, Shape{count}, offset_ + begin);
}

Tensor Tensor::reshape(Shape shape) const {
  LB_REQUIRE(shape.numel() == numel(), ShapeError,
             "cannot reshape " + shape_.str() + " to " + shape.str());
  return Tensor(*storage_, dtype_, shape, offset_);
}

void Tensor::checkDType(DType expected) const {
  LB_REQUIRE(
      dtype_ == expected, ShapeError,
      std::string("expected a ") + dtypeName(expected) + " tensor, got " + dtypeName(dtype_));
}

}  // namespace lowband::runtime
