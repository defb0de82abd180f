#include "runtime/cpu/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/cpu/fast_math.h"

namespace lowband::runtime::cpu {

namespace {

constexpr int64_t kQueryBlock = 128;

// Pointers of one (batch, head) slice; rows of qkv are 3C apart, rows of out C apart.
struct Slice {
  int64_t C, ld_qkv;
  const float *q, *k, *v;
  int64_t b, h;
  Slice(const float* qkv, int64_t b_, int64_t h_, int64_t T, int64_t H, int64_t hd)
      : C(H * hd), ld_qkv(3 * H * hd), b(b_), h(h_) {
    q = qkv + b * T * ld_qkv + h * hd;
    k = q + C;
    v = q + 2 * C;
  }
};

// Turns scores S[nq, nk] of queries t0.. into probabilities P = exp(S - lse) with the causal
// mask; computes lse when `lse_out` is set, else reads it from `lse_in`.
void softmaxRows(float* S, int64_t nq, int64_t nk, int64_t t0, float* lse_out,
                 const float* lse_in) {
  for (int64_t i = 0; i < nq; ++i) {
    float* row = S + i * nk;
    const int64_t valid = t0 + i + 1;  // keys 0..t
    float l;
    if (lse_out) {
      float m = -INFINITY;
      for (int64_t s = 0; s < valid; ++s) m = std::max(m, row[s]);
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t s = 0; s < valid; ++s) {
        row[s] = fastExp(row[s] - m);
        sum += row[s];
      }
      l = m + std::log(sum);
      lse_out[t0 + i] = l;
      const float inv = 1.0f / sum;
#pragma omp simd
      for (int64_t s = 0; s < valid; ++s) row[s] *= inv;
    } else {
      l = lse_in[t0 + i];
#pragma omp simd
      for (int64_t s = 0; s < valid; ++s) row[s] = fastExp(row[s] - l);
    }
    for (int64_t s = valid; s < nk; ++s) row[s] = 0;
  }
}

}  // namespace

void attentionForward(float* out, float* lse, const float* qkv, int64_t B, int64_t T, int64_t H,
                      int64_t hd) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel
  {
    std::vector<float> S(kQueryBlock * T);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < B * H; ++task) {
      const Slice x(qkv, task / H, task % H, T, H, hd);
      float* o = out + x.b * T * x.C + x.h * hd;
      float* l = lse + task * T;
      for (int64_t t0 = 0; t0 < T; t0 += kQueryBlock) {
        const int64_t nq = std::min(kQueryBlock, T - t0), nk = t0 + nq;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, x.q + t0 * x.ld_qkv,
                    x.ld_qkv, x.k, x.ld_qkv, 0.0f, S.data(), nk);
        softmaxRows(S.data(), nq, nk, t0, l, nullptr);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S.data(), nk, x.v,
                    x.ld_qkv, 0.0f, o + t0 * x.C, x.C);
      }
    }
  }
}

void attentionBackward(float* dqkv, const float* dout, const float* qkv, const float* out,
                       const float* lse, int64_t B, int64_t T, int64_t H, int64_t hd) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel
  {
    std::vector<float> P(kQueryBlock * T), dS(kQueryBlock * T), delta(T);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < B * H; ++task) {
      const Slice x(qkv, task / H, task % H, T, H, hd);
      const float* go = dout + x.b * T * x.C + x.h * hd;
      const float* o = out + x.b * T * x.C + x.h * hd;
      const float* l = lse + task * T;
      float* dq = dqkv + x.b * T * x.ld_qkv + x.h * hd;
      float* dk = dq + x.C;
      float* dv = dq + 2 * x.C;
      for (int64_t t = 0; t < T; ++t) {
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < hd; ++d) s += go[t * x.C + d] * o[t * x.C + d];
        delta[t] = s;
        for (int64_t d = 0; d < hd; ++d) dk[t * x.ld_qkv + d] = dv[t * x.ld_qkv + d] = 0;
      }
      for (int64_t t0 = 0; t0 < T; t0 += kQueryBlock) {
        const int64_t nq = std::min(kQueryBlock, T - t0), nk = t0 + nq;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, x.q + t0 * x.ld_qkv,
                    x.ld_qkv, x.k, x.ld_qkv, 0.0f, P.data(), nk);
        softmaxRows(P.data(), nq, nk, t0, nullptr, l);
        // dV[0:nk] += P^T dO
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, P.data(), nk,
                    go + t0 * x.C, x.C, 1.0f, dv, x.ld_qkv);
        // dP = dO V^T, then dS = P (dP - delta) * scale
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, go + t0 * x.C, x.C,
                    x.v, x.ld_qkv, 0.0f, dS.data(), nk);
        for (int64_t i = 0; i < nq; ++i) {
          const float di = delta[t0 + i];
          float* ds = dS.data() + i * nk;
          const float* p = P.data() + i * nk;
#pragma omp simd
          for (int64_t s = 0; s < nk; ++s) ds[s] = p[s] * (ds[s] - di) * scale;
        }
        // dQ = dS K, dK[0:nk] += dS^T Q
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, dS.data(), nk, x.k,
                    x.ld_qkv, 0.0f, dq + t0 * x.ld_qkv, x.ld_qkv);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, dS.data(), nk,
                    x.q + t0 * x.ld_qkv, x.ld_qkv, 1.0f, dk, x.ld_qkv);
      }
    }
  }
}

}  // namespace lowband::runtime::cpu
