#include "runtime/nn_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/cpu/attention.h"
#include "runtime/error.h"
#include "runtime/kernel_bodies.h"
#include "runtime/kernels.h"
#include "runtime/nn_bodies.h"
#include "runtime/tensor.h"

namespace lowband::runtime {

namespace {

int64_t chunks(int64_t n, int64_t per_chunk) { return (n + per_chunk - 1) / per_chunk; }

// Scratch memory on the stream's device for one op (the device allocator caches it).
struct Scratch {
  Storage storage;
  Scratch(const Stream& s, std::size_t bytes) : storage(s.device(), bytes, s.handle()) {}
  template <class T>
  T* as() {
    return static_cast<T*>(storage.data());
  }
};

// out[c] += column sums of x[N, C].
void columnSum(const Stream& s, float* out, const float* x, int64_t N, int64_t C) {
  const int64_t K = chunks(N, bodies::kReduceChunkRows);
  Scratch partial(s, K * C * sizeof(float));
  launch(s, K, bodies::ColumnSumPartial{partial.as<float>(), x, N, C},
         bodies::kReduceChunkRows * C);
  launch(s, C, bodies::ColumnSumFinish{out, partial.as<float>(), K, C}, K);
}

}  // namespace

void embeddingForward(const Stream& s, float* out, const int32_t* tokens, const float* wte,
                      const float* wpe, int64_t B, int64_t T, int64_t C) {
  launch(s, B * T, bodies::EmbeddingForward{out, tokens, wte, wpe, T, C}, C);
}

void embeddingBackward(const Stream& s, float* dwte, float* dwpe, const float* dout,
                       const int32_t* tokens, int64_t B, int64_t T, int64_t C) {
  launch(s, C, bodies::EmbeddingBackwardTokens{dwte, dout, tokens, B * T, C}, B * T);
  launch(s, T * C, bodies::EmbeddingBackwardPositions{dwpe, dout, B, T, C}, B);
}

void layerNormForward(const Stream& s, float* out, float* mean, float* rstd, const float* inp,
                      const float* w, const float* b, int64_t N, int64_t C) {
  launch(s, N, bodies::LayerNormForward{out, mean, rstd, inp, w, b, C, 1e-5f}, 3 * C);
}

void layerNormBackward(const Stream& s, float* dinp, float* dw, float* db, const float* dout,
                       const float* inp, const float* w, const float* mean, const float* rstd,
                       int64_t N, int64_t C) {
  launch(s, N, bodies::LayerNormBackwardInput{dinp, dout, inp, w, mean, rstd, C}, 4 * C);
  const int64_t K = chunks(N, bodies::kReduceChunkRows);
  Scratch partial(s, K * 2 * C * sizeof(float));
  launch(s, K, bodies::LayerNormParamsPartial{partial.as<float>(), dout, inp, mean, rstd, N, C},
         bodies::kReduceChunkRows * C);
  launch(s, C, bodies::ColumnSumFinish{dw, partial.as<float>(), K, 2 * C}, K);
  launch(s, C, bodies::ColumnSumFinish{db, partial.as<float>() + C, K, 2 * C}, K);
}

void linearForward(const Stream& s, float* out, const float* inp, const float* w, const float* bias,
                   int64_t N, int64_t C, int64_t OC) {
  gemm(s, Transpose::No, Transpose::Yes, N, OC, C, 1.0f, inp, C, w, C, 0.0f, out, OC);
  if (bias) launch(s, N * OC, bodies::BiasAdd{out, bias, OC});
}

void linearBackward(const Stream& s, float* dinp, float* dw, float* dbias, const float* dout,
                    const float* inp, const float* w, int64_t N, int64_t C, int64_t OC,
                    bool accumulate_dinp) {
  if (dinp)
    gemm(s, Transpose::No, Transpose::No, N, C, OC, 1.0f, dout, OC, w, C,
         accumulate_dinp ? 1.0f : 0.0f, dinp, C);
  gemm(s, Transpose::Yes, Transpose::No, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
  if (dbias) columnSum(s, dbias, dout, N, OC);
}

void zero(const Stream& s, float* x, int64_t n) { launch(s, n, bodies::Fill{x, 0.0f}); }

void accumulate(const Stream& s, float* y, const float* x, int64_t n) {
  launch(s, n, bodies::Axpy{1.0f, x, y});
}

void geluForward(const Stream& s, float* out, const float* inp, int64_t n) {
  launch(s, n, bodies::GeluForward{out, inp}, 8);
}
void geluBackward(const Stream& s, float* dinp, const float* inp, const float* dout, int64_t n) {
  launch(s, n, bodies::GeluBackward{dinp, inp, dout}, 8);
}
void reluForward(const Stream& s, float* out, const float* inp, int64_t n) {
  launch(s, n, bodies::ReluForward{out, inp});
}
void reluBackward(const Stream& s, float* dinp, const float* inp, const float* dout, int64_t n) {
  launch(s, n, bodies::ReluBackward{dinp, inp, dout});
}

void attentionForward(const Stream& s, float* out, float* lse, const float* qkv, int64_t B,
                      int64_t T, int64_t H, int64_t hd) {
  if (!s.device().isCuda()) return cpu::attentionForward(out, lse, qkv, B, T, H, hd);
  attentionForwardBatched(s, out, lse, qkv, B, T, H, hd);
}

void attentionBackward(const Stream& s, float* dqkv, const float* dout, const float* qkv,
                       const float* out, const float* lse, int64_t B, int64_t T, int64_t H,
                       int64_t hd) {
  if (!s.device().isCuda()) return cpu::attentionBackward(dqkv, dout, qkv, out, lse, B, T, H, hd);
  attentionBackwardBatched(s, dqkv, dout, qkv, out, lse, B, T, H, hd);
}

// Per batch element b, head h: Q_h, K_h, V_h are [T, hd] with row stride 3C inside qkv, heads
// hd apart; S holds [H, T, T].
void attentionForwardBatched(const Stream& s, float* out, float* lse, const float* qkv, int64_t B,
                             int64_t T, int64_t H, int64_t hd) {
  const int64_t C = H * hd, ld = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Scratch scores(s, H * T * T * sizeof(float));
  float* S = scores.as<float>();
  for (int64_t b = 0; b < B; ++b) {
    const float* q = qkv + b * T * ld;
    // S_h = scale Q_h K_h^T
    gemm(s, GemmArgs{false, true, T, T, hd, scale, q, ld, hd, q + C, ld, hd, 0.0f, S, T, T * T, H});
    launch(s, H * T, bodies::AttentionSoftmaxRows{S, lse + b * H * T, nullptr, T}, T);
    // O_h = P_h V_h
    gemm(s, GemmArgs{false, false, T, hd, T, 1.0f, S, T, T * T, q + 2 * C, ld, hd, 0.0f,
                     out + b * T * C, C, hd, H});
  }
}

void attentionBackwardBatched(const Stream& s, float* dqkv, const float* dout, const float* qkv,
                              const float* out, const float* lse, int64_t B, int64_t T, int64_t H,
                              int64_t hd) {
  const int64_t C = H * hd, ld = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Scratch delta(s, B * H * T * sizeof(float));
  Scratch buffers(s, 2 * H * T * T * sizeof(float));
  float* P = buffers.as<float>();
  float* dS = P + H * T * T;
  launch(s, B * H * T, bodies::AttentionDelta{delta.as<float>(), out, dout, T, H, hd}, hd);
  for (int64_t b = 0; b < B; ++b) {
    const float* q = qkv + b * T * ld;
    const float* go = dout + b * T * C;
    float* dq = dqkv + b * T * ld;
    gemm(s, GemmArgs{false, true, T, T, hd, scale, q, ld, hd, q + C, ld, hd, 0.0f, P, T, T * T, H});
    launch(s, H * T, bodies::AttentionSoftmaxRows{P, nullptr, lse + b * H * T, T}, T);
    // dV_h = P_h^T dO_h
    gemm(s, GemmArgs{true, false, T, hd, T, 1.0f, P, T, T * T, go, C, hd, 0.0f, dq + 2 * C, ld, hd,
                     H});
    // dP_h = dO_h V_h^T, then dS = P (dP - delta) scale
    gemm(s, GemmArgs{false, true, T, T, hd, 1.0f, go, C, hd, q + 2 * C, ld, hd, 0.0f, dS, T, T * T,
                     H});
    launch(s, H * T, bodies::AttentionScoreGrad{dS, P, delta.as<float>() + b * H * T, T, scale}, T);
    // dQ_h = dS_h K_h, dK_h = dS_h^T Q_h
    gemm(s,
         GemmArgs{false, false, T, hd, T, 1.0f, dS, T, T * T, q + C, ld, hd, 0.0f, dq, ld, hd, H});
    gemm(s,
         GemmArgs{true, false, T, hd, T, 1.0f, dS, T, T * T, q, ld, hd, 0.0f, dq + C, ld, hd, H});
  }
}

void crossEntropyForward(const Stream& s, float* losses, float* lse, const float* logits,
                         const int32_t* targets, int64_t N, int64_t V, int64_t Vp) {
  launch(s, N, bodies::CrossEntropyForward{losses, lse, logits, targets, V, Vp}, 2 * V);
}

void crossEntropyBackward(const Stream& s, float* logits, const float* lse, const int32_t* targets,
                          int64_t N, int64_t V, int64_t Vp, float dloss) {
  launch(s, N, bodies::CrossEntropyBackward{logits, lse, targets, V, Vp, dloss}, Vp);
}

void adamwStep(const Stream& s, float* p, const float* g, float* m, float* v, int64_t n,
               const AdamWParams& a) {
  const float bias1 = 1.0f - std::pow(a.beta1, static_cast<float>(a.step));
  const float bias2_sqrt = std::sqrt(1.0f - std::pow(a.beta2, static_cast<float>(a.step)));
  launch(
      s, n,
      bodies::AdamW{p, g, m, v, a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, bias1, bias2_sqrt},
      4);
}

void sgdStep(const Stream& s, float* p, const float* g, float* buf, int64_t n, const SgdParams& a) {
  launch(s, n,
         bodies::SgdMomentum{p, g, buf, a.lr, a.momentum, a.weight_decay, a.nesterov, a.first_step},
         2);
}

double meanOnHost(const Stream& s, const float* x, int64_t n) {
  std::vector<float> host(n);
  copyBytes(s, host.data(), Device::cpu(), x, s.device(), n * sizeof(float));
  s.synchronize();
  double total = 0;
  for (float v : host) total += v;
  return total / static_cast<double>(n);
}

double sumSquares(const Stream& s, const float* x, int64_t n) {
  const int64_t K = chunks(n, bodies::kNormChunk);
  if (K == 0) return 0;
  Scratch partial(s, K * sizeof(double));
  launch(s, K, bodies::SumSquaresPartial{partial.as<double>(), x, n}, bodies::kNormChunk);
  std::vector<double> host(K);
  copyBytes(s, host.data(), Device::cpu(), partial.as<double>(), s.device(), K * sizeof(double));
  s.synchronize();
  double total = 0;
  for (double v : host) total += v;
  return total;
}

}  // namespace lowband::runtime
