#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "runtime/allocator.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/kernel_bodies.h"
#include "runtime/kernels.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace lowband::runtime {
namespace {

std::vector<float> randomVector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Row-major reference: C = alpha op(A) op(B) + beta C.
void naiveGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p) {
        double av = ta ? a[p * lda + i] : a[i * lda + p];
        double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        sum += av * bv;
      }
      c[i * ldc + j] = static_cast<float>(alpha * sum + beta * c[i * ldc + j]);
    }
}

struct GemmCase {
  bool ta, tb;
  int64_t m, n, k;
};

class GemmTest : public ::testing::TestWithParam<GemmCase> {};

TEST_P(GemmTest, MatchesNaiveLoop) {
  const GemmCase p = GetParam();
  const int64_t a_rows = p.ta ? p.k : p.m, a_cols = p.ta ? p.m : p.k;
  const int64_t b_rows = p.tb ? p.n : p.k, b_cols = p.tb ? p.k : p.n;
  Storage sa(Device::cpu(), a_rows * a_cols * 4), sb(Device::cpu(), b_rows * b_cols * 4),
      sc(Device::cpu(), p.m * p.n * 4);
  Tensor a(sa, DType::F32, {a_rows, a_cols}), b(sb, DType::F32, {b_rows, b_cols}),
      c(sc, DType::F32, {p.m, p.n});
  auto va = randomVector(a.numel(), 1), vb = randomVector(b.numel(), 2),
       vc = randomVector(c.numel(), 3);
  std::copy(va.begin(), va.end(), a.data<float>());
  std::copy(vb.begin(), vb.end(), b.data<float>());
  std::copy(vc.begin(), vc.end(), c.data<float>());
  std::vector<float> expected = vc;
  const float alpha = 0.75f, beta = -0.5f;
  naiveGemm(p.ta, p.tb, p.m, p.n, p.k, alpha, va.data(), a_cols, vb.data(), b_cols, beta,
            expected.data(), p.n);
  Stream s;
  gemm(s, p.ta ? Transpose::Yes : Transpose::No, p.tb ? Transpose::Yes : Transpose::No, alpha, a, b,
       beta, c);
  for (int64_t i = 0; i < c.numel(); ++i)
    ASSERT_NEAR(c.data<float>()[i], expected[i], 1e-4f * (1 + p.k)) << "element " << i;
}

std::vector<GemmCase> gemmCases() {
  std::vector<GemmCase> cases;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                             {7, 5, 3},
                             {33, 17, 65},
                             {128, 96, 257},
                             {5, 129, 1}})
        cases.push_back({ta, tb, m, n, k});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, GemmTest, ::testing::ValuesIn(gemmCases()),
                         [](const auto& info) {
                           const GemmCase& p = info.param;
                           return std::string(p.ta ? "T" : "N") + (p.tb ? "T" : "N") + "_" +
                                  std::to_string(p.m) + "x" + std::to_string(p.n) + "x" +
                                  std::to_string(p.k);
                         });

TEST(Gemm, LeadingDimensionsOnSubMatrices) {
  // C[2x2] = A[2x3] B[3x2], with A and B embedded in wider row-major buffers.
  std::vector<float> a = {1, 2, 3, 99, 4, 5, 6, 99};      // lda 4
  std::vector<float> b = {1, 0, 99, 0, 1, 99, 1, 1, 99};  // ldb 3
  std::vector<float> c(4, 0);
  Stream s;
  gemm(s, Transpose::No, Transpose::No, 2, 2, 3, 1.0f, a.data(), 4, b.data(), 3, 0.0f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{4, 5, 10, 11}));
}

TEST(Gemm, ShapeMismatchIsAnError) {
  Storage st(Device::cpu(), 64 * 4);
  Tensor a(st, DType::F32, {2, 3}), b(st, DType::F32, {4, 2}), c(st, DType::F32, {2, 2});
  Stream s;
  EXPECT_THROW(gemm(s, Transpose::No, Transpose::No, 1, a, b, 0, c), ShapeError);
}

TEST(Kernels, ElementwiseOpsOnCpu) {
  const int64_t n = 100'003;  // above the OpenMP threshold, odd
  Storage sx(Device::cpu(), n * 4), sy(Device::cpu(), n * 4), so(Device::cpu(), n * 4);
  Tensor x(sx, DType::F32, {n}), y(sy, DType::F32, {n}), out(so, DType::F32, {n});
  Stream s;
  fill(s, x, 2.0f);
  for (int64_t i = 0; i < n; ++i) y.data<float>()[i] = static_cast<float>(i);
  axpy(s, 0.5f, y, x);  // x = 2 + i/2
  EXPECT_FLOAT_EQ(x.data<float>()[10], 7.0f);
  scale(s, x, 2.0f);  // x = 4 + i
  EXPECT_FLOAT_EQ(x.data<float>()[n - 1], 4.0f + (n - 1));
  lerp(s, x, y, 0.25f);  // x = 4 + i + 0.25 (i - 4 - i) = 3 + i
  EXPECT_FLOAT_EQ(x.data<float>()[123], 126.0f);
  add(s, x, y, out);
  EXPECT_FLOAT_EQ(out.data<float>()[5], 13.0f);
}

TEST(Kernels, BodiesAreTheSameArithmeticOnEveryLauncher) {
  // The functor the CUDA launcher runs, called directly, equals the op's CPU result.
  std::vector<float> x = {1, 2, 3}, y = {10, 20, 30};
  std::vector<float> via_body = x;
  bodies::Lerp body{via_body.data(), y.data(), 0.3f};
  for (int64_t i = 0; i < 3; ++i) body(i);
  Storage sx(Device::cpu(), 12), sy(Device::cpu(), 12);
  Tensor tx(sx, DType::F32, {3}), ty(sy, DType::F32, {3});
  std::copy(x.begin(), x.end(), tx.data<float>());
  std::copy(y.begin(), y.end(), ty.data<float>());
  lerp(Stream(), tx, ty, 0.3f);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(tx.data<float>()[i], via_body[i]);
}

TEST(Kernels, MismatchedTensorsAreRefused) {
  Storage st(Device::cpu(), 64);
  Tensor a(st, DType::F32, {4}), b(st, DType::F32, {3}), i(st, DType::I32, {4});
  Stream s;
  EXPECT_THROW(axpy(s, 1, a, b), ShapeError);
  EXPECT_THROW(fill(s, i, 0), ShapeError);
}

TEST(Tensor, ViewsAreRangesOfOneStorage) {
  Storage st(Device::cpu(), 10 * 4);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(st.data()) % Storage::kAlignment, 0u);
  Tensor flat(st, DType::F32, {10});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(flat.data<float>()[i], 0.0f);  // zero-filled
  Tensor mid = flat.range(3, 4);
  EXPECT_EQ(mid.offset(), 3);
  fill(Stream(), mid, 1.0f);
  EXPECT_EQ(flat.data<float>()[2], 0.0f);
  EXPECT_EQ(flat.data<float>()[3], 1.0f);
  EXPECT_EQ(flat.data<float>()[6], 1.0f);
  EXPECT_EQ(flat.data<float>()[7], 0.0f);
  Tensor m = mid.reshape({2, 2});
  EXPECT_EQ(m.shape(), (Shape{2, 2}));
  EXPECT_THROW(flat.range(8, 3), ShapeError);
  EXPECT_THROW(mid.reshape({3, 2}), ShapeError);
  EXPECT_THROW(Tensor(st, DType::F32, {11}), ShapeError);
  EXPECT_THROW(flat.data<int32_t>(), ShapeError);
  EXPECT_EQ(Shape({2, 3}).str(), "[2, 3]");
}

// Hands out host memory and counts calls; can be told to fail like a full GPU.
class CountingRaw : public RawAllocator {
 public:
  int allocations = 0, releases = 0;
  std::size_t limit = SIZE_MAX, in_use = 0;
  void* allocate(std::size_t bytes) override {
    if (in_use + bytes > limit) return nullptr;
    ++allocations;
    in_use += bytes;
    sizes_[ptr_base_] = bytes;
    return reinterpret_cast<void*>(ptr_base_++ * 4096 + 4096);
  }
  void release(void* ptr) override {
    ++releases;
    in_use -= sizes_.at((reinterpret_cast<uintptr_t>(ptr) - 4096) / 4096);
  }
  std::string name() const override { return "test"; }

 private:
  uintptr_t ptr_base_ = 0;
  std::map<uintptr_t, std::size_t> sizes_;
};

TEST(CachingAllocator, ReusesFreedBlocksPerStream) {
  auto raw = std::make_unique<CountingRaw>();
  CountingRaw* counts = raw.get();
  CachingAllocator alloc(std::move(raw));
  int s1 = 0, s2 = 0;  // stand-ins for two stream handles
  void* a = alloc.allocate(1000, &s1);
  alloc.release(a);
  void* b = alloc.allocate(900, &s1);  // rounds to the same 1024-byte block
  EXPECT_EQ(a, b);
  EXPECT_EQ(counts->allocations, 1);
  alloc.release(b);
  void* c = alloc.allocate(1000, &s2);  // other stream: no reuse
  EXPECT_NE(c, a);
  EXPECT_EQ(counts->allocations, 2);
  void* d = alloc.allocate(400, &s1);  // 512 bytes: the cached 1024 block is within 2x
  EXPECT_EQ(d, a);
  void* big = alloc.allocate(4096, &s2);
  alloc.release(big);
  void* small = alloc.allocate(1000, &s2);  // a 4096 block is > 2x of 1024: not handed out
  EXPECT_NE(small, big);
  EXPECT_EQ(counts->allocations, 4);
  AllocatorStats st = alloc.stats();
  EXPECT_EQ(st.cache_hits, 2u);
  EXPECT_EQ(st.in_use_bytes, 3 * 1024u);
  EXPECT_EQ(st.cached_bytes, 4096u);
  EXPECT_EQ(st.peak_in_use_bytes, 6 * 1024u);
  alloc.emptyCache();
  EXPECT_EQ(counts->releases, 1);
  EXPECT_EQ(alloc.stats().cached_bytes, 0u);
  EXPECT_THROW(alloc.release(reinterpret_cast<void*>(0x1)), DeviceError);
}

TEST(CachingAllocator, OutOfMemoryFreesTheCacheAndRetries) {
  auto raw = std::make_unique<CountingRaw>();
  raw->limit = 4096;
  CachingAllocator alloc(std::move(raw));
  void* a = alloc.allocate(3000);
  alloc.release(a);                // cached, still counted by the raw allocator
  void* b = alloc.allocate(4000);  // does not fit beside the cached block: cache is dropped
  EXPECT_NE(b, nullptr);
  try {
    alloc.allocate(10'000);
    FAIL() << "expected OutOfMemoryError";
  } catch (const OutOfMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot allocate"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos);
  }
}

TEST(Device, AutoFallsBackToCpuAndSaysWhy) {
  CudaProbe no_driver{0, 35, "cudaGetDeviceCount returned 35, CUDA driver version is insufficient"};
  DeviceSelection sel = selectDevice(DeviceMode::Auto, no_driver, 0);
  EXPECT_EQ(sel.device, Device::cpu());
  EXPECT_NE(sel.reason.find("returned 35"), std::string::npos) << sel.reason;
  CudaProbe no_device{0, 100, "cudaGetDeviceCount returned 100, no CUDA-capable device"};
  EXPECT_EQ(selectDevice(DeviceMode::Auto, no_device, 0).device, Device::cpu());
  try {
    selectDevice(DeviceMode::Cuda, no_device, 0);
    FAIL();
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("returned 100"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
  EXPECT_EQ(selectDevice(DeviceMode::Cpu, no_device, 0).device, Device::cpu());
}

TEST(Device, AutoTakesAGpuByLocalRank) {
  CudaProbe two{2, 0, "2 device(s)"};
  EXPECT_EQ(selectDevice(DeviceMode::Auto, two, 0).device, Device::cuda(0));
  EXPECT_EQ(selectDevice(DeviceMode::Auto, two, 3).device, Device::cuda(1));
  EXPECT_EQ(selectDevice(DeviceMode::Cuda, two, 2).device, Device::cuda(0));
}

TEST(Device, ThisMachineIsProbedConsistently) {
  const CudaProbe& probe = probeCuda();
  DeviceSelection sel = selectDevice(DeviceMode::Auto);
  EXPECT_EQ(sel.device.isCuda(), probe.count > 0) << sel.reason;
  if (probe.count == 0) {
    EXPECT_THROW(selectDevice(DeviceMode::Cuda), DeviceError);
  }
}

TEST(Stream, CpuEventsMeasureHostTime) {
  Stream s;
  Event start, end;
  EXPECT_FALSE(start.isCompleted());
  start.record(s);
  std::vector<float> v = randomVector(1 << 16, 4);
  volatile float sink = 0;
  for (float x : v) sink = sink + x;
  end.record(s);
  EXPECT_TRUE(end.isCompleted());
  EXPECT_GE(start.elapsedMsTo(end), 0.0f);
  s.waitFor(Stream());  // CPU streams are already ordered: no-op, no error
  Event never;
  EXPECT_THROW(never.elapsedMsTo(end), DeviceError);
}

TEST(Errors, CarrySourceLocationAndLibrary) {
  try {
    LB_THROW(DeviceError, "boom");
  } catch (const Error& e) {
    EXPECT_EQ(e.library(), "device");
    EXPECT_EQ(e.file(), "tests/test_runtime.cpp");
    EXPECT_GT(e.line(), 0);
    EXPECT_NE(std::string(e.what()).find("tests/test_runtime.cpp:"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("boom"), std::string::npos);
  }
}

}  // namespace
}  // namespace lowband::runtime
