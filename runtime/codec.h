// Codecs for exchanged tensors (compressed collectives, outer gradients). One encoding of n
// f32 values, the wire format:
//   header (16 bytes, little-endian): u32 magic "LBC1" (0x3143424c), u8 codec, u8 version (1),
//     u16 block, i64 count n
//   none:  n f32
//   bf16:  n u16, the upper half of each f32 rounded to nearest even
//   Block codecs store nb = ceil(n / block) f32 scales s_b = the block's absmax, then codes of
//   v = x / s_b * R, decoded as code / R * s_b, with R the code's range:
//   fp8:   R = 448, n u8 e4m3 codes (1 sign, 4 exponent bits with bias 7, 3 mantissa bits;
//          no infinities, saturating)
//   int8:  R = 127, n i8 values round(v)
//   int4:  R = 7, ceil(n / 2) bytes, two codes round(v) + 8 in [1, 15] per byte (element 2i in
//          the low nibble)
//   fp4:   R = 1, ceil(n / 2) bytes of E3M0 codes (packed like int4): bit 3 sign, bits 0-2
//          exponent e, value 0 for e = 0 else 2^(e - 7) (magnitudes s_b * 2^-6 .. s_b)
//   topk:  u32 k = ceil(ratio * n), then k u32 indices (ascending) and k f32 values; the other
//          elements decode to 0
// Bounds on |decode(encode(x)) - x| per element, with a = the block's absmax, up to the f32
// rounding of the scaling (relative 2^-23, absolute 2^-149):
//   bf16: 2^-8 |x| + 2^-134 (bf16 subnormal spacing);  fp8: 2^-4 |x| + a 2^-18;
//   int8: a / 254;  int4: a / 14;  fp4: |x| / 3 + a 2^-7;  topk: exact where kept, |x| elsewhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/error.h"
#include "runtime/stream.h"

namespace lowband::runtime {

LB_DEFINE_ERROR(CodecError, "codec");

enum class Codec : uint8_t { None = 0, Bf16 = 1, Fp8 = 2, Int8 = 3, Fp4 = 4, Int4 = 5, Topk = 6 };
// The names (configs, messages), in enum order.
inline constexpr const char* kCodecNames[] = {"none", "bf16", "fp8", "int8", "fp4", "int4", "topk"};

struct CodecSpec {
  Codec codec = Codec::None;
  int64_t block = 64;        // values per scale (fp8, int8, int4, fp4)
  double topk_ratio = 0.01;  // fraction of values kept (topk)
};

const char* codecName(Codec codec);
constexpr std::size_t kCodecHeaderBytes = 16;
constexpr uint32_t kCodecMagic = 0x3143424c;  // "LBC1"

// Bytes of the encoding of n values, header included.
std::size_t encodedBytes(const CodecSpec& spec, int64_t n);

// x (n values) and wire (encodedBytes) on the stream's device.
void encode(const Stream& s, const CodecSpec& spec, const float* x, int64_t n, uint8_t* wire);
// out = decoded values, or out += decoded values with `accumulate` (f32 accumulation of
// received encodings).
void decode(const Stream& s, const CodecSpec& spec, const uint8_t* wire, int64_t n, float* out,
            bool accumulate = false);

// Checks a host-memory encoding's header against what the receiver expects; throws CodecError.
void checkHeader(const uint8_t* wire, std::size_t bytes, const CodecSpec& spec, int64_t n);

}  // namespace lowband::runtime
