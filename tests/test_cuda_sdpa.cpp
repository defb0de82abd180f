// cuDNN fused attention (runtime/cuda/sdpa.h). Its static limits are checked without a GPU; on a
// GPU the bf16 forward and backward are compared with the f32 batched attention of nn_ops run on
// the CPU over the same bf16-rounded inputs, and must repeat bit for bit.
//
// Tolerances (bf16 keeps 8 significant bits, 2^-9 = 0.2% relative rounding): out and dq/dk/dv
// elementwise |gpu - cpu| <= 2e-2 + 2e-2 |cpu| and relative L2 error <= 1e-2 per tensor; lse
// |gpu - cpu| <= 1e-3 max(1, |cpu|) (it is f32 from exact bf16 products, f32 accumulation).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/cuda/check.h"
#include "runtime/cuda/sdpa.h"
#include "runtime/device.h"
#include "runtime/kernels.h"
#include "runtime/nn_ops.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace lowband::runtime {
namespace {

using cuda::SdpaShape;

// f32 -> bf16 bits, round to nearest even (the inputs here are finite).
uint16_t toBf16(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float fromBf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f = 0;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::vector<uint16_t> toBf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = toBf16(x[i]);
  return out;
}

std::vector<float> fromBf16(const std::vector<uint16_t>& x) {
  std::vector<float> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = fromBf16(x[i]);
  return out;
}

// Uniform values in [-amplitude, amplitude], already rounded to bf16.
std::vector<float> bf16Uniform(std::size_t n, float amplitude, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  std::vector<float> x(n);
  for (float& v : x) v = fromBf16(toBf16(dist(rng)));
  return x;
}

template <class T>
int64_t differing(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return -1;
  int64_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

float scaleOf(const SdpaShape& s) { return 1.0f / std::sqrt(static_cast<float>(s.hd)); }

// Compares `width` elements at `offset` of each of `rows` rows `stride` apart: every element
// within atol + rtol |want|, and the relative L2 error of the whole section within `l2`.
void expectClose(const std::vector<float>& got, const std::vector<float>& want, int64_t rows,
                 int64_t stride, int64_t offset, int64_t width, double atol, double rtol, double l2,
                 const std::string& what) {
  double err2 = 0, ref2 = 0, worst = 0;
  int64_t worst_at = -1, bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < width; ++j) {
      const int64_t i = r * stride + offset + j;
      const double g = got[i], w = want[i], e = std::fabs(g - w);
      err2 += e * e;
      ref2 += w * w;
      const double ratio = e / (atol + rtol * std::fabs(w));
      if (!(ratio <= 1.0)) ++bad;  // also counts NaN
      if (!(ratio <= worst)) {
        worst = ratio;
        worst_at = i;
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " elements out of tolerance; worst at " << worst_at
                    << ": gpu " << got[worst_at] << " cpu " << want[worst_at];
  const double rel = std::sqrt(err2 / (ref2 > 0 ? ref2 : 1.0));
  EXPECT_LE(rel, l2) << what << ": relative L2 error";
}

TEST(CudaSdpaLimits, HeadDimNotAMultipleOf8IsNamedWithoutADevice) {
  const std::string why = cuda::sdpaUnsupportedReason(0, {2, 64, 4, 30});
  EXPECT_NE(why.find("head dim"), std::string::npos) << why;
  EXPECT_NE(why.find("30"), std::string::npos) << why;
}

TEST(CudaSdpaLimits, CallsCheckTheStaticLimitsBeforeTouchingTheDevice) {
  // None of these pointers is dereferenced: the calls throw first.
  auto* odd = reinterpret_cast<void*>(std::uintptr_t{0x1008});
  auto* even = reinterpret_cast<void*>(std::uintptr_t{0x2000});
  auto* lse = reinterpret_cast<float*>(std::uintptr_t{0x3000});
  try {
    cuda::sdpaForward(0, nullptr, {2, 64, 4, 32}, 0.1f, odd, even, lse);
    FAIL() << "a misaligned qkv was accepted";
  } catch (const CudnnError& e) {
    EXPECT_NE(std::string(e.what()).find("qkv is not 16-byte aligned"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(cuda::sdpaBackward(0, nullptr, {2, 64, 4, 12}, 0.1f, even, even, even, lse, even),
               CudnnError);
}

class CudaSdpa : public ::testing::Test {
 protected:
  void SetUp() override {
    if (probeCuda().count == 0) GTEST_SKIP() << "no usable GPU: " << probeCuda().message;
    int major = 0;
    LB_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
    if (major < 8) GTEST_SKIP() << "cuDNN's fused bf16 attention needs sm_80 or newer";
  }
};

std::size_t bytes(int64_t elements, std::size_t element_size) {
  return static_cast<std::size_t>(elements) * element_size;
}

// Device buffers of one problem; inputs uploaded as bf16.
struct DeviceProblem {
  SdpaShape s;
  Device gpu = Device::cuda(0);
  Stream stream{gpu};
  int64_t C = s.H * s.hd;
  int64_t qkv_elements = s.B * s.T * 3 * C, out_elements = s.B * s.T * C, rows = s.B * s.H * s.T;
  Storage qkv{gpu, bytes(qkv_elements, 2)};
  Storage out{gpu, bytes(out_elements, 2)};
  Storage lse{gpu, bytes(rows, 4)};
  Storage dout{gpu, bytes(out_elements, 2)};
  Storage dqkv{gpu, bytes(qkv_elements, 2)};

  explicit DeviceProblem(SdpaShape shape) : s(shape) {}

  // Synchronous, so `src` may be a temporary.
  void upload(Storage& dst, const void* src) {
    copyBytes(stream, dst.data(), gpu, src, Device::cpu(), dst.bytes());
    stream.synchronize();
  }
  template <class T>
  std::vector<T> download(const Storage& src) {
    std::vector<T> host(src.bytes() / sizeof(T));
    copyBytes(stream, host.data(), Device::cpu(), src.data(), gpu, src.bytes());
    stream.synchronize();
    return host;
  }
  void forward() {
    cuda::sdpaForward(0, stream.handle(), s, scaleOf(s), qkv.data(), out.data(),
                      static_cast<float*>(lse.data()));
  }
  void backward() {
    cuda::sdpaBackward(0, stream.handle(), s, scaleOf(s), qkv.data(), out.data(), dout.data(),
                       static_cast<const float*>(lse.data()), dqkv.data());
  }
};

void matchesTheCpu(const SdpaShape& s) {
  ASSERT_EQ(cuda::sdpaUnsupportedReason(0, s), "");
  const int64_t C = s.H * s.hd;
  const std::vector<float> qkv = bf16Uniform(s.B * s.T * 3 * C, 1.5f, 11);
  const std::vector<float> dout = bf16Uniform(s.B * s.T * C, 1.0f, 12);

  // CPU reference in f32 on the bf16 values.
  Stream cpu;
  std::vector<float> out(s.B * s.T * C), lse(s.B * s.H * s.T), dqkv(qkv.size());
  attentionForwardBatched(cpu, out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.hd);
  // The backward of both sides starts from the same bf16 O and f32 lse.
  const std::vector<uint16_t> out_bf16 = toBf16(out);
  const std::vector<float> out_rounded = fromBf16(out_bf16);
  attentionBackwardBatched(cpu, dqkv.data(), dout.data(), qkv.data(), out_rounded.data(),
                           lse.data(), s.B, s.T, s.H, s.hd);

  DeviceProblem gpu(s);
  gpu.upload(gpu.qkv, toBf16(qkv).data());
  gpu.forward();
  const std::vector<float> got_out = fromBf16(gpu.download<uint16_t>(gpu.out));
  const std::vector<float> got_lse = gpu.download<float>(gpu.lse);
  expectClose(got_out, out, s.B * s.T, C, 0, C, 2e-2, 2e-2, 1e-2, "out");
  for (std::size_t i = 0; i < lse.size(); ++i)
    ASSERT_NEAR(got_lse[i], lse[i], 1e-3 * std::max(1.0f, std::fabs(lse[i]))) << "lse " << i;

  gpu.upload(gpu.out, out_bf16.data());
  gpu.upload(gpu.lse, lse.data());
  gpu.upload(gpu.dout, toBf16(dout).data());
  gpu.backward();
  const std::vector<float> got = fromBf16(gpu.download<uint16_t>(gpu.dqkv));
  expectClose(got, dqkv, s.B * s.T, 3 * C, 0, C, 2e-2, 2e-2, 1e-2, "dq");
  expectClose(got, dqkv, s.B * s.T, 3 * C, C, C, 2e-2, 2e-2, 1e-2, "dk");
  expectClose(got, dqkv, s.B * s.T, 3 * C, 2 * C, C, 2e-2, 2e-2, 1e-2, "dv");
}

TEST_F(CudaSdpa, SmallShapeMatchesTheCpu) { matchesTheCpu({2, 64, 4, 32}); }

TEST_F(CudaSdpa, Gpt2ShapeMatchesTheCpu) { matchesTheCpu({1, 1024, 12, 64}); }

TEST_F(CudaSdpa, RepeatsBitForBit) {
  const SdpaShape s{1, 1024, 12, 64};
  ASSERT_EQ(cuda::sdpaUnsupportedReason(0, s), "");
  const int64_t C = s.H * s.hd;
  DeviceProblem gpu(s);
  gpu.upload(gpu.qkv, toBf16(bf16Uniform(s.B * s.T * 3 * C, 1.5f, 21)).data());
  gpu.upload(gpu.dout, toBf16(bf16Uniform(s.B * s.T * C, 1.0f, 22)).data());
  gpu.forward();
  const auto out1 = gpu.download<uint16_t>(gpu.out);
  const auto lse1 = gpu.download<uint32_t>(gpu.lse);
  gpu.backward();
  const auto dqkv1 = gpu.download<uint16_t>(gpu.dqkv);
  gpu.forward();
  EXPECT_EQ(differing(gpu.download<uint16_t>(gpu.out), out1), 0) << "forward out elements differ";
  EXPECT_EQ(differing(gpu.download<uint32_t>(gpu.lse), lse1), 0) << "forward lse elements differ";
  gpu.backward();
  EXPECT_EQ(differing(gpu.download<uint16_t>(gpu.dqkv), dqkv1), 0)
      << "backward dqkv elements differ between two runs";
}

}  // namespace
}  // namespace lowband::runtime
