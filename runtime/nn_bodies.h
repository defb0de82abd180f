// Kernel bodies of the model ops (GPT/MLP forward and backward, optimizer updates, reductions),
// shared by the CPU and CUDA launchers (see launch.h). Row-major layouts throughout:
// activations [N, C] with N = batch * seq rows; qkv rows hold [q | k | v], head h at h*hd.
// Reductions over rows (bias and LayerNorm parameter gradients, squared norms) go through
// fixed-size row chunks and a second pass over the chunk partials, so results are the same on
// any thread count and no two items ever write the same element.
#pragma once

#include <cmath>
#include <cstdint>

#include "runtime/bf16.h"
#include "runtime/cpu/fast_math.h"
#include "runtime/launch.h"

namespace lowband::runtime::bodies {

constexpr int64_t kReduceChunkRows = 64;  // rows per partial of a column reduction

// ---- embeddings -------------------------------------------------------------------------

// out[i] = wte[tokens[i]] + wpe[i % T]
struct EmbeddingForward {
  float* out;
  const int32_t* tokens;
  const float* wte;
  const float* wpe;
  int64_t T, C;
  LB_HOST_DEVICE void operator()(int64_t i) const {
    const float* e = wte + static_cast<int64_t>(tokens[i]) * C;
    const float* p = wpe + (i % T) * C;
    float* o = out + i * C;
    for (int64_t c = 0; c < C; ++c) o[c] = e[c] + p[c];
  }
};

// dwte[v, c] += sum over rows i with tokens[i] == v of dout[i, c], in ascending i. Item =
// (distinct token u, channel c) = u * C + c over the index of runtime::TokenRows: each item owns
// one element of dwte, so repeated tokens never race.
struct EmbeddingBackwardTokens {
  float* dwte;
  const float* dout;
  const int32_t* unique;   // [U] distinct tokens
  const int32_t* offsets;  // [U + 1] into rows
  const int32_t* rows;     // [N] row indices grouped by token, ascending within a token
  int64_t C;
  LB_HOST_DEVICE void operator()(int64_t j) const {
    const int64_t u = j / C, c = j % C;
    float* d = dwte + static_cast<int64_t>(unique[u]) * C + c;
    for (int32_t k = offsets[u]; k < offsets[u + 1]; ++k)
      *d += dout[static_cast<int64_t>(rows[k]) * C + c];
  }
};

// dwpe[t, c] += sum_b dout[b*T + t, c]. Item = t*C + c.
struct EmbeddingBackwardPositions {
  float* dwpe;
  const float* dout;
  int64_t B, T, C;
  LB_HOST_DEVICE void operator()(int64_t j) const {
    const int64_t t = j / C, c = j % C;
    float s = 0;
    for (int64_t b = 0; b < B; ++b) s += dout[(b * T + t) * C + c];
    dwpe[j] += s;
  }
};

// ---- LayerNorm --------------------------------------------------------------------------

// out = (x - mean) * rstd * w + b per row; keeps mean and rstd for the backward.
template <class Out>
struct LayerNormForward {
  Out* out;
  float* mean;
  float* rstd;
  const float* inp;
  const float* w;
  const float* b;
  int64_t C;
  float eps;
  LB_HOST_DEVICE void operator()(int64_t i) const {
    const float* x = inp + i * C;
    float m = 0;
    for (int64_t c = 0; c < C; ++c) m += x[c];
    m /= static_cast<float>(C);
    float v = 0;
    for (int64_t c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    v /= static_cast<float>(C);
    const float s = 1.0f / sqrtf(v + eps);
    Out* o = out + i * C;
    for (int64_t c = 0; c < C; ++c) o[c] = fromF32<Out>((x[c] - m) * s * w[c] + b[c]);
    mean[i] = m;
    rstd[i] = s;
  }
};

// dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = w * dout, per row.
struct LayerNormBackwardInput {
  float* dinp;
  const float* dout;
  const float* inp;
  const float* w;
  const float* mean;
  const float* rstd;
  int64_t C;
  LB_HOST_DEVICE void operator()(int64_t i) const {
    const float* x = inp + i * C;
    const float* d = dout + i * C;
    const float m = mean[i], s = rstd[i];
    float g_mean = 0, gx_mean = 0;
    for (int64_t c = 0; c < C; ++c) {
      const float g = w[c] * d[c];
      g_mean += g;
      gx_mean += g * (x[c] - m) * s;
    }
    g_mean /= static_cast<float>(C);
    gx_mean /= static_cast<float>(C);
    float* dx = dinp + i * C;
    for (int64_t c = 0; c < C; ++c) {
      const float xhat = (x[c] - m) * s;
      dx[c] += (w[c] * d[c] - g_mean - xhat * gx_mean) * s;
    }
  }
};

// Partials of dw = sum_rows dout * xhat and db = sum_rows dout over one chunk of rows:
// partial[k] = [dw (C) | db (C)].
struct LayerNormParamsPartial {
  float* partial;
  const float* dout;
  const float* inp;
  const float* mean;
  const float* rstd;
  int64_t N, C;
  LB_HOST_DEVICE void operator()(int64_t k) const {
    float* pw = partial + k * 2 * C;
    float* pb = pw + C;
    for (int64_t c = 0; c < 2 * C; ++c) pw[c] = 0;
    const int64_t end = (k + 1) * kReduceChunkRows < N ? (k + 1) * kReduceChunkRows : N;
    for (int64_t i = k * kReduceChunkRows; i < end; ++i) {
      const float m = mean[i], s = rstd[i];
      const float* x = inp + i * C;
      const float* d = dout + i * C;
      for (int64_t c = 0; c < C; ++c) {
        pw[c] += d[c] * (x[c] - m) * s;
        pb[c] += d[c];
      }
    }
  }
};

// ---- column sums (bias gradients) ---------------------------------------------------------

// partial[k, c] = sum over the rows of chunk k of x[row, c].
template <class T>
struct ColumnSumPartial {
  float* partial;
  const T* x;
  int64_t N, C;
  LB_HOST_DEVICE void operator()(int64_t k) const {
    float* p = partial + k * C;
    for (int64_t c = 0; c < C; ++c) p[c] = 0;
    const int64_t end = (k + 1) * kReduceChunkRows < N ? (k + 1) * kReduceChunkRows : N;
    for (int64_t i = k * kReduceChunkRows; i < end; ++i)
      for (int64_t c = 0; c < C; ++c) p[c] += toF32(x[i * C + c]);
  }
};

// out[c] += sum_k partial[k, c] (out may be split: C columns of `stride`-spaced partial rows).
struct ColumnSumFinish {
  float* out;
  const float* partial;
  int64_t K, stride;
  LB_HOST_DEVICE void operator()(int64_t c) const {
    float s = 0;
    for (int64_t k = 0; k < K; ++k) s += partial[k * stride + c];
    out[c] += s;
  }
};

// ---- elementwise activations ------------------------------------------------------------

// out[i] = x[i] rounded to bf16 (weights and gradients entering bf16 GEMMs)
struct CastBf16 {
  Bf16* out;
  const float* x;
  LB_HOST_DEVICE void operator()(int64_t i) const { out[i] = fromF32<Bf16>(x[i]); }
};

// out[i] = x[i] widened to f32
struct WidenBf16 {
  float* out;
  const Bf16* x;
  LB_HOST_DEVICE void operator()(int64_t i) const { out[i] = toF32(x[i]); }
};

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)

// The device's tanhf on CUDA; on the CPU an exp-based form that vectorises (libm's tanhf was a
// fifth of a training step).
LB_HOST_DEVICE inline float geluTanh(float u) {
#if defined(__CUDA_ARCH__)
  return tanhf(u);
#else
  return cpu::fastTanh(u);
#endif
}

// GELU, tanh approximation (GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
template <class T>
struct GeluForward {
  T* out;
  const T* inp;
  LB_HOST_DEVICE void operator()(int64_t i) const {
    const float x = toF32(inp[i]);
    out[i] = fromF32<T>(0.5f * x * (1.0f + geluTanh(kGeluScale * (x + 0.044715f * x * x * x))));
  }
};

// dinp = dout * d/dx gelu(x)
template <class T>
struct GeluBackward {
  T* dinp;
  const T* inp;
  const T* dout;
  LB_HOST_DEVICE void operator()(int64_t i) const {
    const float x = toF32(inp[i]);
    const float u = kGeluScale * (x + 0.044715f * x * x * x);
    const float t = geluTanh(u);
    const float sech2 = 1.0f - t * t;
    const float du = kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = fromF32<T>(toF32(dout[i]) * (0.5f * (1.0f + t) + 0.5f * x * sech2 * du));
  }
};

struct ReluForward {
  float* out;
  const float* inp;
  LB_HOST_DEVICE void operator()(int64_t i) const { out[i] = inp[i] > 0 ? inp[i] : 0.0f; }
};

struct ReluBackward {
  float* dinp;
  const float* inp;
  const float* dout;
  LB_HOST_DEVICE void operator()(int64_t i) const { dinp[i] = inp[i] > 0 ? dout[i] : 0.0f; }
};

// ---- causal self-attention (the device path; the CPU has its own, runtime/cpu/attention.h) --
// qkv [B, T, 3C] (C = H * hd), out [B, T, C], lse [B, H, T] (log-sum-exp of the scaled scores
// of each query row). The scores of one batch element, S [H, T, T] = scale Q K^T, come from a
// strided-batched GEMM; these bodies work on its rows r = h * T + t.

// P = softmax of the causal row; with lse_out set it records the row's log-sum-exp, otherwise
// it recomputes P = exp(S - lse) from lse_in (the backward).
struct AttentionSoftmaxRows {
  float* scores;  // [H, T, T], in place
  float* lse_out;
  const float* lse_in;
  int64_t T;
  LB_HOST_DEVICE void operator()(int64_t r) const {
    float* row = scores + r * T;
    const int64_t valid = r % T + 1;  // keys 0..t
    if (lse_out) {
      float m = -INFINITY;
      for (int64_t s = 0; s < valid; ++s) m = row[s] > m ? row[s] : m;
      float sum = 0;
      for (int64_t s = 0; s < valid; ++s) sum += (row[s] = expf(row[s] - m));
      const float inv = 1.0f / sum;
      for (int64_t s = 0; s < valid; ++s) row[s] *= inv;
      lse_out[r] = m + logf(sum);
    } else {
      const float l = lse_in[r];
      for (int64_t s = 0; s < valid; ++s) row[s] = expf(row[s] - l);
    }
    for (int64_t s = valid; s < T; ++s) row[s] = 0;
  }
};

// dS = P (dP - delta) * scale, in place of dP; item e = (h * T + t) * T + s, one score.
struct AttentionScoreGrad {
  float* dscores;  // dP in, dS out: [H, T, T]
  const float* probs;
  const float* delta;  // [H, T] of this batch element
  int64_t T;
  float scale;
  LB_HOST_DEVICE void operator()(int64_t e) const {
    dscores[e] = probs[e] * (dscores[e] - delta[e / T]) * scale;
  }
};

// delta[r] = dot(dout row, out row) for r = (b * H + h) * T + t: the softmax backward's row term.
struct AttentionDelta {
  float* delta;
  const float* out;
  const float* dout;
  int64_t T, H, hd;
  LB_HOST_DEVICE void operator()(int64_t r) const {
    const int64_t b = r / (H * T), h = (r / T) % H, t = r % T;
    const int64_t off = (b * T + t) * H * hd + h * hd;
    float s = 0;
    for (int64_t d = 0; d < hd; ++d) s += out[off + d] * dout[off + d];
    delta[r] = s;
  }
};

// ---- softmax cross-entropy -----------------------------------------------------------------
// logits [N, Vp]; only the first V columns are real classes (the rest pad the vocab).

struct CrossEntropyForward {
  float* losses;
  float* lse;
  const float* logits;
  const int32_t* targets;
  int64_t V, Vp;
  LB_HOST_DEVICE void operator()(int64_t i) const {
    const float* x = logits + i * Vp;
    float m = -INFINITY;
    for (int64_t v = 0; v < V; ++v) m = x[v] > m ? x[v] : m;
    float s = 0;
    for (int64_t v = 0; v < V; ++v) s += expf(x[v] - m);
    lse[i] = m + logf(s);
    losses[i] = lse[i] - x[targets[i]];
  }
};

// dlogits = dloss/dlogits = (softmax - onehot) * dloss; padding columns get 0. dlogits may be
// logits itself (each element is read before it is written).
template <class Out>
struct CrossEntropyBackward {
  Out* dlogits;
  const float* logits;
  const float* lse;
  const int32_t* targets;
  int64_t V, Vp;
  float dloss;
  LB_HOST_DEVICE void operator()(int64_t i) const {
    const float* x = logits + i * Vp;
    Out* d = dlogits + i * Vp;
    const float l = lse[i];
    for (int64_t v = 0; v < V; ++v)
      d[v] = fromF32<Out>((expf(x[v] - l) - (v == targets[i] ? 1.0f : 0.0f)) * dloss);
    for (int64_t v = V; v < Vp; ++v) d[v] = fromF32<Out>(0.0f);
  }
};

// ---- optimizers and norms -------------------------------------------------------------------

// AdamW in PyTorch's order of operations: decoupled decay first, then the Adam step.
struct AdamW {
  float* p;
  const float* g;
  float* m;
  float* v;
  float lr, beta1, beta2, eps, weight_decay;
  float bias1, bias2_sqrt;  // 1 - beta1^t and sqrt(1 - beta2^t)
  LB_HOST_DEVICE void operator()(int64_t i) const {
    const float gi = g[i];
    p[i] *= 1.0f - lr * weight_decay;
    m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
    v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    const float denom = sqrtf(v[i]) / bias2_sqrt + eps;
    p[i] -= (lr / bias1) * m[i] / denom;
  }
};

// SGD with momentum (PyTorch semantics: coupled weight decay, no dampening, optional Nesterov).
struct SgdMomentum {
  float* p;
  const float* g;
  float* buf;
  float lr, momentum, weight_decay;
  bool nesterov, first_step;
  LB_HOST_DEVICE void operator()(int64_t i) const {
    float d = g[i] + weight_decay * p[i];
    buf[i] = first_step ? d : momentum * buf[i] + d;
    d = nesterov ? d + momentum * buf[i] : buf[i];
    p[i] -= lr * d;
  }
};

constexpr int64_t kNormChunk = 1 << 14;

// partial[k] = sum of x[i]^2 over chunk k (accumulated in double on every device).
struct SumSquaresPartial {
  double* partial;
  const float* x;
  int64_t n;
  LB_HOST_DEVICE void operator()(int64_t k) const {
    const int64_t end = (k + 1) * kNormChunk < n ? (k + 1) * kNormChunk : n;
    double s = 0;
    for (int64_t i = k * kNormChunk; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    partial[k] = s;
  }
};

}  // namespace lowband::runtime::bodies

// The row bodies that CUDA runs through runtime/cuda/nn_kernels.cu instead (LayerNorm, column
// sums, softmax rows, cross-entropy, the embedding forward) are not listed: the grid-stride
// launcher is never instantiated for them.
#define LB_NN_BODIES(X)                                                 \
  X(::lowband::runtime::bodies::EmbeddingBackwardTokens)                \
  X(::lowband::runtime::bodies::EmbeddingBackwardPositions)             \
  X(::lowband::runtime::bodies::CastBf16)                               \
  X(::lowband::runtime::bodies::WidenBf16)                              \
  X(::lowband::runtime::bodies::GeluForward<float>)                     \
  X(::lowband::runtime::bodies::GeluForward<::lowband::runtime::Bf16>)  \
  X(::lowband::runtime::bodies::GeluBackward<float>)                    \
  X(::lowband::runtime::bodies::GeluBackward<::lowband::runtime::Bf16>) \
  X(::lowband::runtime::bodies::ReluForward)                            \
  X(::lowband::runtime::bodies::ReluBackward)                           \
  X(::lowband::runtime::bodies::AttentionScoreGrad)                     \
  X(::lowband::runtime::bodies::AttentionDelta)                         \
  X(::lowband::runtime::bodies::AdamW)                                  \
  X(::lowband::runtime::bodies::SgdMomentum)
