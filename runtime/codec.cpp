#include "runtime/codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <numeric>
#include <vector>

#include "runtime/codec_bodies.h"
#include "runtime/error.h"
#include "runtime/kernel_bodies.h"
#include "runtime/kernels.h"

namespace lowband::runtime {

namespace {

int64_t blocks(const CodecSpec& s, int64_t n) { return (n + s.block - 1) / s.block; }

int64_t topkCount(const CodecSpec& s, int64_t n) {
  return n == 0 ? 0 : std::clamp<int64_t>(static_cast<int64_t>(std::ceil(s.topk_ratio * n)), 1, n);
}

bool isBlockCodec(Codec c) {
  return c == Codec::Fp8 || c == Codec::Int8 || c == Codec::Int4 || c == Codec::Fp4;
}

// Calls f.template operator()<K>() with the block codec K of `c`.
template <class F>
void withBlockCodec(Codec c, F&& f) {
  using K = bodies::BlockCodec;
  switch (c) {
    case Codec::Fp8:
      return f.template operator()<K::Fp8>();
    case Codec::Int8:
      return f.template operator()<K::Int8>();
    case Codec::Int4:
      return f.template operator()<K::Int4>();
    default:
      return f.template operator()<K::Fp4>();
  }
}

void checkSpec(const CodecSpec& s) {
  if (isBlockCodec(s.codec) && (s.block < 2 || s.block % 2 != 0 || s.block > 65534))
    LB_THROW(CodecError, std::string(codecName(s.codec)) +
                             " needs an even block size in [2, 65534], got " +
                             std::to_string(s.block));
  if (s.codec == Codec::Topk && !(s.topk_ratio > 0 && s.topk_ratio <= 1))
    LB_THROW(CodecError, "topk ratio must be in (0, 1], got " + std::to_string(s.topk_ratio));
}

struct Header {
  uint32_t magic;
  uint8_t codec;
  uint8_t version;
  uint16_t block;
  int64_t count;
};
static_assert(sizeof(Header) == kCodecHeaderBytes);

// The header lives at the start of the wire buffer (device memory on CUDA).
void writeHeader(const Stream& s, const CodecSpec& spec, int64_t n, uint8_t* wire) {
  const Header h{kCodecMagic, static_cast<uint8_t>(spec.codec), 1,
                 static_cast<uint16_t>(isBlockCodec(spec.codec) ? spec.block : 0), n};
  copyBytes(s, wire, s.device(), &h, Device::cpu(), sizeof h);
  s.synchronize();  // `h` is on this stack frame
}

// Top-k by magnitude on the host (indices ascending); CUDA data is staged through the host.
void encodeTopk(const Stream& s, const CodecSpec& spec, const float* x, int64_t n,
                uint8_t* payload) {
  std::vector<float> host(n);
  copyBytes(s, host.data(), Device::cpu(), x, s.device(), n * sizeof(float));
  s.synchronize();
  const int64_t k = topkCount(spec, n);
  std::vector<uint32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0u);
  std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), [&](uint32_t a, uint32_t b) {
    return std::fabs(host[a]) > std::fabs(host[b]) ||
           (std::fabs(host[a]) == std::fabs(host[b]) && a < b);
  });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  std::vector<uint8_t> out(4 + 8 * k);
  const uint32_t k32 = static_cast<uint32_t>(k);
  std::memcpy(out.data(), &k32, 4);
  std::memcpy(out.data() + 4, idx.data(), 4 * k);
  for (int64_t i = 0; i < k; ++i) std::memcpy(out.data() + 4 + 4 * k + 4 * i, &host[idx[i]], 4);
  copyBytes(s, payload, s.device(), out.data(), Device::cpu(), out.size());
  s.synchronize();
}

void decodeTopk(const Stream& s, const CodecSpec& spec, const uint8_t* payload, int64_t n,
                float* out, bool accumulate) {
  const int64_t k = topkCount(spec, n);
  std::vector<uint8_t> in(4 + 8 * k);
  copyBytes(s, in.data(), Device::cpu(), payload, s.device(), in.size());
  std::vector<float> host(n, 0.0f);
  if (accumulate) copyBytes(s, host.data(), Device::cpu(), out, s.device(), n * sizeof(float));
  s.synchronize();
  for (int64_t i = 0; i < k; ++i) {
    uint32_t at;
    float v;
    std::memcpy(&at, in.data() + 4 + 4 * i, 4);
    std::memcpy(&v, in.data() + 4 + 4 * k + 4 * i, 4);
    if (at >= n)
      LB_THROW(CodecError, "topk index " + std::to_string(at) + " >= count " + std::to_string(n));
    host[at] = accumulate ? host[at] + v : v;
  }
  copyBytes(s, out, s.device(), host.data(), Device::cpu(), n * sizeof(float));
  s.synchronize();
}

}  // namespace

const char* codecName(Codec codec) {
  const auto i = static_cast<std::size_t>(codec);
  return i < std::size(kCodecNames) ? kCodecNames[i] : "?";
}

std::size_t encodedBytes(const CodecSpec& s, int64_t n) {
  std::size_t payload = 0;
  switch (s.codec) {
    case Codec::None:
      payload = 4 * n;
      break;
    case Codec::Bf16:
      payload = 2 * n;
      break;
    case Codec::Fp8:
    case Codec::Int8:
      payload = 4 * blocks(s, n) + n;
      break;
    case Codec::Int4:
    case Codec::Fp4:
      payload = 4 * blocks(s, n) + (n + 1) / 2;
      break;
    case Codec::Topk:
      payload = 4 + 8 * topkCount(s, n);
      break;
  }
  return kCodecHeaderBytes + payload;
}

void encode(const Stream& s, const CodecSpec& spec, const float* x, int64_t n, uint8_t* wire) {
  checkSpec(spec);
  writeHeader(s, spec, n, wire);
  uint8_t* payload = wire + kCodecHeaderBytes;
  switch (spec.codec) {
    case Codec::None:
      copyBytes(s, payload, s.device(), x, s.device(), 4 * n);
      break;
    case Codec::Bf16:
      launch(s, n, bodies::EncodeBf16{x, reinterpret_cast<uint16_t*>(payload)}, 2);
      break;
    case Codec::Topk:
      encodeTopk(s, spec, x, n, payload);
      break;
    default: {
      float* scales = reinterpret_cast<float*>(payload);
      const int64_t nb = blocks(spec, n);
      withBlockCodec(spec.codec, [&]<bodies::BlockCodec K>() {
        launch(s, nb, bodies::EncodeBlocks<K>{x, n, spec.block, scales, payload + 4 * nb},
               4 * spec.block);
      });
    }
  }
}

void decode(const Stream& s, const CodecSpec& spec, const uint8_t* wire, int64_t n, float* out,
            bool accumulate) {
  checkSpec(spec);
  const uint8_t* payload = wire + kCodecHeaderBytes;
  switch (spec.codec) {
    case Codec::None: {
      const float* v = reinterpret_cast<const float*>(payload);
      if (accumulate)
        launch(s, n, bodies::Axpy{1.0f, v, out});
      else
        copyBytes(s, out, s.device(), v, s.device(), 4 * n);
      break;
    }
    case Codec::Bf16:
      launch(s, n, bodies::DecodeBf16{reinterpret_cast<const uint16_t*>(payload), out, accumulate},
             2);
      break;
    case Codec::Topk:
      decodeTopk(s, spec, payload, n, out, accumulate);
      break;
    default: {
      const int64_t nb = blocks(spec, n);
      withBlockCodec(spec.codec, [&]<bodies::BlockCodec K>() {
        launch(s, nb,
               bodies::DecodeBlocks<K>{reinterpret_cast<const float*>(payload), payload + 4 * nb, n,
                                       spec.block, out, accumulate},
               4 * spec.block);
      });
    }
  }
}

void checkHeader(const uint8_t* wire, std::size_t bytes, const CodecSpec& spec, int64_t n) {
  if (bytes < kCodecHeaderBytes)
    LB_THROW(CodecError, "encoding of " + std::to_string(bytes) + " bytes has no header");
  Header h;
  std::memcpy(&h, wire, sizeof h);
  if (h.magic != kCodecMagic || h.version != 1)
    LB_THROW(CodecError, "not a version-1 lowband encoding (bad magic or version)");
  if (h.codec != static_cast<uint8_t>(spec.codec) || h.count != n ||
      (isBlockCodec(spec.codec) && h.block != spec.block))
    LB_THROW(CodecError, std::string("encoding holds ") + std::to_string(h.count) +
                             " values of codec " + std::to_string(h.codec) + ", expected " +
                             std::to_string(n) + " of " + codecName(spec.codec));
  if (bytes != encodedBytes(spec, n))
    LB_THROW(CodecError, "encoding is " + std::to_string(bytes) + " bytes, expected " +
                             std::to_string(encodedBytes(spec, n)));
}

}  // namespace lowband::runtime
