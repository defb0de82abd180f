// Model ops on raw pointers to memory of the stream's device (row-major; see nn_bodies.h for
// the layouts and equations). The model code calls these; only runtime/ knows which device runs
// them. Gradient outputs named d* accumulate (+=) unless a comment says otherwise.
#pragma once

#include <cstdint>

#include "runtime/stream.h"

namespace lowband::runtime {

void embeddingForward(const Stream& s, float* out, const int32_t* tokens, const float* wte,
                      const float* wpe, int64_t B, int64_t T, int64_t C);
void embeddingBackward(const Stream& s, float* dwte, float* dwpe, const float* dout,
                       const int32_t* tokens, int64_t B, int64_t T, int64_t C);

void layerNormForward(const Stream& s, float* out, float* mean, float* rstd, const float* inp,
                      const float* w, const float* b, int64_t N, int64_t C);
void layerNormBackward(const Stream& s, float* dinp, float* dw, float* db, const float* dout,
                       const float* inp, const float* w, const float* mean, const float* rstd,
                       int64_t N, int64_t C);

// out[N, OC] = inp[N, C] W^T + bias, W [OC, C] (PyTorch's Linear layout); bias may be null.
void linearForward(const Stream& s, float* out, const float* inp, const float* w, const float* bias,
                   int64_t N, int64_t C, int64_t OC);
// dinp = dout W (+= when accumulate_dinp; skipped when dinp is null), dw += dout^T inp,
// dbias += column sums of dout (skipped when null).
void linearBackward(const Stream& s, float* dinp, float* dw, float* dbias, const float* dout,
                    const float* inp, const float* w, int64_t N, int64_t C, int64_t OC,
                    bool accumulate_dinp);

void zero(const Stream& s, float* x, int64_t n);
// y[i] += x[i] (residual connections)
void accumulate(const Stream& s, float* y, const float* x, int64_t n);

void geluForward(const Stream& s, float* out, const float* inp, int64_t n);
void geluBackward(const Stream& s, float* dinp, const float* inp, const float* dout,
                  int64_t n);  // dinp =
void reluForward(const Stream& s, float* out, const float* inp, int64_t n);
void reluBackward(const Stream& s, float* dinp, const float* inp, const float* dout,
                  int64_t n);  // dinp =

// Causal multi-head attention over qkv [B, T, 3C]: out [B, T, C], lse [B, H, T].
void attentionForward(const Stream& s, float* out, float* lse, const float* qkv, int64_t B,
                      int64_t T, int64_t H, int64_t hd);
// dqkv [B, T, 3C] is overwritten.
void attentionBackward(const Stream& s, float* dqkv, const float* dout, const float* qkv,
                       const float* out, const float* lse, int64_t B, int64_t T, int64_t H,
                       int64_t hd);

// The device path of the two above (strided-batched GEMMs + row bodies, an [H, T, T] score
// buffer per batch element), callable on the CPU too so tests can check it there. Not cuDNN's
// fused SDPA: cuDNN 9 takes only FP16/BF16 (or FP8) Q/K/V there, and lowband computes in f32.
void attentionForwardBatched(const Stream& s, float* out, float* lse, const float* qkv, int64_t B,
                             int64_t T, int64_t H, int64_t hd);
void attentionBackwardBatched(const Stream& s, float* dqkv, const float* dout, const float* qkv,
                              const float* out, const float* lse, int64_t B, int64_t T, int64_t H,
                              int64_t hd);

// losses[N] and lse[N] of softmax cross-entropy over the first V of Vp columns.
void crossEntropyForward(const Stream& s, float* losses, float* lse, const float* logits,
                         const int32_t* targets, int64_t N, int64_t V, int64_t Vp);
// Overwrites logits with dloss * (softmax - onehot).
void crossEntropyBackward(const Stream& s, float* logits, const float* lse, const int32_t* targets,
                          int64_t N, int64_t V, int64_t Vp, float dloss);

struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // 1-based, for the bias correction
};
void adamwStep(const Stream& s, float* p, const float* g, float* m, float* v, int64_t n,
               const AdamWParams& a);
struct SgdParams {
  float lr, momentum, weight_decay;
  bool nesterov;
  bool first_step;  // the momentum buffer starts as the first gradient (PyTorch)
};
void sgdStep(const Stream& s, float* p, const float* g, float* buf, int64_t n, const SgdParams& a);

// Mean of x[0, n) in double on the host (copies the values back); waits for the stream.
double meanOnHost(const Stream& s, const float* x, int64_t n);

// Sum of squares of x[0, n), accumulated in double; waits for the stream.
double sumSquares(const Stream& s, const float* x, int64_t n);

}  // namespace lowband::runtime
