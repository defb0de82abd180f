// Grid-stride CUDA launcher for LB_HOST_DEVICE kernel bodies (the CPU twin is cpu::launch).
#pragma once

#include <algorithm>
#include <cstdint>

#include "runtime/cuda/check.h"

namespace lowband::runtime::cuda {

template <class Body>
__global__ void gridStride(int64_t n, Body body) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(blockDim.x) * gridDim.x)
    body(i);
}

template <class Body>
void launch(void* stream, int64_t n, const Body& body) {
  constexpr int kThreads = 256;
  // Enough blocks to fill any current GPU; the stride loop covers the rest.
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535);
  gridStride<<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      n, body);
  LB_CUDA_CHECK(cudaGetLastError());
}

}  // namespace lowband::runtime::cuda
