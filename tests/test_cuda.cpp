// CUDA backend: status checks work without a GPU; device tests skip themselves without one.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/cuda/backend.h"
#include "runtime/cuda/check.h"
#include "runtime/kernels.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace lowband::runtime {
namespace {

TEST(CudaCheck, ThrowsTypedErrorsWithTheLibraryMessage) {
  try {
    LB_CUDA_CHECK(cudaErrorInsufficientDriver);
    FAIL();
  } catch (const CudaError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.file(), "tests/test_cuda.cpp");
    EXPECT_NE(what.find("cudaErrorInsufficientDriver = 35"), std::string::npos) << what;
    EXPECT_NE(what.find("HINT"), std::string::npos) << what;
  }
  try {
    LB_CUBLAS_CHECK(CUBLAS_STATUS_NOT_INITIALIZED);
    FAIL();
  } catch (const CublasError& e) {
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_NOT_INITIALIZED"), std::string::npos);
  }
  try {
    LB_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM);
    FAIL();
  } catch (const CudnnError& e) {
    EXPECT_NE(std::string(e.what()).find("BAD_PARAM"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(LB_CUDA_CHECK(cudaSuccess));
}

TEST(CudaCheck, VersionInfoWorksWithoutADriver) {
  EXPECT_NE(cuda::versionInfo().find("cuDNN 9."), std::string::npos);
}

class CudaDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    if (probeCuda().count == 0) GTEST_SKIP() << "no usable GPU: " << probeCuda().message;
  }
};

TEST_F(CudaDevice, ElementwiseKernelsMatchTheCpu) {
  const int64_t n = 1'000'003;
  Device gpu = Device::cuda(0);
  Stream s(gpu);
  Storage hx(Device::cpu(), n * 4), hy(Device::cpu(), n * 4), dx(gpu, n * 4, s.handle()),
      dy(gpu, n * 4, s.handle());
  Tensor thx(hx, DType::F32, {n}), thy(hy, DType::F32, {n}), tdx(dx, DType::F32, {n}),
      tdy(dy, DType::F32, {n});
  for (int64_t i = 0; i < n; ++i) {
    thx.data<float>()[i] = 0.001f * static_cast<float>(i % 977);
    thy.data<float>()[i] = 1.0f - 0.002f * static_cast<float>(i % 313);
  }
  copy(s, thx, tdx);
  copy(s, thy, tdy);
  axpy(s, 0.5f, tdx, tdy);
  lerp(s, tdx, tdy, 0.25f);
  Stream cpu;
  axpy(cpu, 0.5f, thx, thy);
  lerp(cpu, thx, thy, 0.25f);
  Storage back(Device::cpu(), n * 4);
  Tensor tback(back, DType::F32, {n});
  copy(s, tdx, tback);
  s.synchronize();
  for (int64_t i = 0; i < n; i += 997)
    ASSERT_FLOAT_EQ(tback.data<float>()[i], thx.data<float>()[i]);
}

TEST_F(CudaDevice, GemmMatchesOpenBlas) {
  Device gpu = Device::cuda(0);
  Stream s(gpu);
  for (auto [ta, tb] : {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
    const int64_t m = 67, n = 45, k = 129;
    Storage ha(Device::cpu(), m * k * 4), hb(Device::cpu(), k * n * 4),
        hc(Device::cpu(), m * n * 4), out(Device::cpu(), m * n * 4), da(gpu, m * k * 4),
        db(gpu, k * n * 4), dc(gpu, m * n * 4);
    Tensor a(ha, DType::F32, ta ? Shape{k, m} : Shape{m, k}),
        b(hb, DType::F32, tb ? Shape{n, k} : Shape{k, n}), c(hc, DType::F32, {m, n}),
        o(out, DType::F32, {m, n}), ga(da, DType::F32, a.shape()), gb(db, DType::F32, b.shape()),
        gc(dc, DType::F32, {m, n});
    for (int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] = std::sin(0.1f * i);
    for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = std::cos(0.07f * i);
    copy(s, a, ga);
    copy(s, b, gb);
    auto tra = ta ? Transpose::Yes : Transpose::No, trb = tb ? Transpose::Yes : Transpose::No;
    gemm(s, tra, trb, 1.0f, ga, gb, 0.0f, gc);
    copy(s, gc, o);
    s.synchronize();
    gemm(Stream(), tra, trb, 1.0f, a, b, 0.0f, c);
    for (int64_t i = 0; i < c.numel(); ++i)
      ASSERT_NEAR(o.data<float>()[i], c.data<float>()[i], 1e-3);
  }
}

TEST_F(CudaDevice, EventsOrderStreams) {
  Device gpu = Device::cuda(0);
  Stream a(gpu), b(gpu);
  Event start(gpu), end(gpu);
  start.record(a);
  end.record(a);
  b.waitFor(a);
  b.synchronize();
  EXPECT_TRUE(end.isCompleted());
  EXPECT_GE(start.elapsedMsTo(end), 0.0f);
}

}  // namespace
}  // namespace lowband::runtime
