// CUDA kernels for the row-wise and column-wise model ops, where the CPU's one-item-per-row
// bodies (nn_bodies.h) would leave the GPU idle or read memory with a stride: a warp per row
// for LayerNorm and attention softmax rows, a block per row for the cross-entropy's wide rows,
// two-stage column reductions over tiles of rows for bias and LayerNorm parameter gradients,
// and one thread per element for the embedding forward and the cross-entropy backward. Every
// reduction adds in a fixed order (no atomics), so results are the same bits run to run; they
// differ from the CPU's only in the order of the sums. Plain declarations: no CUDA header leaks.
#pragma once

#include <cstdint>

#include "runtime/bf16.h"

namespace lowband::runtime::cuda {

// Rows per partial of the two-stage column reductions below.
constexpr int64_t kColumnChunkRows = 256;
inline int64_t columnChunks(int64_t N) { return (N + kColumnChunkRows - 1) / kColumnChunkRows; }

void embeddingForward(void* stream, float* out, const int32_t* tokens, const float* wte,
                      const float* wpe, int64_t N, int64_t T, int64_t C);

template <class Out>
void layerNormForward(void* stream, Out* out, float* mean, float* rstd, const float* inp,
                      const float* w, const float* b, int64_t N, int64_t C, float eps);
// dinp += ..., dw += ..., db += ...; partial: 2 * columnChunks(N) * C floats of scratch.
void layerNormBackward(void* stream, float* dinp, float* dw, float* db, const float* dout,
                       const float* inp, const float* w, const float* mean, const float* rstd,
                       int64_t N, int64_t C, float* partial);

// out[c] += sum over rows of x[N, C]; partial: columnChunks(N) * C floats of scratch.
template <class T>
void columnSum(void* stream, float* out, const T* x, int64_t N, int64_t C, float* partial);

// The attention softmax rows of AttentionSoftmaxRows (nn_bodies.h), a warp per row.
void attentionSoftmaxRows(void* stream, float* scores, float* lse_out, const float* lse_in,
                          int64_t rows, int64_t T);

void crossEntropyForward(void* stream, float* losses, float* lse, const float* logits,
                         const int32_t* targets, int64_t N, int64_t V, int64_t Vp);
template <class Out>
void crossEntropyBackward(void* stream, Out* dlogits, const float* logits, const float* lse,
                          const int32_t* targets, int64_t N, int64_t V, int64_t Vp, float dloss);

// partial[k] = sum of x[i]^2 over chunk k of `chunk` elements, in double; a block per chunk.
void sumSquaresPartial(void* stream, double* partial, const float* x, int64_t n, int64_t chunk);

}  // namespace lowband::runtime::cuda
