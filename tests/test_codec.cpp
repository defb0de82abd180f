// Codec round trips against the bounds stated in runtime/codec.h, on the kinds of input that
// break quantizers: random, constant, zero, huge, tiny, subnormal and mixed-scale values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "runtime/codec.h"

namespace lowband::runtime {
namespace {

std::vector<std::pair<const char*, std::vector<float>>> inputs(int64_t n) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0, 1);
  std::vector<std::pair<const char*, std::vector<float>>> v;
  auto make = [&](const char* name, auto f) {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = f(i);
    v.emplace_back(name, x);
  };
  make("random", [&](int64_t) { return normal(rng); });
  make("constant", [&](int64_t) { return 0.3f; });
  make("zero", [&](int64_t) { return 0.0f; });
  make("huge", [&](int64_t) { return 1e30f * normal(rng); });
  make("tiny", [&](int64_t) { return 1e-30f * normal(rng); });
  make("subnormal",
       [&](int64_t) { return std::numeric_limits<float>::denorm_min() * 1000 * normal(rng); });
  make("mixed",
       [&](int64_t i) { return normal(rng) * std::pow(10.0f, static_cast<float>(i % 13) - 6); });
  return v;
}

// The stated bound for element i of x given its block's absmax a.
double bound(Codec c, float x, float a) {
  const double ax = std::fabs(x);
  switch (c) {
    case Codec::None:
      return 0;
    case Codec::Bf16:
      return ax * std::ldexp(1.0, -8) + std::ldexp(1.0, -134);
    case Codec::Fp8:
      return ax / 16 + a * std::ldexp(1.0, -18);
    case Codec::Int8:
      return a / 254.0;
    case Codec::Int4:
      return a / 14.0;
    case Codec::Fp4:
      return ax / 3 + a / 128.0;
    case Codec::Topk:
      return ax;
  }
  return 0;
}

class CodecRoundTrip : public ::testing::TestWithParam<Codec> {};

TEST_P(CodecRoundTrip, ErrorWithinTheStatedBound) {
  const Codec codec = GetParam();
  Stream s;
  for (int64_t n : {int64_t{1}, int64_t{63}, int64_t{1000}, int64_t{4096}}) {
    for (auto& [name, x] : inputs(n)) {
      CodecSpec spec{codec, 64, 0.1};
      std::vector<uint8_t> wire(encodedBytes(spec, n));
      std::vector<float> y(n);
      encode(s, spec, x.data(), n, wire.data());
      ASSERT_NO_THROW(checkHeader(wire.data(), wire.size(), spec, n));
      decode(s, spec, wire.data(), n, y.data());
      for (int64_t i = 0; i < n; ++i) {
        float a = 0;
        for (int64_t j = i / 64 * 64; j < std::min(n, i / 64 * 64 + 64); ++j)
          a = std::max(a, std::fabs(x[j]));
        // The f32 rounding of the scaling: a few ulps, relative and absolute.
        const double slack = 4 * std::fabs(x[i]) * std::numeric_limits<float>::epsilon() +
                             4 * static_cast<double>(std::numeric_limits<float>::denorm_min());
        ASSERT_LE(std::fabs(static_cast<double>(y[i]) - x[i]), bound(codec, x[i], a) + slack)
            << codecName(codec) << " " << name << " n " << n << " i " << i << ": " << x[i] << " -> "
            << y[i];
        ASSERT_TRUE(std::isfinite(y[i]));
      }
      // Accumulating decode adds the same values.
      std::vector<float> acc(n, 1.0f);
      decode(s, spec, wire.data(), n, acc.data(), true);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(acc[i], 1.0f + y[i]) << codecName(codec) << " " << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecRoundTrip,
                         ::testing::Values(Codec::None, Codec::Bf16, Codec::Fp8, Codec::Int8,
                                           Codec::Int4, Codec::Fp4, Codec::Topk),
                         [](const auto& info) { return std::string(codecName(info.param)); });

TEST(Codec, SizesFollowTheWireFormat) {
  const int64_t n = 1000;
  EXPECT_EQ(encodedBytes({Codec::None}, n), 16u + 4000u);
  EXPECT_EQ(encodedBytes({Codec::Bf16}, n), 16u + 2000u);
  EXPECT_EQ(encodedBytes({Codec::Int8, 64}, n), 16u + 16 * 4 + 1000u);
  EXPECT_EQ(encodedBytes({Codec::Fp4, 64}, n), 16u + 16 * 4 + 500u);
  EXPECT_EQ(encodedBytes({Codec::Topk, 64, 0.01}, n), 16u + 4 + 10 * 8u);
  // fp4 moves about 1/7 of f32's bytes at block 64.
  EXPECT_LT(static_cast<double>(encodedBytes({Codec::Fp4, 64}, 1 << 20)) /
                static_cast<double>(encodedBytes({Codec::None}, 1 << 20)),
            0.16);
}

TEST(Codec, TopkKeepsTheLargestExactly) {
  std::vector<float> x = {0.1f, -5.0f, 0.2f, 3.0f, -0.05f, 1.0f, 0.0f, -2.0f, 0.3f, 0.01f};
  CodecSpec spec{Codec::Topk, 64, 0.3};  // k = 3
  std::vector<uint8_t> wire(encodedBytes(spec, 10));
  std::vector<float> y(10);
  Stream s;
  encode(s, spec, x.data(), 10, wire.data());
  decode(s, spec, wire.data(), 10, y.data());
  EXPECT_EQ(y, (std::vector<float>{0, -5.0f, 0, 3.0f, 0, 0, 0, -2.0f, 0, 0}));
}

TEST(Codec, BadEncodingsAndSpecsAreRefused) {
  Stream s;
  std::vector<float> x(100, 1.0f);
  CodecSpec spec{Codec::Int8, 64};
  std::vector<uint8_t> wire(encodedBytes(spec, 100));
  encode(s, spec, x.data(), 100, wire.data());
  EXPECT_THROW(checkHeader(wire.data(), wire.size() - 1, spec, 100), CodecError);
  EXPECT_THROW(checkHeader(wire.data(), wire.size(), spec, 99), CodecError);
  EXPECT_THROW(checkHeader(wire.data(), wire.size(), {Codec::Fp8, 64}, 100), CodecError);
  wire[0] ^= 1;
  EXPECT_THROW(checkHeader(wire.data(), wire.size(), spec, 100), CodecError);
  EXPECT_THROW(encode(s, {Codec::Fp4, 63}, x.data(), 100, wire.data()), CodecError);  // odd block
  EXPECT_THROW(encode(s, {Codec::Topk, 64, 0.0}, x.data(), 100, wire.data()), CodecError);
}

TEST(Codec, Fp8AndFp4CodesAreTheStandardOnes) {
  Stream s;
  // Powers of two up to the block max are exact in both.
  std::vector<float> x = {1.0f, 0.5f, 0.25f, -0.125f, 0.0f, -1.0f, 0.015625f, 0.0625f};
  for (Codec c : {Codec::Fp8, Codec::Fp4}) {
    CodecSpec spec{c, 8};
    std::vector<uint8_t> wire(encodedBytes(spec, 8));
    std::vector<float> y(8);
    encode(s, spec, x.data(), 8, wire.data());
    decode(s, spec, wire.data(), 8, y.data());
    EXPECT_EQ(y, x) << codecName(c);
  }
}

}  // namespace
}  // namespace lowband::runtime
