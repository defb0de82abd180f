// model.precision on the CPU: the bf16 rounding, GEMMs on bf16 operands, and the GPT's bf16
// path (the reference the GPU's bf16 step is checked against) against its fp32 path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "nn/gpt.h"
#include "nn/optimizer.h"
#include "runtime/bf16.h"
#include "runtime/kernels.h"
#include "runtime/nn_ops.h"
#include "tests/gpt_step.h"

namespace lowband {
namespace {

using runtime::Bf16;
using runtime::DType;
using runtime::GemmArgs;
using runtime::Precision;
using runtime::Stream;

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(Bf16, RoundsToNearestEvenAndKeepsSpecials) {
  EXPECT_EQ(runtime::bf16Bits(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(runtime::bf16Bits(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  EXPECT_EQ(runtime::bf16Bits(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(runtime::bf16Bits(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_EQ(runtime::bf16Bits(-2.5f), 0xc020);
  EXPECT_EQ(runtime::bf16Bits(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(runtime::bf16Bits(std::numeric_limits<float>::max()), 0x7f80);  // overflows to inf
  EXPECT_TRUE(std::isnan(runtime::roundBf16(std::numeric_limits<float>::quiet_NaN())));
  // A NaN whose payload sits only in the low half must stay a NaN, not become inf.
  float low_nan;
  const uint32_t u = 0x7f800001u;
  std::memcpy(&low_nan, &u, 4);
  EXPECT_TRUE(std::isnan(runtime::roundBf16(low_nan)));
  EXPECT_EQ(bitsOf(runtime::roundBf16(0.1f)) & 0xffffu, 0u);
}

std::vector<float> randomVector(std::size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

std::vector<Bf16> toBf16(const std::vector<float>& v) {
  std::vector<Bf16> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = runtime::fromF32<Bf16>(v[i]);
  return out;
}

std::vector<float> rounded(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = runtime::roundBf16(v[i]);
  return out;
}

// A bf16 GEMM on the CPU is the f32 GEMM of the rounded operands (bf16 products are exact in
// f32), plus bias, rounded once when the output is bf16: bit for bit, for every transpose.
TEST(Bf16, GemmIsTheF32GemmOfTheRoundedOperands) {
  const int64_t m = 37, n = 29, k = 70;
  for (auto [ta, tb] : {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
    const auto a = randomVector(m * k, 1), b = randomVector(k * n, 2), bias = randomVector(n, 3);
    const auto a16 = toBf16(a), b16 = toBf16(b), bias16 = toBf16(bias);
    const auto ar = rounded(a), br = rounded(b), biasr = rounded(bias);
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;
    std::vector<float> want(m * n), got32(m * n);
    std::vector<Bf16> got16(m * n);
    GemmArgs ref{ta,        tb,  m, n,    k,           1.0f, ar.data(), lda, 0,
                 br.data(), ldb, 0, 0.0f, want.data(), n,    0,         1};
    runtime::gemm(Stream(), ref);
    GemmArgs g = ref;
    g.a = a16.data();
    g.b = b16.data();
    g.ab_type = DType::BF16;
    g.c = got32.data();
    runtime::gemm(Stream(), g);
    for (int64_t i = 0; i < m * n; ++i) ASSERT_EQ(bitsOf(got32[i]), bitsOf(want[i])) << i;
    g.c = got16.data();
    g.c_type = DType::BF16;
    g.bias = bias16.data();
    runtime::gemm(Stream(), g);
    for (int64_t i = 0; i < m * n; ++i)
      ASSERT_EQ(got16[i].bits, runtime::bf16Bits(want[i] + biasr[i % n])) << i;
  }
}

TEST(Bf16, GemmRefusesAccumulatingIntoBf16) {
  std::vector<Bf16> a(4), b(4), c(4);
  GemmArgs g{false, false, 2, 2, 2, 1.0f, a.data(), 2, 0, b.data(), 2, 0, 1.0f, c.data(), 2, 0, 1};
  g.ab_type = g.c_type = DType::BF16;
  EXPECT_THROW(runtime::gemm(Stream(), g), runtime::ShapeError);
}

// The bf16 step computes the fp32 step's gradients up to bf16 rounding: every tensor's gradient
// within 1.5% (relative L2) of fp32's (measured: 0.3-0.8%), the loss within 0.1%; and it is
// deterministic.
TEST(Bf16, GptStepTracksTheFp32Step) {
  const nn::GptShape shape{2, 64, 4, 32, 100};
  std::vector<int32_t> tokens(2 * 32), targets(2 * 32);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<int32_t>((i * 7) % 100);
    targets[i] = static_cast<int32_t>((i * 13 + 5) % 100);
  }
  const nn::Batch batch{tokens.data(), nullptr, targets.data(), 2, 32};
  const runtime::Device cpu = runtime::Device::cpu();
  const test::GptStep f32 = test::gptStep(cpu, Precision::Fp32, shape, batch, 11);
  const test::GptStep b16 = test::gptStep(cpu, Precision::Bf16, shape, batch, 11);
  const test::GptStep again = test::gptStep(cpu, Precision::Bf16, shape, batch, 11);
  EXPECT_NEAR(b16.loss, f32.loss, 1e-3 * f32.loss);
  EXPECT_NE(b16.loss, f32.loss);  // the bf16 path really rounds
  EXPECT_EQ(bitsOf(b16.loss), bitsOf(again.loss));
  EXPECT_EQ(b16.grads, again.grads);
  EXPECT_EQ(b16.params, again.params);
  Stream s;
  nn::Gpt layout(shape, runtime::Device::cpu());
  for (const nn::ParamInfo& p : layout.params().infos()) {
    const double err = test::relativeError(b16.grads, f32.grads, p.offset,
                                           p.name == "wte" ? shape.vocab * shape.d_model : p.numel);
    EXPECT_LT(err, 0.015) << p.name;
  }
  // tf32 on the CPU computes fp32: the same bits.
  const test::GptStep tf32 = test::gptStep(cpu, Precision::Tf32, shape, batch, 11);
  EXPECT_EQ(tf32.grads, f32.grads);
}

// Training in bf16 follows fp32: after 120 AdamW steps on a repeating sequence the losses agree
// within 1% (both learn it: the loss falls by more than half).
TEST(Bf16, GptTrainsLikeFp32) {
  const nn::GptShape shape{2, 32, 2, 16, 50};
  const int64_t B = 4, T = 16;
  std::vector<int32_t> stream_tokens(B * (T + 1) * 4);
  for (std::size_t i = 0; i < stream_tokens.size(); ++i)
    stream_tokens[i] = static_cast<int32_t>((i * i + 3 * i) % 23);
  auto train = [&](Precision precision) {
    Stream s;
    nn::Gpt gpt(shape, runtime::Device::cpu(), nn::ParamStore::kAlign, precision);
    gpt.params().initialize(3, s);
    nn::OptimizerSettings o;
    o.lr = 3e-3f;
    o.warmup = 10;
    o.total_steps = 120;
    nn::Optimizer opt(gpt.params(), o);
    std::vector<int32_t> x(B * T), y(B * T);
    float first = 0, last = 0;
    for (int64_t step = 0; step < 120; ++step) {
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t) {
          const std::size_t at = ((step * B + b) * 5 + t) % (stream_tokens.size() - 1);
          x[b * T + t] = stream_tokens[at];
          y[b * T + t] = stream_tokens[at + 1];
        }
      runtime::fill(s, gpt.params().grads(), 0.0f);
      const float loss = gpt.forward(s, {x.data(), nullptr, y.data(), B, T});
      gpt.backward(s);
      opt.step(s, step);
      if (step == 0) first = loss;
      last = loss;
    }
    return std::pair{first, last};
  };
  const auto [f32_first, f32_last] = train(Precision::Fp32);
  const auto [b16_first, b16_last] = train(Precision::Bf16);
  EXPECT_LT(f32_last, 0.5f * f32_first);
  EXPECT_NEAR(b16_last, f32_last, 0.01f * f32_last);
}

}  // namespace
}  // namespace lowband
