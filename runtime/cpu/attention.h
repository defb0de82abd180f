// Causal attention on the CPU through OpenBLAS: per (batch, head) task and per block of query
// rows, S = scale Q K^T over the keys up to the block's end, a masked row softmax, and O = P V
// (backward: dV += P^T dO, dP = dO V^T, dS = P (dP - delta), dQ = dS K, dK += dS^T Q, each
// scaled). Only a [query block, T] score buffer per thread exists, never [B, H, T, T].
// Same layouts and results (to float rounding) as the functor bodies of nn_bodies.h that the
// CUDA launcher runs.
#pragma once

#include <cstdint>

namespace lowband::runtime::cpu {

void attentionForward(float* out, float* lse, const float* qkv, int64_t B, int64_t T, int64_t H,
                      int64_t hd);
void attentionBackward(float* dqkv, const float* dout, const float* qkv, const float* out,
                       const float* lse, int64_t B, int64_t T, int64_t H, int64_t hd);

}  // namespace lowband::runtime::cpu
