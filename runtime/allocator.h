// Caching allocator for device memory. cudaMalloc/cudaFree synchronise the device and cost
// milliseconds, so freed blocks are kept per stream and handed out again for requests of about
// the same size. A block freed on stream S is only reused by allocations on S, which keeps the
// stream order correct without events (the same rule as PyTorch's allocator). When the raw
// allocator reports out-of-memory, the whole cache is released and the request retried once.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace lowband::runtime {

class RawAllocator {
 public:
  virtual ~RawAllocator() = default;
  virtual void* allocate(std::size_t bytes) = 0;  // nullptr when out of memory
  virtual void release(void* ptr) = 0;
  virtual std::string name() const = 0;
};

struct AllocatorStats {
  std::size_t in_use_bytes = 0;
  std::size_t cached_bytes = 0;
  std::size_t peak_in_use_bytes = 0;
  std::size_t raw_allocations = 0;  // calls that reached the raw allocator
  std::size_t cache_hits = 0;
};

class CachingAllocator {
 public:
  static constexpr std::size_t kRounding = 512;

  explicit CachingAllocator(std::unique_ptr<RawAllocator> raw);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // `stream` identifies the stream the memory is used on (its handle; nullptr = default).
  void* allocate(std::size_t bytes, const void* stream = nullptr);
  void release(void* ptr);
  void emptyCache();
  AllocatorStats stats() const;

 private:
  struct Block {
    std::size_t bytes;
    const void* stream;
  };
  void releaseCacheLocked();

  std::unique_ptr<RawAllocator> raw_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, Block> live_;
  std::map<const void*, std::multimap<std::size_t, void*>> free_;  // per stream: size -> block
  AllocatorStats stats_;
};

// The process-wide caching allocator of a CUDA device (created on first use).
CachingAllocator& deviceAllocator(int device);

}  // namespace lowband::runtime
