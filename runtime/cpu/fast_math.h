// exp for the CPU kernels' hot loops: range reduction to 2^n * e^r, |r| <= ln2/2, and a
// degree-6 polynomial (relative error below 2e-7 over the float range), written so GCC
// vectorises loops that call it (`#pragma omp simd`); glibc's vector expf is only declared
// under -ffast-math, which would also drop the infinities the attention mask relies on.
#pragma once

#include <cstdint>
#include <cstring>

namespace lowband::runtime::cpu {

#pragma omp declare simd
inline float fastExp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round to nearest by adding and removing 1.5 * 2^23 (vectorises, unlike roundf).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693145751953125f;  // ln2 in two parts: exact high bits...
  r -= n * 1.428606765330187045e-06f;    // ...and the rest
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// tanh(u) = 1 - 2 / (e^{2u} + 1); absolute error about 1e-7.
#pragma omp declare simd
inline float fastTanh(float u) { return 1.0f - 2.0f / (fastExp(2.0f * u) + 1.0f); }

}  // namespace lowband::runtime::cpu
