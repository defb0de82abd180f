// Elementwise kernel bodies shared by the CPU and CUDA launchers (see launch.h).
#pragma once

#include <cstdint>

#include "runtime/launch.h"

namespace lowband::runtime::bodies {

struct Fill {
  float* x;
  float value;
  LB_HOST_DEVICE void operator()(int64_t i) const { x[i] = value; }
};

struct Scale {
  float* x;
  float a;
  LB_HOST_DEVICE void operator()(int64_t i) const { x[i] *= a; }
};

// y += a * x
struct Axpy {
  float a;
  const float* x;
  float* y;
  LB_HOST_DEVICE void operator()(int64_t i) const { y[i] += a * x[i]; }
};

// x += w * (y - x): the Streaming DiLoCo mixing step and exponential averages.
struct Lerp {
  float* x;
  const float* y;
  float w;
  LB_HOST_DEVICE void operator()(int64_t i) const { x[i] += w * (y[i] - x[i]); }
};

// out = a + b
struct Add {
  const float* a;
  const float* b;
  float* out;
  LB_HOST_DEVICE void operator()(int64_t i) const { out[i] = a[i] + b[i]; }
};

}  // namespace lowband::runtime::bodies

// Every body launched on CUDA; kernels.cu instantiates the grid-stride launcher for each.
#define LB_KERNEL_BODIES(X)            \
  X(::lowband::runtime::bodies::Fill)  \
  X(::lowband::runtime::bodies::Scale) \
  X(::lowband::runtime::bodies::Axpy)  \
  X(::lowband::runtime::bodies::Lerp)  \
  X(::lowband::runtime::bodies::Add)
