// CUDA backend: status checks work without a GPU; device tests skip themselves without one.
#include <gtest/gtest.h>

#include <vector>

#include "nn/gpt.h"
#include "nn/optimizer.h"
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

TEST_F(CudaDevice, GptStepMatchesTheCpu) {
  // Same init on both devices, one forward/backward/AdamW step: losses, gradients and updated
  // parameters agree to float tolerance (the GPU takes the batched-GEMM attention path).
  nn::GptShape shape{2, 64, 4, 32, 100};
  std::vector<int32_t> tokens(2 * 32), targets(2 * 32);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<int32_t>((i * 7) % 100);
    targets[i] = static_cast<int32_t>((i * 13 + 5) % 100);
  }
  nn::Batch batch{tokens.data(), nullptr, targets.data(), 2, 32};
  auto run = [&](Device device, std::vector<float>& grads, std::vector<float>& params) {
    Stream s(device);
    nn::Gpt gpt(shape, device);
    gpt.params().initialize(5, s);
    nn::Optimizer opt(gpt.params(), {});
    const float loss = gpt.forward(s, batch);
    gpt.backward(s);
    const int64_t n = gpt.params().size();
    grads.resize(n);
    params.resize(n);
    copyBytes(s, grads.data(), Device::cpu(), gpt.params().grads().raw(), device, n * 4);
    opt.step(s, 0);
    copyBytes(s, params.data(), Device::cpu(), gpt.params().params().raw(), device, n * 4);
    s.synchronize();
    return loss;
  };
  std::vector<float> cpu_grads, cpu_params, gpu_grads, gpu_params;
  const float cpu_loss = run(Device::cpu(), cpu_grads, cpu_params);
  const float gpu_loss = run(Device::cuda(0), gpu_grads, gpu_params);
  EXPECT_NEAR(gpu_loss, cpu_loss, 1e-4);
  for (std::size_t i = 0; i < cpu_grads.size(); ++i) {
    ASSERT_NEAR(gpu_grads[i], cpu_grads[i], 1e-4 + 1e-3 * std::fabs(cpu_grads[i])) << i;
    ASSERT_NEAR(gpu_params[i], cpu_params[i], 1e-5 + 1e-4 * std::fabs(cpu_params[i])) << i;
  }
}

TEST_F(CudaDevice, BatchedGemmMatchesOpenBlas) {
  Device gpu = Device::cuda(0);
  Stream s(gpu);
  const int64_t m = 17, n = 9, k = 33, batch = 5;
  std::vector<float> a(batch * m * k), b(batch * k * n), c(batch * m * n), back(c.size());
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.3f * i);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::cos(0.2f * i);
  Storage da(gpu, a.size() * 4), db(gpu, b.size() * 4), dc(gpu, c.size() * 4);
  copyBytes(s, da.data(), gpu, a.data(), Device::cpu(), a.size() * 4);
  copyBytes(s, db.data(), gpu, b.data(), Device::cpu(), b.size() * 4);
  const GemmArgs cpu_args{false,    false, m,     n,    k,        1.0f, a.data(), k,    m * k,
                          b.data(), n,     k * n, 0.0f, c.data(), n,    m * n,    batch};
  GemmArgs gpu_args = cpu_args;
  gpu_args.a = static_cast<float*>(da.data());
  gpu_args.b = static_cast<float*>(db.data());
  gpu_args.c = static_cast<float*>(dc.data());
  gemm(s, gpu_args);
  copyBytes(s, back.data(), Device::cpu(), dc.data(), gpu, back.size() * 4);
  s.synchronize();
  gemm(Stream(), cpu_args);
  for (std::size_t i = 0; i < c.size(); ++i) ASSERT_NEAR(back[i], c[i], 1e-3) << i;
}

}  // namespace
}  // namespace lowband::runtime
