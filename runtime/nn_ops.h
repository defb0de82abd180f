// Model ops on raw pointers to memory of the stream's device (row-major; see nn_bodies.h for
// the layouts and equations). The model code calls these; only runtime/ knows which device runs
// them. Gradient outputs named d* accumulate (+=) unless a comment says otherwise.
//
// Precision: activations that feed GEMMs and attention are stored as T, float or Bf16 (the
// model's precision); the residual stream, LayerNorm statistics, logits, losses and every
// parameter gradient are f32, and all arithmetic is f32 (bf16 values are widened on load and
// rounded once, to nearest even, when stored). The CPU runs the same roundings as CUDA, so a
// CPU bf16 run is the reference for a GPU one. `tf32` lets CUDA GEMMs take f32 operands on TF32
// tensor cores (the CPU computes f32).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/bf16.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace lowband::runtime {

void embeddingForward(const Stream& s, float* out, const int32_t* tokens, const float* wte,
                      const float* wpe, int64_t B, int64_t T, int64_t C);

// The rows of each distinct token of a batch, for an embedding backward that sums a token's
// rows in row order without atomics (deterministic; parallel over tokens x channels).
class TokenRows {
 public:
  // Groups the rows of `tokens` (host memory, n entries) by token on the host and copies the
  // index to the stream's device.
  void build(const Stream& s, const int32_t* tokens, int64_t n);
  int64_t unique() const { return unique_; }
  // On the stream's device: [unique tokens (ascending) | offsets (unique + 1) | rows (n)].
  const int32_t* index() const { return static_cast<const int32_t*>(device_->data()); }

 private:
  std::vector<int32_t> host_;
  std::unique_ptr<Storage> device_;
  int64_t unique_ = 0, n_ = 0;
};

void embeddingBackward(const Stream& s, float* dwte, float* dwpe, const float* dout,
                       const TokenRows& rows, int64_t B, int64_t T, int64_t C);

template <class T>
void layerNormForward(const Stream& s, T* out, float* mean, float* rstd, const float* inp,
                      const float* w, const float* b, int64_t N, int64_t C);
void layerNormBackward(const Stream& s, float* dinp, float* dw, float* db, const float* dout,
                       const float* inp, const float* w, const float* mean, const float* rstd,
                       int64_t N, int64_t C);

// out[N, OC] = inp[N, C] W^T + bias, W [OC, C] (PyTorch's Linear layout); bias (of out's type,
// as cuBLASLt's epilogue wants) may be null.
template <class T, class Out>
void linearForward(const Stream& s, Out* out, const T* inp, const T* w, const Out* bias, int64_t N,
                   int64_t C, int64_t OC, bool tf32 = false);
// dinp = dout W (+= when accumulate_dinp, f32 only; skipped when dinp is null), dw += dout^T
// inp, dbias += column sums of dout (skipped when null).
template <class T, class DIn>
void linearBackward(const Stream& s, DIn* dinp, float* dw, float* dbias, const T* dout,
                    const T* inp, const T* w, int64_t N, int64_t C, int64_t OC,
                    bool accumulate_dinp, bool tf32 = false);

void zero(const Stream& s, float* x, int64_t n);
// y[i] += x[i] (residual connections)
void accumulate(const Stream& s, float* y, const float* x, int64_t n);
// out[i] = x[i] rounded to bf16
void castToBf16(const Stream& s, Bf16* out, const float* x, int64_t n);

template <class T>
void geluForward(const Stream& s, T* out, const T* inp, int64_t n);
template <class T>
void geluBackward(const Stream& s, T* dinp, const T* inp, const T* dout, int64_t n);  // dinp =
void reluForward(const Stream& s, float* out, const float* inp, int64_t n);
void reluBackward(const Stream& s, float* dinp, const float* inp, const float* dout,
                  int64_t n);  // dinp =

// Causal multi-head attention over qkv [B, T, 3C]: out [B, T, C], lse [B, H, T]. In bf16 CUDA
// runs cuDNN's fused flash attention where it can (runtime/cuda/sdpa.h); elsewhere the values
// are widened to f32, attended in f32 and the outputs rounded.
template <class T>
void attentionForward(const Stream& s, T* out, float* lse, const T* qkv, int64_t B, int64_t T_,
                      int64_t H, int64_t hd, bool tf32 = false);
// dqkv [B, T, 3C] is overwritten.
template <class T>
void attentionBackward(const Stream& s, T* dqkv, const T* dout, const T* qkv, const T* out,
                       const float* lse, int64_t B, int64_t T_, int64_t H, int64_t hd,
                       bool tf32 = false);
// Why CUDA attends this shape in bf16 without cuDNN's fused kernel ("" when it uses it).
std::string bf16AttentionFallbackReason(const Stream& s, int64_t B, int64_t T, int64_t H,
                                        int64_t hd);

// The f32 device path of the two above (strided-batched GEMMs + row kernels, an [H, T, T] score
// buffer per batch element), callable on the CPU too so tests can check it there.
void attentionForwardBatched(const Stream& s, float* out, float* lse, const float* qkv, int64_t B,
                             int64_t T, int64_t H, int64_t hd, bool tf32 = false);
void attentionBackwardBatched(const Stream& s, float* dqkv, const float* dout, const float* qkv,
                              const float* out, const float* lse, int64_t B, int64_t T, int64_t H,
                              int64_t hd, bool tf32 = false);

// losses[N] and lse[N] of softmax cross-entropy over the first V of Vp columns.
void crossEntropyForward(const Stream& s, float* losses, float* lse, const float* logits,
                         const int32_t* targets, int64_t N, int64_t V, int64_t Vp);
// dlogits = dloss * (softmax - onehot), padding columns 0; dlogits may be logits itself (f32).
template <class Out>
void crossEntropyBackward(const Stream& s, Out* dlogits, const float* logits, const float* lse,
                          const int32_t* targets, int64_t N, int64_t V, int64_t Vp, float dloss);

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
