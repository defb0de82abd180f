#include "runtime/allocator.h"

#include <vector>

#include "lowband_build.h"
#include "runtime/error.h"
#if LB_WITH_CUDA
#include "runtime/cuda/backend.h"
#endif

namespace lowband::runtime {

namespace {
std::size_t roundUp(std::size_t bytes) {
  std::size_t r = CachingAllocator::kRounding;
  return bytes == 0 ? r : (bytes + r - 1) / r * r;
}
std::string mib(std::size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }
}  // namespace

CachingAllocator::CachingAllocator(std::unique_ptr<RawAllocator> raw) : raw_(std::move(raw)) {}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mutex_);
  releaseCacheLocked();
  // Live blocks at exit belong to leaked tensors; the driver reclaims them with the context.
}

void* CachingAllocator::allocate(std::size_t bytes, const void* stream) {
  const std::size_t size = roundUp(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = nullptr;
  std::size_t got = size;
  auto pool = free_.find(stream);
  if (pool != free_.end()) {
    // Best fit, but never hand out a block more than twice the request: that would strand memory.
    auto it = pool->second.lower_bound(size);
    if (it != pool->second.end() && it->first <= 2 * size) {
      got = it->first;
      ptr = it->second;
      pool->second.erase(it);
      stats_.cached_bytes -= got;
      ++stats_.cache_hits;
    }
  }
  if (!ptr) {
    ptr = raw_->allocate(size);
    if (!ptr && stats_.cached_bytes > 0) {
      releaseCacheLocked();
      ptr = raw_->allocate(size);
    }
    if (!ptr) {
      LB_THROW(OutOfMemoryError, raw_->name() + ": cannot allocate " + mib(size) + " (" +
                                     std::to_string(size) + " bytes); " + mib(stats_.in_use_bytes) +
                                     " in use by tensors. HINT: reduce data.batch_size or the "
                                     "model, or shard with sync.inner.method zero1/zero2");
    }
    ++stats_.raw_allocations;
  }
  live_.emplace(ptr, Block{got, stream});
  stats_.in_use_bytes += got;
  if (stats_.in_use_bytes > stats_.peak_in_use_bytes)
    stats_.peak_in_use_bytes = stats_.in_use_bytes;
  return ptr;
}

void CachingAllocator::release(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  LB_REQUIRE(it != live_.end(), DeviceError,
             raw_->name() + ": release of a pointer this allocator did not hand out");
  free_[it->second.stream].emplace(it->second.bytes, ptr);
  stats_.in_use_bytes -= it->second.bytes;
  stats_.cached_bytes += it->second.bytes;
  live_.erase(it);
}

void CachingAllocator::emptyCache() {
  std::lock_guard<std::mutex> lock(mutex_);
  releaseCacheLocked();
}

void CachingAllocator::releaseCacheLocked() {
  for (auto& [stream, pool] : free_)
    for (auto& [bytes, ptr] : pool) raw_->release(ptr);
  free_.clear();
  stats_.cached_bytes = 0;
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

#if LB_WITH_CUDA
namespace {
class CudaRawAllocator : public RawAllocator {
 public:
  explicit CudaRawAllocator(int device) : device_(device) {}
  void* allocate(std::size_t bytes) override { return cuda::deviceMalloc(device_, bytes); }
  void release(void* ptr) override { cuda::deviceFree(device_, ptr); }
  std::string name() const override { return "cuda:" + std::to_string(device_); }

 private:
  int device_;
};
}  // namespace
#endif

CachingAllocator& deviceAllocator(int device) {
#if LB_WITH_CUDA
  static std::mutex mutex;
  // Never destroyed: tensors with static lifetime may release into it during exit.
  static auto* allocators = new std::map<int, std::unique_ptr<CachingAllocator>>();
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = (*allocators)[device];
  if (!slot) slot = std::make_unique<CachingAllocator>(std::make_unique<CudaRawAllocator>(device));
  return *slot;
#else
  (void)device;
  LB_THROW(DeviceError, "device memory requested but this build has no CUDA backend");
#endif
}

}  // namespace lowband::runtime
