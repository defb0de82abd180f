// The CUDA backend as plain C++ declarations: no CUDA header leaks into code that includes this,
// so the CPU-only parts of lowband compile with g++ alone. Streams and events travel as void*.
// Only compiled when LB_WITH_CUDA is 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/device.h"
#include "runtime/gemm_args.h"

namespace lowband::runtime::cuda {

CudaProbe probe();
void setDevice(int index);
std::string deviceName(int index);
// major * 10 + minor, e.g. 90 for an H100/H200.
int computeCapability(int index);

void* streamCreate(int device);
void streamDestroy(void* stream);
void streamSynchronize(void* stream);

void* eventCreate(int device);
void eventDestroy(void* event);
void eventRecord(void* event, void* stream);
void streamWaitEvent(void* stream, void* event);
void eventSynchronize(void* event);
bool eventQuery(void* event);
float eventElapsedMs(void* start, void* end);

// Returns nullptr when the device is out of memory (the caching allocator then frees its cache
// and retries); other failures throw CudaError.
void* deviceMalloc(int device, std::size_t bytes);
void deviceFree(int device, void* ptr);
std::size_t deviceMemoryTotal(int device);

enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
void memcpyAsync(void* dst, const void* src, std::size_t bytes, CopyKind kind, void* stream);

// Row-major (batched) GEMM on `stream`: cuBLASLt with a cached plan per shape for one matrix,
// cuBLAS strided-batched for several.
void gemm(int device, void* stream, const GemmArgs& g);

// Runs body(i) for i in [0, n) in a grid-stride kernel; explicitly instantiated in kernels.cu
// for every body in LB_KERNEL_BODIES.
template <class Body>
void launch(void* stream, int64_t n, const Body& body);

// "CUDA runtime 13.0, driver 12.8, cuBLAS 13.0.0, cuDNN 9.x, NCCL 2.28.x" (driver part omitted
// when no driver is installed).
std::string versionInfo();

}  // namespace lowband::runtime::cuda
