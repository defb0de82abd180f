// Gradient checks: every layer's backward against central differences of a double-precision
// reference forward written here with plain loops (which also checks the forward), and the
// whole GPT's backward against differences of its own forward.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "nn/gpt.h"
#include "runtime/nn_ops.h"

namespace lowband::nn {
namespace {

using runtime::Stream;
using Vec = std::vector<double>;

std::vector<float> randomFloats(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

Vec asDouble(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// d f / d x[i] by central differences in double precision.
Vec numericGrad(const std::function<double(const Vec&)>& f, Vec x, double eps = 1e-6) {
  Vec g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + eps;
    const double up = f(x);
    x[i] = keep - eps;
    const double down = f(x);
    x[i] = keep;
    g[i] = (up - down) / (2 * eps);
  }
  return g;
}

void expectClose(const std::vector<float>& got, const Vec& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << what << "[" << i << "]";
}

double dot(const Vec& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ---- double references ----

Vec refLayerNorm(const Vec& x, const Vec& w, const Vec& b, int64_t N, int64_t C) {
  Vec out(N * C);
  for (int64_t i = 0; i < N; ++i) {
    double m = 0, v = 0;
    for (int64_t c = 0; c < C; ++c) m += x[i * C + c];
    m /= C;
    for (int64_t c = 0; c < C; ++c) v += (x[i * C + c] - m) * (x[i * C + c] - m);
    v /= C;
    for (int64_t c = 0; c < C; ++c)
      out[i * C + c] = (x[i * C + c] - m) / std::sqrt(v + 1e-5) * w[c] + b[c];
  }
  return out;
}

Vec refAttention(const Vec& qkv, int64_t B, int64_t T, int64_t H, int64_t hd) {
  const int64_t C = H * hd;
  Vec out(B * T * C, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        Vec score(t + 1);
        double m = -1e300;
        for (int64_t s = 0; s <= t; ++s) {
          double d = 0;
          for (int64_t k = 0; k < hd; ++k)
            d += qkv[(b * T + t) * 3 * C + h * hd + k] * qkv[(b * T + s) * 3 * C + C + h * hd + k];
          score[s] = d / std::sqrt(static_cast<double>(hd));
          m = std::max(m, score[s]);
        }
        double z = 0;
        for (double& sc : score) z += (sc = std::exp(sc - m));
        for (int64_t s = 0; s <= t; ++s)
          for (int64_t k = 0; k < hd; ++k)
            out[(b * T + t) * C + h * hd + k] +=
                score[s] / z * qkv[(b * T + s) * 3 * C + 2 * C + h * hd + k];
      }
  return out;
}

double refGelu(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

double refCrossEntropy(const Vec& logits, const std::vector<int32_t>& t, int64_t N, int64_t V,
                       int64_t Vp) {
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    double m = -1e300, z = 0;
    for (int64_t v = 0; v < V; ++v) m = std::max(m, logits[i * Vp + v]);
    for (int64_t v = 0; v < V; ++v) z += std::exp(logits[i * Vp + v] - m);
    total += m + std::log(z) - logits[i * Vp + t[i]];
  }
  return total / N;
}

// ---- per-layer checks ----

TEST(Grad, LayerNorm) {
  const int64_t N = 7, C = 12;
  auto x = randomFloats(N * C, 1), w = randomFloats(C, 2), b = randomFloats(C, 3),
       r = randomFloats(N * C, 4);
  std::vector<float> out(N * C), mean(N), rstd(N), dx(N * C, 0), dw(C, 0), db(C, 0);
  Stream s;
  runtime::layerNormForward(s, out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(),
                            N, C);
  expectClose(out, refLayerNorm(asDouble(x), asDouble(w), asDouble(b), N, C), 1e-5, "forward");
  runtime::layerNormBackward(s, dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(),
                             mean.data(), rstd.data(), N, C);
  auto loss = [&](const Vec& xx, const Vec& ww, const Vec& bb) {
    return dot(refLayerNorm(xx, ww, bb, N, C), r);
  };
  expectClose(
      dx, numericGrad([&](const Vec& v) { return loss(v, asDouble(w), asDouble(b)); }, asDouble(x)),
      1e-4, "dx");
  expectClose(
      dw, numericGrad([&](const Vec& v) { return loss(asDouble(x), v, asDouble(b)); }, asDouble(w)),
      1e-4, "dw");
  expectClose(
      db, numericGrad([&](const Vec& v) { return loss(asDouble(x), asDouble(w), v); }, asDouble(b)),
      1e-4, "db");
}

TEST(Grad, CausalAttention) {
  // T = 70 spans more than two 32-key blocks of the online softmax.
  for (auto [B, T, H, hd] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t>{2, 5, 2, 4}, {1, 70, 1, 3}}) {
    const int64_t C = H * hd;
    auto qkv = randomFloats(B * T * 3 * C, 5), r = randomFloats(B * T * C, 6);
    std::vector<float> out(B * T * C), lse(B * H * T), dqkv(B * T * 3 * C);
    Stream s;
    runtime::attentionForward(s, out.data(), lse.data(), qkv.data(), B, T, H, hd);
    expectClose(out, refAttention(asDouble(qkv), B, T, H, hd), 1e-5, "forward");
    runtime::attentionBackward(s, dqkv.data(), r.data(), qkv.data(), out.data(), lse.data(), B, T,
                               H, hd);
    auto want = numericGrad([&](const Vec& v) { return dot(refAttention(v, B, T, H, hd), r); },
                            asDouble(qkv));
    expectClose(dqkv, want, 1e-4, "dqkv");

    // The device path (strided-batched GEMMs + row bodies), run here on the CPU, gives the
    // same results as the CPU's blocked BLAS path.
    std::vector<float> out2(out.size()), lse2(lse.size()), dqkv2(dqkv.size());
    runtime::attentionForwardBatched(s, out2.data(), lse2.data(), qkv.data(), B, T, H, hd);
    runtime::attentionBackwardBatched(s, dqkv2.data(), r.data(), qkv.data(), out2.data(),
                                      lse2.data(), B, T, H, hd);
    expectClose(out2, asDouble(out), 1e-5, "batched forward");
    expectClose(lse2, asDouble(lse), 1e-5, "batched lse");
    expectClose(dqkv2, asDouble(dqkv), 1e-5, "batched dqkv");
  }
}

TEST(Grad, GeluAndRelu) {
  const int64_t n = 41;
  auto x = randomFloats(n, 7, 4.0f), r = randomFloats(n, 8);
  std::vector<float> y(n), dx(n);
  Stream s;
  runtime::geluForward(s, y.data(), x.data(), n);
  runtime::geluBackward(s, dx.data(), x.data(), r.data(), n);
  Vec want_y(n), want_dx(n);
  for (int64_t i = 0; i < n; ++i) {
    want_y[i] = refGelu(x[i]);
    want_dx[i] = r[i] * (refGelu(x[i] + 1e-6) - refGelu(x[i] - 1e-6)) / 2e-6;
  }
  expectClose(y, want_y, 1e-6, "gelu");
  expectClose(dx, want_dx, 1e-5, "dgelu");
  runtime::reluBackward(s, dx.data(), x.data(), r.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(dx[i], x[i] > 0 ? r[i] : 0.0f);
}

TEST(Grad, CrossEntropyWithPaddedVocab) {
  const int64_t N = 6, V = 10, Vp = 16;
  auto logits = randomFloats(N * Vp, 9, 3.0f);
  std::vector<int32_t> t = {0, 9, 3, 3, 7, 1};
  std::vector<float> losses(N), lse(N);
  Stream s;
  runtime::crossEntropyForward(s, losses.data(), lse.data(), logits.data(), t.data(), N, V, Vp);
  double mean = 0;
  for (float l : losses) mean += l / N;
  EXPECT_NEAR(mean, refCrossEntropy(asDouble(logits), t, N, V, Vp), 1e-5);
  auto want =
      numericGrad([&](const Vec& v) { return refCrossEntropy(v, t, N, V, Vp); }, asDouble(logits));
  runtime::crossEntropyBackward(s, logits.data(), logits.data(), lse.data(), t.data(), N, V, Vp,
                                1.0f / N);
  expectClose(logits, want, 1e-5, "dlogits");  // padding columns: exactly 0 on both sides
}

TEST(Grad, EmbeddingWithRepeatedTokens) {
  const int64_t B = 2, T = 3, C = 5, V = 4;
  std::vector<int32_t> tokens = {1, 3, 1, 1, 0, 3};
  auto wte = randomFloats(V * C, 10), wpe = randomFloats(T * C, 11),
       r = randomFloats(B * T * C, 12);
  std::vector<float> out(B * T * C), dwte(V * C, 0), dwpe(T * C, 0);
  Stream s;
  runtime::embeddingForward(s, out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  EXPECT_FLOAT_EQ(out[4 * C + 2], wte[0 * C + 2] + wpe[1 * C + 2]);  // row b=1, t=1: token 0
  runtime::TokenRows rows;
  rows.build(s, tokens.data(), B * T);
  EXPECT_EQ(rows.unique(), 3);
  runtime::embeddingBackward(s, dwte.data(), dwpe.data(), r.data(), rows, B, T, C);
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_FLOAT_EQ(dwte[1 * C + c], r[0 * C + c] + r[2 * C + c] + r[3 * C + c]);
    EXPECT_FLOAT_EQ(dwte[2 * C + c], 0.0f);
    EXPECT_FLOAT_EQ(dwpe[2 * C + c], r[2 * C + c] + r[5 * C + c]);
  }
}

TEST(Grad, Linear) {
  const int64_t N = 130, C = 7, OC = 5;  // N spans three reduction chunks
  auto x = randomFloats(N * C, 13), w = randomFloats(OC * C, 14), b = randomFloats(OC, 15),
       r = randomFloats(N * OC, 16);
  std::vector<float> y(N * OC), dx(N * C, 1.0f), dw(OC * C, 0), db(OC, 0);
  Stream s;
  runtime::linearForward(s, y.data(), x.data(), w.data(), b.data(), N, C, OC);
  auto ref = [&](const Vec& xx, const Vec& ww, const Vec& bb) {
    double l = 0;
    for (int64_t i = 0; i < N; ++i)
      for (int64_t o = 0; o < OC; ++o) {
        double v = bb[o];
        for (int64_t c = 0; c < C; ++c) v += xx[i * C + c] * ww[o * C + c];
        l += v * r[i * OC + o];
      }
    return l;
  };
  runtime::linearBackward(s, dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), N, C,
                          OC, true);
  auto want_dx =
      numericGrad([&](const Vec& v) { return ref(v, asDouble(w), asDouble(b)); }, asDouble(x));
  for (double& v : want_dx) v += 1.0;  // accumulate_dinp adds to what was there
  expectClose(dx, want_dx, 1e-5, "dx");
  expectClose(
      dw, numericGrad([&](const Vec& v) { return ref(asDouble(x), v, asDouble(b)); }, asDouble(w)),
      1e-5, "dw");
  expectClose(
      db, numericGrad([&](const Vec& v) { return ref(asDouble(x), asDouble(w), v); }, asDouble(b)),
      1e-5, "db");
}

// ---- whole model ----

TEST(Grad, GptBackwardMatchesDifferencesOfItsForward) {
  GptShape shape{2, 16, 2, 8, 11};
  Gpt gpt(shape, runtime::Device::cpu());
  Stream s;
  gpt.params().initialize(7, s);
  // Larger weights than GPT-2's init so every path carries signal.
  float* params = gpt.params().params().data<float>();
  auto noise = randomFloats(gpt.params().size(), 17, 0.3f);
  for (const ParamInfo& p : gpt.params().infos())
    for (int64_t i = 0; i < p.numel; ++i) params[p.offset + i] += noise[p.offset + i];
  const int64_t B = 2, T = 6;
  std::vector<int32_t> tokens = {1, 5, 9, 2, 2, 10, 0, 3, 3, 7, 4, 8};
  std::vector<int32_t> targets = {5, 9, 2, 2, 10, 0, 3, 3, 7, 4, 8, 1};
  Batch batch{tokens.data(), nullptr, targets.data(), B, T};
  gpt.forward(s, batch);
  gpt.backward(s);
  const float* grads = gpt.params().grads().data<float>();
  int checked = 0;
  for (const ParamInfo& p : gpt.params().infos()) {
    for (int64_t i = 0; i < p.numel; i += std::max<int64_t>(1, p.numel / 5)) {
      const int64_t at = p.offset + i;
      if (p.name == "wte" && i >= shape.vocab * shape.d_model) continue;
      const float keep = params[at];
      const float eps = 1e-2f;
      params[at] = keep + eps;
      const double up = gpt.forward(s, batch);
      params[at] = keep - eps;
      const double down = gpt.forward(s, batch);
      params[at] = keep;
      const double numeric = (up - down) / (2.0 * eps);
      EXPECT_NEAR(grads[at], numeric, 2e-3 + 2e-2 * std::fabs(numeric))
          << p.name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

}  // namespace
}  // namespace lowband::nn
