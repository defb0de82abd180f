// Encode/decode bodies of runtime/codec.h, one item per block of values (or per value for bf16),
// shared by the CPU and CUDA launchers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "runtime/bf16.h"
#include "runtime/launch.h"

namespace lowband::runtime::bodies {

LB_HOST_DEVICE inline float blockAbsMax(const float* x, int64_t begin, int64_t end) {
  float m = 0;
#if !defined(__CUDA_ARCH__)
#pragma omp simd reduction(max : m)
#endif
  for (int64_t i = begin; i < end; ++i)
    m = fabsf(x[i]) > m ? fabsf(x[i]) : m;  // not fmaxf: a libm call
  return m;
}

struct EncodeBf16 {
  const float* x;
  uint16_t* out;
  LB_HOST_DEVICE void operator()(int64_t i) const { out[i] = bf16Bits(x[i]); }
};

struct DecodeBf16 {
  const uint16_t* in;
  float* out;
  bool accumulate;
  LB_HOST_DEVICE void operator()(int64_t i) const {
    const float v = bf16Float(in[i]);
    out[i] = accumulate ? out[i] + v : v;
  }
};

// Round to nearest even for |v| < 2^22 without libm (vectorises on any x86-64).
LB_HOST_DEVICE inline float roundNearest(float v) {
  const float magic = copysignf(12582912.0f, v);  // 1.5 * 2^23, branch-free
  return (v + magic) - magic;
}

// Vectorise the loop that follows on the CPU (the bodies' loops carry no dependences).
#if defined(__CUDA_ARCH__)
#define LB_SIMD
#else
#define LB_SIMD _Pragma("omp simd")
#endif

// e4m3 of v: nearest even, saturating at 448, subnormals (m * 2^-9) below 2^-6. Bit arithmetic
// on the f32 encoding: its exponent field minus 120 is e4m3's, its top 3 mantissa bits e4m3's.
LB_HOST_DEVICE inline uint8_t toE4m3(float v) {
  // Branch-free (selects, not returns) so the CPU loops vectorise.
  const uint32_t sign = v < 0 ? 0x80u : 0u;
  const float a = fabsf(v);
  const uint32_t sub = static_cast<uint32_t>(roundNearest(a * 512.0f));
  uint32_t u = floatBits(a);
  u += 0x7ffffu + ((u >> 20) & 1u);
  uint32_t normal = (u >> 20) - (120u << 3);
  normal = normal > 0x7eu ? 0x7eu : normal;
  const uint32_t code = !(a < 448.0f) ? 0x7eu : (a < 0.015625f ? sub : normal);
  return static_cast<uint8_t>(sign | code);
}

LB_HOST_DEVICE inline float fromE4m3(uint8_t c) {
  const uint32_t exp = (c >> 3) & 0xfu, mant = c & 7u;
  const float mag = exp == 0 ? static_cast<float>(mant) * 0.001953125f  // 2^-9
                             : bitsFloat((exp + 120u) << 23 | mant << 20);
  return c & 0x80 ? -mag : mag;
}

// E3M0 code of v in [-1, 1]: the nearest of 0 and +-2^-6 .. 2^0 (midpoints 1.5 * 2^k).
LB_HOST_DEVICE inline uint8_t toE3m0(float v) {
  const uint32_t sign = v < 0 ? 8u : 0u;
  const float a = fabsf(v);
  const uint32_t u = floatBits(a);
  int k = static_cast<int>(u >> 23) - 127 + static_cast<int>((u >> 22) & 1u);  // mantissa >= 1.5
  k = k > 0 ? 0 : (k < -6 ? -6 : k);
  // Below half of 2^-6 the nearest value is 0.
  return static_cast<uint8_t>(a < 0.0078125f ? 0u : sign | static_cast<uint32_t>(k + 7));
}

LB_HOST_DEVICE inline float fromE3m0(uint8_t c) {
  const uint32_t e = c & 7u;
  const float mag = e == 0 ? 0.0f : bitsFloat((e + 120u) << 23);
  return c & 8 ? -mag : mag;
}

enum class BlockCodec { Fp8, Int8, Int4, Fp4 };

// Largest code magnitude: a block's absmax maps to it.
template <BlockCodec K>
constexpr float kCodeRange = K == BlockCodec::Fp8    ? 448.0f
                             : K == BlockCodec::Int8 ? 127.0f
                             : K == BlockCodec::Int4 ? 7.0f
                                                     : 1.0f;
template <BlockCodec K>
constexpr bool kNibbles = K == BlockCodec::Int4 || K == BlockCodec::Fp4;

// Blocks whose absmax is this small are scaled by 2^100 first (exactly: a power of two), so
// range / absmax and absmax / range stay normal floats.
constexpr float kTinyBlock = 1e-30f;
constexpr float kTinyScale = 1.2676506e30f;          // 2^100
constexpr float kTinyScaleInverse = 7.8886091e-31f;  // 2^-100

template <BlockCodec K>
LB_HOST_DEVICE inline uint32_t toCode(float v) {  // v already in the code's range
  if constexpr (K == BlockCodec::Fp8) return toE4m3(v);
  if constexpr (K == BlockCodec::Int8)  // the two's complement byte of round(v) in [-127, 127]
    return static_cast<uint32_t>(static_cast<int32_t>(roundNearest(v))) & 0xffu;
  if constexpr (K == BlockCodec::Int4)
    return static_cast<uint32_t>(static_cast<int>(roundNearest(v)) + 8);
  return toE3m0(v);
}

template <BlockCodec K>
LB_HOST_DEVICE inline float fromCode(uint32_t c) {
  if constexpr (K == BlockCodec::Fp8) return fromE4m3(static_cast<uint8_t>(c));
  if constexpr (K == BlockCodec::Int8) return static_cast<float>(static_cast<int8_t>(c));
  if constexpr (K == BlockCodec::Int4) return static_cast<float>(static_cast<int>(c) - 8);
  return fromE3m0(static_cast<uint8_t>(c));
}

// One item per block: the scale (the block's absmax), then the block's codes. Nibble codecs
// need even block sizes so no byte is shared by two blocks (checked by the caller). The loops
// run over whole elements (bytes, or pairs for nibbles) with the ragged tail apart, so they
// vectorise on the CPU.
template <BlockCodec K>
struct EncodeBlocks {
  const float* x;
  int64_t n, block;
  float* scales;
  uint8_t* codes;
  LB_HOST_DEVICE void operator()(int64_t b) const {
    const int64_t begin = b * block, end = begin + block < n ? begin + block : n;
    const float a = blockAbsMax(x, begin, end);
    scales[b] = a;
    const float pre = a < kTinyBlock ? kTinyScale : 1.0f;
    const float to_code = a > 0 ? kCodeRange<K> / (a * pre) : 0.0f;
    if constexpr (kNibbles<K>) {
      const int64_t pairs = (end - begin) / 2;
      const float* xb = x + begin;
      uint8_t* cb = codes + begin / 2;
      LB_SIMD
      for (int64_t j = 0; j < pairs; ++j)
        cb[j] = static_cast<uint8_t>(toCode<K>(xb[2 * j] * pre * to_code) |
                                     toCode<K>(xb[2 * j + 1] * pre * to_code) << 4);
      if ((end - begin) % 2)
        cb[pairs] = static_cast<uint8_t>(toCode<K>(xb[2 * pairs] * pre * to_code));
    } else {
      // Byte codes may alias anything; restrict tells the vectoriser they do not alias x.
      const float* __restrict xr = x + begin;
      uint8_t* __restrict cr = codes + begin;
      const int64_t count = end - begin;
      LB_SIMD
      for (int64_t i = 0; i < count; ++i)
        cr[i] = static_cast<uint8_t>(toCode<K>(xr[i] * pre * to_code));
    }
  }
};

template <BlockCodec K>
struct DecodeBlocks {
  const float* scales;
  const uint8_t* codes;
  int64_t n, block;
  float* out;
  bool accumulate;
  template <bool Accumulate>
  LB_HOST_DEVICE void run(int64_t begin, int64_t end, float step, float post) const {
    auto put = [&](int64_t i, float v) {
      if constexpr (Accumulate)
        out[i] += v;
      else
        out[i] = v;
    };
    if constexpr (kNibbles<K>) {
      const int64_t pairs = (end - begin) / 2;
      const uint8_t* cb = codes + begin / 2;
      LB_SIMD
      for (int64_t j = 0; j < pairs; ++j) {
        put(begin + 2 * j, fromCode<K>(cb[j] & 0x0fu) * step * post);
        put(begin + 2 * j + 1, fromCode<K>(cb[j] >> 4u) * step * post);
      }
      if ((end - begin) % 2) put(end - 1, fromCode<K>(cb[pairs] & 0x0fu) * step * post);
    } else {
      LB_SIMD
      for (int64_t i = begin; i < end; ++i) put(i, fromCode<K>(codes[i]) * step * post);
    }
  }
  LB_HOST_DEVICE void operator()(int64_t b) const {
    const int64_t begin = b * block, end = begin + block < n ? begin + block : n;
    const float a = scales[b];
    // code * (a / range); tiny blocks go through 2^100 so the step stays a normal float and
    // only the final product rounds into the subnormals.
    const bool tiny = a < kTinyBlock;
    const float step = (tiny ? a * kTinyScale : a) / kCodeRange<K>;
    const float post = tiny ? kTinyScaleInverse : 1.0f;
    if (accumulate)
      run<true>(begin, end, step, post);
    else
      run<false>(begin, end, step, post);
  }
};

}  // namespace lowband::runtime::bodies

#define LB_CODEC_BLOCK_BODIES(X, K)              \
  X(::lowband::runtime::bodies::EncodeBlocks<K>) \
  X(::lowband::runtime::bodies::DecodeBlocks<K>)
#define LB_CODEC_BODIES(X)                                               \
  X(::lowband::runtime::bodies::EncodeBf16)                              \
  X(::lowband::runtime::bodies::DecodeBf16)                              \
  LB_CODEC_BLOCK_BODIES(X, ::lowband::runtime::bodies::BlockCodec::Fp8)  \
  LB_CODEC_BLOCK_BODIES(X, ::lowband::runtime::bodies::BlockCodec::Int8) \
  LB_CODEC_BLOCK_BODIES(X, ::lowband::runtime::bodies::BlockCodec::Int4) \
  LB_CODEC_BLOCK_BODIES(X, ::lowband::runtime::bodies::BlockCodec::Fp4)
