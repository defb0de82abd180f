// bfloat16 storage (the upper half of an IEEE f32) and the one rounding every device applies:
// f32 -> bf16 to nearest, ties to even, NaN kept NaN. The same bit operations run on the CPU
// and in CUDA kernels, so a CPU bf16 run rounds exactly where and how the GPU does.
#pragma once

#include <cstdint>
#include <cstring>

#include "runtime/launch.h"

namespace lowband::runtime {

struct Bf16 {
  uint16_t bits;
};

LB_HOST_DEVICE inline uint32_t floatBits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

LB_HOST_DEVICE inline float bitsFloat(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

LB_HOST_DEVICE inline uint16_t bf16Bits(float f) {
  const uint32_t u = floatBits(f);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;  // rounding must not turn NaN into Inf
  return static_cast<uint16_t>(nan ? (u >> 16) | 0x40u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

LB_HOST_DEVICE inline float bf16Float(uint16_t bits) {
  return bitsFloat(static_cast<uint32_t>(bits) << 16);
}

// Loads and stores for kernels templated on the storage type (float or Bf16); the math is f32.
LB_HOST_DEVICE inline float toF32(float x) { return x; }
LB_HOST_DEVICE inline float toF32(Bf16 x) { return bf16Float(x.bits); }
template <class T>
LB_HOST_DEVICE inline T fromF32(float x);
template <>
LB_HOST_DEVICE inline float fromF32<float>(float x) {
  return x;
}
template <>
LB_HOST_DEVICE inline Bf16 fromF32<Bf16>(float x) {
  return Bf16{bf16Bits(x)};
}

// x rounded to bf16 and back: what a value stored as bf16 reads as.
LB_HOST_DEVICE inline float roundBf16(float x) { return bf16Float(bf16Bits(x)); }

}  // namespace lowband::runtime
