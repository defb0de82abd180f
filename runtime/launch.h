// The kernel-functor pattern (docs/design.md): each elementwise kernel body is written once as an
// LB_HOST_DEVICE functor `body(i)`; the CPU launcher runs it in an OpenMP loop, the CUDA launcher
// (runtime/cuda/launch.cuh) in a grid-stride kernel. CPU tests therefore exercise the same
// arithmetic the GPU runs.
#pragma once

#include <cstdint>

#include "lowband_build.h"
#include "runtime/error.h"
#include "runtime/stream.h"
#if LB_WITH_CUDA
#include "runtime/cuda/backend.h"
#endif

#if defined(__CUDACC__)
#define LB_HOST_DEVICE __host__ __device__
#else
#define LB_HOST_DEVICE
#endif

namespace lowband::runtime {

namespace cpu {
// Below this much work (items x work per item) the OpenMP fork/join costs more than the loop.
constexpr int64_t kParallelThreshold = 1 << 14;

template <class Body>
void launch(int64_t n, const Body& body, int64_t work_per_item) {
#pragma omp parallel for schedule(static) if (n > 1 && n * work_per_item >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) body(i);
}
}  // namespace cpu

// Runs body(i) for i in [0, n) on the stream's device. Row-wise kernels pass the work of one
// item (e.g. the row length) so small row counts still run in parallel on the CPU. CUDA bodies
// must be listed in LB_KERNEL_BODIES (kernel_bodies.h) so kernels.cu instantiates them.
template <class Body>
void launch(const Stream& stream, int64_t n, const Body& body, int64_t work_per_item = 1) {
  if (n <= 0) return;
  if (stream.device().isCuda()) {
#if LB_WITH_CUDA
    cuda::launch(stream.handle(), n, body);
#else
    LB_THROW(DeviceError, "a CUDA stream was used but this build has no CUDA backend");
#endif
  } else {
    cpu::launch(n, body, work_per_item);
  }
}

}  // namespace lowband::runtime
