// CUDA backend: status checks work without a GPU; device tests skip themselves without one.
// The kernels of runtime/cuda/nn_kernels.cu are checked against the CPU's bodies at sizes that
// need many blocks and the grid-stride loops (more than 65535 blocks' worth of items); whole
// GPT steps in each precision against the CPU (fp32: f32 tolerance; tf32: TF32's 10-bit
// mantissa; bf16: against the CPU's bf16 reference), with an AdamW step whose learning rate is
// not tiny, and the same bits on every run.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <random>
#include <vector>

#include "nn/gpt.h"
#include "nn/optimizer.h"
#include "runtime/cuda/backend.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/sdpa.h"
#include "runtime/kernels.h"
#include "runtime/nn_ops.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"
#include "tests/gpt_step.h"

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

// ---- helpers for the kernel tests ----

template <class T>
struct OnDevice {
  Storage storage;
  OnDevice(const Stream& s, const std::vector<T>& host)
      : storage(s.device(), std::max<std::size_t>(1, host.size()) * sizeof(T), s.handle()) {
    copyBytes(s, storage.data(), s.device(), host.data(), Device::cpu(), host.size() * sizeof(T));
  }
  T* get() const { return static_cast<T*>(storage.data()); }
};

template <class T>
std::vector<T> toHost(const Stream& s, const T* device_ptr, std::size_t n) {
  std::vector<T> host(n);
  copyBytes(s, host.data(), Device::cpu(), device_ptr, s.device(), n * sizeof(T));
  s.synchronize();
  return host;
}

std::vector<float> uniform(std::size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void expectNear(const std::vector<float>& got, const std::vector<float>& want, double atol,
                double rtol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], atol + rtol * std::fabs(want[i])) << what << "[" << i << "]";
}

// ---- the kernels of nn_kernels.cu against the CPU ----

TEST_F(CudaDevice, LayerNormMatchesTheCpuOnOverAWarpGridOfRows) {
  // 600000 rows: 75000 blocks of 8 warps, beyond one grid's 65535; C = 40 leaves partial warps.
  const int64_t N = 600'000, C = 40;
  Stream g(Device::cuda(0)), c;
  const auto x = uniform(N * C, -2, 2, 1), w = uniform(C, 0.5f, 1.5f, 2), b = uniform(C, -1, 1, 3),
             dout = uniform(N * C, -1, 1, 4);
  std::vector<float> out(N * C), mean(N), rstd(N), dinp(N * C, 0.1f), dw(C, 0.2f), db(C, 0.3f);
  OnDevice<float> gx(g, x), gw(g, w), gb(g, b), gdout(g, dout), gout(g, out), gmean(g, mean),
      grstd(g, rstd), gdinp(g, dinp), gdw(g, dw), gdb(g, db);
  layerNormForward(c, out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
  layerNormBackward(c, dinp.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                    mean.data(), rstd.data(), N, C);
  layerNormForward(g, gout.get(), gmean.get(), grstd.get(), gx.get(), gw.get(), gb.get(), N, C);
  layerNormBackward(g, gdinp.get(), gdw.get(), gdb.get(), gdout.get(), gx.get(), gw.get(),
                    gmean.get(), grstd.get(), N, C);
  expectNear(toHost(g, gout.get(), N * C), out, 1e-5, 1e-5, "out");
  expectNear(toHost(g, grstd.get(), N), rstd, 1e-6, 1e-5, "rstd");
  expectNear(toHost(g, gdinp.get(), N * C), dinp, 1e-5, 1e-4, "dinp");
  // Sums over 600000 rows in another order: relative 1e-4 of the magnitude summed.
  expectNear(toHost(g, gdw.get(), C), dw, 0.5, 1e-4, "dw");
  expectNear(toHost(g, gdb.get(), C), db, 0.5, 1e-4, "db");
  // bf16 output: the same rounding on both sides.
  std::vector<Bf16> out16(N * C);
  Storage gout16(g.device(), N * C * sizeof(Bf16), g.handle());
  layerNormForward(c, out16.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
  layerNormForward(g, static_cast<Bf16*>(gout16.data()), gmean.get(), grstd.get(), gx.get(),
                   gw.get(), gb.get(), N, C);
  const auto back16 = toHost(g, static_cast<const Bf16*>(gout16.data()), N * C);
  // The same rounding of f32 values that differ in their last bits (sums in another order): at
  // most one bf16 step apart, or both within 1e-5 of zero (where a sign may flip).
  int64_t off = 0;
  for (int64_t i = 0; i < N * C; ++i) {
    const float gpu = toF32(back16[i]), cpu = toF32(out16[i]);
    off += std::fabs(gpu - cpu) > 1e-5f + 0x1p-7f * std::fabs(cpu);
  }
  EXPECT_EQ(off, 0);
}

TEST_F(CudaDevice, ColumnSumsMatchTheCpuOnTallAndWideMatrices) {
  Stream g(Device::cuda(0)), c;
  // Tall: 17M rows make 66407 row chunks, beyond one grid's 65535; wide: 50304 columns.
  for (auto [N, C] : {std::pair<int64_t, int64_t>{17'000'000, 3}, {1000, 50304}}) {
    const auto dout = uniform(N * C, -1, 1, 5), x = uniform(N * C, -1, 1, 6);
    const std::vector<float> w(C, 1.0f);
    std::vector<float> db(C, 0.5f), dw(C, 0.0f), dinp(N * C, 0.0f), mean(N, 0.1f), rstd(N, 2.0f);
    OnDevice<float> gdout(g, dout), gx(g, x), gw(g, w), gdb(g, db), gdw(g, dw), gdinp(g, dinp),
        gmean(g, mean), grstd(g, rstd);
    std::vector<float> bias(C, 0.5f);
    OnDevice<float> gbias(g, bias);
    // Bias gradient through linearBackward's column sum (dinp and dW skipped: null and OC x C).
    linearBackward(c, static_cast<float*>(nullptr), dw.data(), bias.data(), dout.data(), x.data(),
                   w.data(), N, 1, C, false);
    linearBackward(g, static_cast<float*>(nullptr), gdw.get(), gbias.get(), gdout.get(), gx.get(),
                   gw.get(), N, 1, C, false);
    const double scale = std::sqrt(static_cast<double>(N)) * 1e-4;
    expectNear(toHost(g, gbias.get(), C), bias, scale, 1e-5, "bias grad");
    layerNormBackward(c, dinp.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                      mean.data(), rstd.data(), N, C);
    layerNormBackward(g, gdinp.get(), gdw.get(), gdb.get(), gdout.get(), gx.get(), gw.get(),
                      gmean.get(), grstd.get(), N, C);
    expectNear(toHost(g, gdb.get(), C), db, scale, 1e-5, "ln db");
  }
}

TEST_F(CudaDevice, CrossEntropyMatchesTheCpuOnManyAndWideRows) {
  Stream g(Device::cuda(0)), c;
  for (auto [N, V, Vp] :
       {std::tuple<int64_t, int64_t, int64_t>{70000, 100, 128}, {16, 50257, 50304}}) {
    const auto logits = uniform(N * Vp, -8, 8, 7);
    std::vector<int32_t> targets(N);
    for (int64_t i = 0; i < N; ++i) targets[i] = static_cast<int32_t>((i * 7919) % V);
    std::vector<float> losses(N), lse(N), dlogits(N * Vp);
    OnDevice<float> glogits(g, logits), glosses(g, losses), glse(g, lse), gd(g, dlogits);
    OnDevice<int32_t> gt(g, targets);
    crossEntropyForward(c, losses.data(), lse.data(), logits.data(), targets.data(), N, V, Vp);
    crossEntropyBackward(c, dlogits.data(), logits.data(), lse.data(), targets.data(), N, V, Vp,
                         0.25f);
    crossEntropyForward(g, glosses.get(), glse.get(), glogits.get(), gt.get(), N, V, Vp);
    crossEntropyBackward(g, gd.get(), glogits.get(), glse.get(), gt.get(), N, V, Vp, 0.25f);
    expectNear(toHost(g, glse.get(), N), lse, 1e-5, 1e-5, "lse");
    expectNear(toHost(g, glosses.get(), N), losses, 1e-4, 1e-5, "losses");
    expectNear(toHost(g, gd.get(), N * Vp), dlogits, 1e-7, 1e-4, "dlogits");
  }
}

TEST_F(CudaDevice, EmbeddingsMatchTheCpu) {
  // 70000 x 256 elements: over 65535 blocks of 256 threads.
  const int64_t B = 70, T = 1000, C = 256, V = 300;
  Stream g(Device::cuda(0)), c;
  std::vector<int32_t> tokens(B * T);
  for (int64_t i = 0; i < B * T; ++i) tokens[i] = static_cast<int32_t>((i * i) % V);
  const auto wte = uniform(V * C, -1, 1, 8), wpe = uniform(T * C, -1, 1, 9),
             dout = uniform(B * T * C, -1, 1, 10);
  std::vector<float> out(B * T * C), dwte(V * C, 0.0f), dwpe(T * C, 0.0f);
  OnDevice<float> gwte(g, wte), gwpe(g, wpe), gdout(g, dout), gout(g, out), gdwte(g, dwte),
      gdwpe(g, dwpe);
  OnDevice<int32_t> gtokens(g, tokens);
  embeddingForward(c, out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  embeddingForward(g, gout.get(), gtokens.get(), gwte.get(), gwpe.get(), B, T, C);
  EXPECT_EQ(toHost(g, gout.get(), B * T * C), out);  // one addition per element: exact
  TokenRows cpu_rows, gpu_rows;
  cpu_rows.build(c, tokens.data(), B * T);
  gpu_rows.build(g, tokens.data(), B * T);
  embeddingBackward(c, dwte.data(), dwpe.data(), dout.data(), cpu_rows, B, T, C);
  embeddingBackward(g, gdwte.get(), gdwpe.get(), gdout.get(), gpu_rows, B, T, C);
  EXPECT_EQ(toHost(g, gdwte.get(), V * C), dwte);  // the same additions in the same order
  EXPECT_EQ(toHost(g, gdwpe.get(), T * C), dwpe);
}

TEST_F(CudaDevice, AttentionMatchesTheCpuWithOverAGridOfSoftmaxRows) {
  Stream g(Device::cuda(0)), c;
  // H * T = 524800 softmax rows: 65600 blocks of 8 warps.
  for (auto [B, T, H, hd] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t>{2, 70, 3, 16}, {1, 64, 8200, 8}}) {
    const int64_t C = H * hd;
    const auto qkv = uniform(B * T * 3 * C, -1, 1, 11), dout = uniform(B * T * C, -1, 1, 12);
    std::vector<float> out(B * T * C), lse(B * H * T), dqkv(B * T * 3 * C);
    OnDevice<float> gqkv(g, qkv), gdout(g, dout), gout(g, out), glse(g, lse), gdqkv(g, dqkv);
    attentionForward(c, out.data(), lse.data(), qkv.data(), B, T, H, hd);
    attentionBackward(c, dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), B, T, H, hd);
    attentionForward(g, gout.get(), glse.get(), gqkv.get(), B, T, H, hd);
    attentionBackward(g, gdqkv.get(), gdout.get(), gqkv.get(), gout.get(), glse.get(), B, T, H, hd);
    expectNear(toHost(g, gout.get(), out.size()), out, 1e-5, 1e-4, "out");
    expectNear(toHost(g, glse.get(), lse.size()), lse, 1e-5, 1e-5, "lse");
    expectNear(toHost(g, gdqkv.get(), dqkv.size()), dqkv, 1e-5, 1e-3, "dqkv");
  }
}

TEST_F(CudaDevice, SumOfSquaresOverAGridOfChunks) {
  // 65540 chunks of 16384 values (over one grid), each 0.5: the sum is exact in double.
  const int64_t n = 65540LL * 16384;
  Stream g(Device::cuda(0));
  Storage x(g.device(), n * sizeof(float), g.handle());
  fill(g, Tensor(x, DType::F32, {n}), 0.5f);
  EXPECT_EQ(sumSquares(g, static_cast<float*>(x.data()), n), 0.25 * static_cast<double>(n));
  EXPECT_EQ(sumSquares(g, static_cast<float*>(x.data()) + 3, 1000), 250.0);
}

TEST_F(CudaDevice, WorkOnOneStreamIsOrderedBeforeAnotherThatWaits) {
  // A slow GEMM on stream a, then stream b copies its result after waitFor: b must see it all.
  const int64_t n = 4096;
  Stream a(Device::cuda(0)), b(Device::cuda(0));
  Storage x(a.device(), n * n * 4, a.handle()), y(a.device(), n * n * 4, a.handle()),
      z(a.device(), n * n * 4, a.handle()), copy(a.device(), n * n * 4, b.handle());
  Tensor tx(x, DType::F32, {n, n}), ty(y, DType::F32, {n, n}), tz(z, DType::F32, {n, n}),
      tcopy(copy, DType::F32, {n, n});
  fill(a, tx, 1.0f);
  fill(a, ty, 0.5f);
  fill(b, tcopy, -1.0f);
  b.synchronize();
  for (int rep = 0; rep < 4; ++rep) gemm(a, Transpose::No, Transpose::No, 1.0f, tx, ty, 0.0f, tz);
  b.waitFor(a);
  runtime::copy(b, tz, tcopy);
  const auto host = toHost(b, static_cast<const float*>(copy.data()), n * n);
  for (int64_t i = 0; i < n * n; i += 4099) ASSERT_EQ(host[i], 0.5f * n) << i;
}

// ---- whole steps ----

class CudaGptStep : public CudaDevice, public ::testing::WithParamInterface<Precision> {};

// Same init on both devices, one step: losses, every gradient tensor and the updated parameters
// agree with the CPU run of the same precision (fp32 and bf16; tf32 against the CPU's fp32), and
// a second GPU run gives the same bits. The sequence is 256 long (several softmax blocks).
TEST_P(CudaGptStep, MatchesTheCpuAndRepeatsBitForBit) {
  const Precision precision = GetParam();
  const nn::GptShape shape{2, 128, 4, 256, 1000};
  const int64_t B = 3, T = 256;
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<int32_t>((i * 7) % 1000);
    targets[i] = static_cast<int32_t>((i * 13 + 5) % 1000);
  }
  const nn::Batch batch{tokens.data(), nullptr, targets.data(), B, T};
  const test::GptStep cpu = test::gptStep(Device::cpu(), precision, shape, batch, 5);
  const test::GptStep gpu = test::gptStep(Device::cuda(0), precision, shape, batch, 5);
  const test::GptStep again = test::gptStep(Device::cuda(0), precision, shape, batch, 5);
  // cuDNN's attention backward repeats bit for bit only with its direct-dQ graph; the f32
  // dQ-accumulator graph (taken when the first does not build) may not.
  const bool repeatable = precision != Precision::Bf16 ||
                          cuda::sdpaBackwardDeterministic(
                              0, cuda::SdpaShape{B, T, shape.n_head, shape.d_model / shape.n_head});
  if (repeatable) {
    EXPECT_EQ(gpu.grads, again.grads);
    EXPECT_EQ(gpu.params, again.params);
  } else {
    std::cout << "note: cuDNN took the dQ-accumulator attention backward; bits not compared\n";
  }
  // Relative L2 error per gradient tensor: f32 sums in another order; TF32 rounds GEMM inputs
  // to 10 mantissa bits (2^-11 relative); bf16 sums in another order after the same roundings,
  // and cuDNN rounds P and dS to bf16 inside the fused attention (emulated on the CPU: worst
  // tensor 0.8%).
  const double grad_tol = precision == Precision::Fp32   ? 1e-4
                          : precision == Precision::Tf32 ? 1e-2
                                                         : 2e-2;
  const double loss_tol = precision == Precision::Fp32 ? 1e-5 : 2e-3;
  EXPECT_NEAR(gpu.loss, cpu.loss, loss_tol * cpu.loss);
  nn::Gpt layout(shape, Device::cpu());
  for (const nn::ParamInfo& p : layout.params().infos()) {
    const int64_t count = p.name == "wte" ? shape.vocab * shape.d_model : p.numel;
    EXPECT_LT(test::relativeError(gpu.grads, cpu.grads, p.offset, count), grad_tol) << p.name;
  }
  // AdamW with lr 1e-2 moves every parameter by about lr: the updates agree where the
  // gradients' signs do; compare the parameter change, not the parameters.
  Stream s;
  nn::Gpt fresh(shape, Device::cpu());
  fresh.params().initialize(5, s);
  const float* p0 = fresh.params().params().data<float>();
  std::vector<float> cpu_delta(cpu.params.size()), gpu_delta(cpu.params.size());
  for (std::size_t i = 0; i < cpu.params.size(); ++i) {
    cpu_delta[i] = cpu.params[i] - p0[i];
    gpu_delta[i] = gpu.params[i] - p0[i];
  }
  if (precision == Precision::Fp32) {
    EXPECT_LT(test::relativeError(gpu_delta, cpu_delta, 0, static_cast<int64_t>(cpu_delta.size())),
              1e-3);
  } else {
    // A first AdamW step moves a parameter by about lr in the gradient's sign: where a gradient
    // is near zero, TF32's or bf16's rounding may flip it (2 lr apart). Few may (measured in a
    // CPU emulation of cuDNN's bf16 roundings: 0.13%).
    int64_t flipped = 0;
    for (std::size_t i = 0; i < cpu_delta.size(); ++i)
      flipped += std::fabs(gpu_delta[i] - cpu_delta[i]) > 1e-2f;
    EXPECT_LT(static_cast<double>(flipped), 5e-3 * static_cast<double>(cpu_delta.size()));
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaGptStep,
                         ::testing::Values(Precision::Fp32, Precision::Tf32, Precision::Bf16),
                         [](const auto& info) { return std::string(precisionName(info.param)); });

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
