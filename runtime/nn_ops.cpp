#include "runtime/nn_ops.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "runtime/cpu/attention.h"
#include "runtime/error.h"
#include "runtime/kernel_bodies.h"
#include "runtime/kernels.h"
#include "runtime/nn_bodies.h"
#include "runtime/tensor.h"
#if LB_WITH_CUDA
#include "runtime/cuda/nn_kernels.h"
#include "runtime/cuda/sdpa.h"
#endif

namespace lowband::runtime {

namespace {

int64_t chunks(int64_t n, int64_t per_chunk) { return (n + per_chunk - 1) / per_chunk; }

// Bodies that CUDA runs through runtime/cuda/nn_kernels.cu are launched with cpu::launch on the
// CPU path, so the grid-stride launcher is instantiated only for the bodies it runs.

// Scratch memory on the stream's device for one op (the device allocator caches it).
struct Scratch {
  Storage storage;
  Scratch(const Stream& s, std::size_t bytes) : storage(s.device(), bytes, s.handle()) {}
  template <class T>
  T* as() {
    return static_cast<T*>(storage.data());
  }
};

#if LB_WITH_CUDA
#define LB_ON_CUDA(s, call) \
  if ((s).device().isCuda()) return call;
#else
#define LB_ON_CUDA(s, call)
#endif

// out[c] += column sums of x[N, C].
template <class T>
void columnSum(const Stream& s, float* out, const T* x, int64_t N, int64_t C) {
#if LB_WITH_CUDA
  if (s.device().isCuda()) {
    Scratch partial(s, cuda::columnChunks(N) * C * sizeof(float));
    return cuda::columnSum(s.handle(), out, x, N, C, partial.as<float>());
  }
#endif
  const int64_t K = chunks(N, bodies::kReduceChunkRows);
  Scratch partial(s, K * C * sizeof(float));
  cpu::launch(K, bodies::ColumnSumPartial<T>{partial.as<float>(), x, N, C},
              bodies::kReduceChunkRows * C);
  cpu::launch(C, bodies::ColumnSumFinish{out, partial.as<float>(), K, C}, K);
}

template <class T>
constexpr DType dtype() {
  return dtypeOf<T>();
}

}  // namespace

void embeddingForward(const Stream& s, float* out, const int32_t* tokens, const float* wte,
                      const float* wpe, int64_t B, int64_t T, int64_t C) {
  LB_ON_CUDA(s, cuda::embeddingForward(s.handle(), out, tokens, wte, wpe, B * T, T, C));
  cpu::launch(B * T, bodies::EmbeddingForward{out, tokens, wte, wpe, T, C}, C);
}

void TokenRows::build(const Stream& s, const int32_t* tokens, int64_t n) {
  // Counting sort by token: offsets from the counts, rows in ascending order within a token.
  int32_t max_token = 0;
  for (int64_t i = 0; i < n; ++i) max_token = std::max(max_token, tokens[i]);
  std::vector<int32_t> count(static_cast<std::size_t>(max_token) + 2, 0);
  for (int64_t i = 0; i < n; ++i) ++count[tokens[i] + 1];
  unique_ = 0;
  for (std::size_t v = 1; v < count.size(); ++v) unique_ += count[v] > 0;
  host_.assign(static_cast<std::size_t>(2 * unique_ + 1 + n), 0);
  int32_t* unique = host_.data();
  int32_t* offsets = unique + unique_;
  int32_t* rows = offsets + unique_ + 1;
  std::vector<int32_t> start(count.size(), 0);  // first slot of each token in rows
  int64_t u = 0, at = 0;
  for (int32_t v = 0; v <= max_token; ++v) {
    if (count[v + 1] == 0) continue;
    unique[u] = v;
    offsets[u] = static_cast<int32_t>(at);
    start[v] = static_cast<int32_t>(at);
    at += count[v + 1];
    ++u;
  }
  offsets[unique_] = static_cast<int32_t>(n);
  for (int64_t i = 0; i < n; ++i) rows[start[tokens[i]]++] = static_cast<int32_t>(i);
  const std::size_t bytes = host_.size() * sizeof(int32_t);
  if (!device_ || device_->bytes() < bytes || device_->device() != s.device() || n_ != n)
    device_ = std::make_unique<Storage>(s.device(), (3 * n + 1) * sizeof(int32_t), s.handle());
  n_ = n;
  copyBytes(s, device_->data(), s.device(), host_.data(), Device::cpu(), bytes);
}

void embeddingBackward(const Stream& s, float* dwte, float* dwpe, const float* dout,
                       const TokenRows& rows, int64_t B, int64_t T, int64_t C) {
  const int32_t* unique = rows.index();
  const int32_t* offsets = unique + rows.unique();
  const int32_t* order = offsets + rows.unique() + 1;
  // Work per item: the mean rows per token.
  launch(s, rows.unique() * C,
         bodies::EmbeddingBackwardTokens{dwte, dout, unique, offsets, order, C},
         std::max<int64_t>(1, B * T / std::max<int64_t>(1, rows.unique())));
  launch(s, T * C, bodies::EmbeddingBackwardPositions{dwpe, dout, B, T, C}, B);
}

template <class T>
void layerNormForward(const Stream& s, T* out, float* mean, float* rstd, const float* inp,
                      const float* w, const float* b, int64_t N, int64_t C) {
  constexpr float kEps = 1e-5f;
  LB_ON_CUDA(s, cuda::layerNormForward(s.handle(), out, mean, rstd, inp, w, b, N, C, kEps));
  cpu::launch(N, bodies::LayerNormForward<T>{out, mean, rstd, inp, w, b, C, kEps}, 3 * C);
}

void layerNormBackward(const Stream& s, float* dinp, float* dw, float* db, const float* dout,
                       const float* inp, const float* w, const float* mean, const float* rstd,
                       int64_t N, int64_t C) {
#if LB_WITH_CUDA
  if (s.device().isCuda()) {
    Scratch partial(s, cuda::columnChunks(N) * 2 * C * sizeof(float));
    return cuda::layerNormBackward(s.handle(), dinp, dw, db, dout, inp, w, mean, rstd, N, C,
                                   partial.as<float>());
  }
#endif
  cpu::launch(N, bodies::LayerNormBackwardInput{dinp, dout, inp, w, mean, rstd, C}, 4 * C);
  const int64_t K = chunks(N, bodies::kReduceChunkRows);
  Scratch partial(s, K * 2 * C * sizeof(float));
  cpu::launch(K, bodies::LayerNormParamsPartial{partial.as<float>(), dout, inp, mean, rstd, N, C},
              bodies::kReduceChunkRows * C);
  cpu::launch(C, bodies::ColumnSumFinish{dw, partial.as<float>(), K, 2 * C}, K);
  cpu::launch(C, bodies::ColumnSumFinish{db, partial.as<float>() + C, K, 2 * C}, K);
}

template <class T, class Out>
void linearForward(const Stream& s, Out* out, const T* inp, const T* w, const Out* bias, int64_t N,
                   int64_t C, int64_t OC, bool tf32) {
  GemmArgs g{false, false, N, OC, C, 1.0f, inp, C, 0, w, C, 0, 0.0f, out, OC, 0, 1};
  g.trans_b = true;
  g.ab_type = dtype<T>();
  g.c_type = dtype<Out>();
  g.bias = bias;
  g.tf32 = tf32;
  gemm(s, g);
}

template <class T, class DIn>
void linearBackward(const Stream& s, DIn* dinp, float* dw, float* dbias, const T* dout,
                    const T* inp, const T* w, int64_t N, int64_t C, int64_t OC,
                    bool accumulate_dinp, bool tf32) {
  if (dinp) {
    GemmArgs g{false, false, N, C, OC, 1.0f, dout, OC, 0, w, C, 0, accumulate_dinp ? 1.0f : 0.0f,
               dinp,  C,     0, 1};
    g.ab_type = dtype<T>();
    g.c_type = dtype<DIn>();
    g.tf32 = tf32;
    gemm(s, g);
  }
  GemmArgs g{true, false, OC, C, N, 1.0f, dout, OC, 0, inp, C, 0, 1.0f, dw, C, 0, 1};
  g.ab_type = dtype<T>();
  g.tf32 = tf32;
  gemm(s, g);
  if (dbias) columnSum(s, dbias, dout, N, OC);
}

void zero(const Stream& s, float* x, int64_t n) { launch(s, n, bodies::Fill{x, 0.0f}); }

void accumulate(const Stream& s, float* y, const float* x, int64_t n) {
  launch(s, n, bodies::Axpy{1.0f, x, y});
}

void castToBf16(const Stream& s, Bf16* out, const float* x, int64_t n) {
  launch(s, n, bodies::CastBf16{out, x}, 2);
}

template <class T>
void geluForward(const Stream& s, T* out, const T* inp, int64_t n) {
  launch(s, n, bodies::GeluForward<T>{out, inp}, 8);
}
template <class T>
void geluBackward(const Stream& s, T* dinp, const T* inp, const T* dout, int64_t n) {
  launch(s, n, bodies::GeluBackward<T>{dinp, inp, dout}, 8);
}
void reluForward(const Stream& s, float* out, const float* inp, int64_t n) {
  launch(s, n, bodies::ReluForward{out, inp});
}
void reluBackward(const Stream& s, float* dinp, const float* inp, const float* dout, int64_t n) {
  launch(s, n, bodies::ReluBackward{dinp, inp, dout});
}

namespace {

// Widens n bf16 values into a scratch f32 buffer.
float* widened(const Stream& s, std::vector<std::unique_ptr<Scratch>>& keep, const Bf16* x,
               int64_t n) {
  keep.push_back(std::make_unique<Scratch>(s, n * sizeof(float)));
  float* out = keep.back()->as<float>();
  launch(s, n, bodies::WidenBf16{out, x}, 2);
  return out;
}

// cuDNN's fused attention reads and writes 16-byte aligned memory only (runtime/cuda/sdpa.h);
// views that are not take the f32 path.
[[maybe_unused]] bool aligned16(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

float* scratchF32(const Stream& s, std::vector<std::unique_ptr<Scratch>>& keep, int64_t n) {
  keep.push_back(std::make_unique<Scratch>(s, n * sizeof(float)));
  return keep.back()->as<float>();
}

void attentionForwardF32(const Stream& s, float* out, float* lse, const float* qkv, int64_t B,
                         int64_t T, int64_t H, int64_t hd, bool tf32) {
  if (!s.device().isCuda()) return cpu::attentionForward(out, lse, qkv, B, T, H, hd);
  attentionForwardBatched(s, out, lse, qkv, B, T, H, hd, tf32);
}

void attentionBackwardF32(const Stream& s, float* dqkv, const float* dout, const float* qkv,
                          const float* out, const float* lse, int64_t B, int64_t T, int64_t H,
                          int64_t hd, bool tf32) {
  if (!s.device().isCuda()) return cpu::attentionBackward(dqkv, dout, qkv, out, lse, B, T, H, hd);
  attentionBackwardBatched(s, dqkv, dout, qkv, out, lse, B, T, H, hd, tf32);
}

}  // namespace

std::string bf16AttentionFallbackReason(const Stream& s, int64_t B, int64_t T, int64_t H,
                                        int64_t hd) {
  if (!s.device().isCuda()) return "the CPU has no fused bf16 attention";
#if LB_WITH_CUDA
  return cuda::sdpaUnsupportedReason(s.device().index, cuda::SdpaShape{B, T, H, hd});
#else
  (void)B, (void)T, (void)H, (void)hd;
  return "this build has no CUDA backend";
#endif
}

template <class T>
void attentionForward(const Stream& s, T* out, float* lse, const T* qkv, int64_t B, int64_t T_,
                      int64_t H, int64_t hd, bool tf32) {
  if constexpr (std::is_same_v<T, float>) {
    attentionForwardF32(s, out, lse, qkv, B, T_, H, hd, tf32);
  } else {
#if LB_WITH_CUDA
    if (s.device().isCuda() && aligned16({qkv, out, lse}) &&
        bf16AttentionFallbackReason(s, B, T_, H, hd).empty())
      return cuda::sdpaForward(s.device().index, s.handle(), cuda::SdpaShape{B, T_, H, hd},
                               1.0f / std::sqrt(static_cast<float>(hd)), qkv, out, lse);
#endif
    // Widen, attend in f32, round the output once.
    const int64_t C = H * hd;
    std::vector<std::unique_ptr<Scratch>> keep;
    const float* qkv32 = widened(s, keep, qkv, B * T_ * 3 * C);
    float* out32 = scratchF32(s, keep, B * T_ * C);
    attentionForwardF32(s, out32, lse, qkv32, B, T_, H, hd, tf32);
    castToBf16(s, out, out32, B * T_ * C);
  }
}

template <class T>
void attentionBackward(const Stream& s, T* dqkv, const T* dout, const T* qkv, const T* out,
                       const float* lse, int64_t B, int64_t T_, int64_t H, int64_t hd, bool tf32) {
  if constexpr (std::is_same_v<T, float>) {
    attentionBackwardF32(s, dqkv, dout, qkv, out, lse, B, T_, H, hd, tf32);
  } else {
#if LB_WITH_CUDA
    if (s.device().isCuda() && aligned16({qkv, out, dout, lse, dqkv}) &&
        bf16AttentionFallbackReason(s, B, T_, H, hd).empty())
      return cuda::sdpaBackward(s.device().index, s.handle(), cuda::SdpaShape{B, T_, H, hd},
                                1.0f / std::sqrt(static_cast<float>(hd)), qkv, out, dout, lse,
                                dqkv);
#endif
    const int64_t C = H * hd;
    std::vector<std::unique_ptr<Scratch>> keep;
    const float* qkv32 = widened(s, keep, qkv, B * T_ * 3 * C);
    const float* out32 = widened(s, keep, out, B * T_ * C);
    const float* dout32 = widened(s, keep, dout, B * T_ * C);
    float* dqkv32 = scratchF32(s, keep, B * T_ * 3 * C);
    attentionBackwardF32(s, dqkv32, dout32, qkv32, out32, lse, B, T_, H, hd, tf32);
    castToBf16(s, dqkv, dqkv32, B * T_ * 3 * C);
  }
}

namespace {

void softmaxRows(const Stream& s, float* scores, float* lse_out, const float* lse_in, int64_t H,
                 int64_t T) {
  LB_ON_CUDA(s, cuda::attentionSoftmaxRows(s.handle(), scores, lse_out, lse_in, H * T, T));
  cpu::launch(H * T, bodies::AttentionSoftmaxRows{scores, lse_out, lse_in, T}, T);
}

}  // namespace

// Per batch element b, head h: Q_h, K_h, V_h are [T, hd] with row stride 3C inside qkv, heads
// hd apart; S holds [H, T, T].
void attentionForwardBatched(const Stream& s, float* out, float* lse, const float* qkv, int64_t B,
                             int64_t T, int64_t H, int64_t hd, bool tf32) {
  const int64_t C = H * hd, ld = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Scratch scores(s, H * T * T * sizeof(float));
  float* S = scores.as<float>();
  auto batched = [&](GemmArgs g) {
    g.tf32 = tf32;
    gemm(s, g);
  };
  for (int64_t b = 0; b < B; ++b) {
    const float* q = qkv + b * T * ld;
    // S_h = scale Q_h K_h^T
    batched(GemmArgs{false, true, T, T, hd, scale, q, ld, hd, q + C, ld, hd, 0.0f, S, T, T * T, H});
    softmaxRows(s, S, lse + b * H * T, nullptr, H, T);
    // O_h = P_h V_h
    batched(GemmArgs{false, false, T, hd, T, 1.0f, S, T, T * T, q + 2 * C, ld, hd, 0.0f,
                     out + b * T * C, C, hd, H});
  }
}

void attentionBackwardBatched(const Stream& s, float* dqkv, const float* dout, const float* qkv,
                              const float* out, const float* lse, int64_t B, int64_t T, int64_t H,
                              int64_t hd, bool tf32) {
  const int64_t C = H * hd, ld = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Scratch delta(s, B * H * T * sizeof(float));
  Scratch buffers(s, 2 * H * T * T * sizeof(float));
  float* P = buffers.as<float>();
  float* dS = P + H * T * T;
  auto batched = [&](GemmArgs g) {
    g.tf32 = tf32;
    gemm(s, g);
  };
  launch(s, B * H * T, bodies::AttentionDelta{delta.as<float>(), out, dout, T, H, hd}, hd);
  for (int64_t b = 0; b < B; ++b) {
    const float* q = qkv + b * T * ld;
    const float* go = dout + b * T * C;
    float* dq = dqkv + b * T * ld;
    batched(GemmArgs{false, true, T, T, hd, scale, q, ld, hd, q + C, ld, hd, 0.0f, P, T, T * T, H});
    softmaxRows(s, P, nullptr, lse + b * H * T, H, T);
    // dV_h = P_h^T dO_h
    batched(
        GemmArgs{true, false, T, hd, T, 1.0f, P, T, T * T, go, C, hd, 0.0f, dq + 2 * C, ld, hd, H});
    // dP_h = dO_h V_h^T, then dS = P (dP - delta) scale
    batched(
        GemmArgs{false, true, T, T, hd, 1.0f, go, C, hd, q + 2 * C, ld, hd, 0.0f, dS, T, T * T, H});
    launch(s, H * T * T,
           bodies::AttentionScoreGrad{dS, P, delta.as<float>() + b * H * T, T, scale});
    // dQ_h = dS_h K_h, dK_h = dS_h^T Q_h
    batched(
        GemmArgs{false, false, T, hd, T, 1.0f, dS, T, T * T, q + C, ld, hd, 0.0f, dq, ld, hd, H});
    batched(
        GemmArgs{true, false, T, hd, T, 1.0f, dS, T, T * T, q, ld, hd, 0.0f, dq + C, ld, hd, H});
  }
}

void crossEntropyForward(const Stream& s, float* losses, float* lse, const float* logits,
                         const int32_t* targets, int64_t N, int64_t V, int64_t Vp) {
  LB_ON_CUDA(s, cuda::crossEntropyForward(s.handle(), losses, lse, logits, targets, N, V, Vp));
  cpu::launch(N, bodies::CrossEntropyForward{losses, lse, logits, targets, V, Vp}, 2 * V);
}

template <class Out>
void crossEntropyBackward(const Stream& s, Out* dlogits, const float* logits, const float* lse,
                          const int32_t* targets, int64_t N, int64_t V, int64_t Vp, float dloss) {
  LB_ON_CUDA(
      s, cuda::crossEntropyBackward(s.handle(), dlogits, logits, lse, targets, N, V, Vp, dloss));
  cpu::launch(N, bodies::CrossEntropyBackward<Out>{dlogits, logits, lse, targets, V, Vp, dloss},
              Vp);
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
#if LB_WITH_CUDA
  if (s.device().isCuda())
    cuda::sumSquaresPartial(s.handle(), partial.as<double>(), x, n, bodies::kNormChunk);
  else
#endif
    cpu::launch(K, bodies::SumSquaresPartial{partial.as<double>(), x, n}, bodies::kNormChunk);
  std::vector<double> host(K);
  copyBytes(s, host.data(), Device::cpu(), partial.as<double>(), s.device(), K * sizeof(double));
  s.synchronize();
  double total = 0;
  for (double v : host) total += v;
  return total;
}

// The precisions the models use: f32 throughout, bf16 activations with f32 or bf16 outputs.
template void layerNormForward<float>(const Stream&, float*, float*, float*, const float*,
                                      const float*, const float*, int64_t, int64_t);
template void layerNormForward<Bf16>(const Stream&, Bf16*, float*, float*, const float*,
                                     const float*, const float*, int64_t, int64_t);
template void linearForward<float, float>(const Stream&, float*, const float*, const float*,
                                          const float*, int64_t, int64_t, int64_t, bool);
template void linearForward<Bf16, Bf16>(const Stream&, Bf16*, const Bf16*, const Bf16*, const Bf16*,
                                        int64_t, int64_t, int64_t, bool);
template void linearForward<Bf16, float>(const Stream&, float*, const Bf16*, const Bf16*,
                                         const float*, int64_t, int64_t, int64_t, bool);
template void linearBackward<float, float>(const Stream&, float*, float*, float*, const float*,
                                           const float*, const float*, int64_t, int64_t, int64_t,
                                           bool, bool);
template void linearBackward<Bf16, Bf16>(const Stream&, Bf16*, float*, float*, const Bf16*,
                                         const Bf16*, const Bf16*, int64_t, int64_t, int64_t, bool,
                                         bool);
template void linearBackward<Bf16, float>(const Stream&, float*, float*, float*, const Bf16*,
                                          const Bf16*, const Bf16*, int64_t, int64_t, int64_t, bool,
                                          bool);
template void geluForward<float>(const Stream&, float*, const float*, int64_t);
template void geluForward<Bf16>(const Stream&, Bf16*, const Bf16*, int64_t);
template void geluBackward<float>(const Stream&, float*, const float*, const float*, int64_t);
template void geluBackward<Bf16>(const Stream&, Bf16*, const Bf16*, const Bf16*, int64_t);
template void attentionForward<float>(const Stream&, float*, float*, const float*, int64_t, int64_t,
                                      int64_t, int64_t, bool);
template void attentionForward<Bf16>(const Stream&, Bf16*, float*, const Bf16*, int64_t, int64_t,
                                     int64_t, int64_t, bool);
template void attentionBackward<float>(const Stream&, float*, const float*, const float*,
                                       const float*, const float*, int64_t, int64_t, int64_t,
                                       int64_t, bool);
template void attentionBackward<Bf16>(const Stream&, Bf16*, const Bf16*, const Bf16*, const Bf16*,
                                      const float*, int64_t, int64_t, int64_t, int64_t, bool);
template void crossEntropyBackward<float>(const Stream&, float*, const float*, const float*,
                                          const int32_t*, int64_t, int64_t, int64_t, float);
template void crossEntropyBackward<Bf16>(const Stream&, Bf16*, const float*, const float*,
                                         const int32_t*, int64_t, int64_t, int64_t, float);

}  // namespace lowband::runtime
