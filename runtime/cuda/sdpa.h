// Causal scaled-dot-product attention in bf16 through cuDNN 9's fused flash attention
// (backend graph API). q, k, v are read in place from qkv [B, T, 3C] (bf16, row (b,t) holds
// [q | k | v], head h at h*hd, C = H*hd); out [B, T, C] bf16; lse [B, H, T] f32 is the
// log-sum-exp (natural log) of the scaled scores of each query row, as cuDNN's softmax stats.
//
// Per batch element b and head h, with t the query row and s the key column (both in [0, T)):
//   forward:  S = scale Q K^T, causal mask keeps keys s <= t (the others are -inf before the
//             softmax), P = softmax(S) row-wise, O = P V, lse[t] = log sum_{s<=t} exp S[t, s]
//   backward: dV = P^T dO, dP = dO V^T, delta[t] = rowsum(dO * O)[t], dS = P * (dP - delta),
//             dQ = scale dS K, dK = scale dS^T Q   (P recomputed as exp(S - lse))
// All pointers must be 16-byte aligned device memory; hd must be a multiple of 8 (see
// sdpaUnsupportedReason for every limit). Not callable from CUDA-free builds (LB_WITH_CUDA).
#pragma once
#include <cstdint>
#include <string>
namespace lowband::runtime::cuda {
struct SdpaShape {
  int64_t B, T, H, hd;
};
// "" when this device and the loaded cuDNN can run it, else why not (GPU older than sm_80, cuDNN
// older than 9.0, no engine for this shape: say which).
std::string sdpaUnsupportedReason(int device, const SdpaShape& shape);
void sdpaForward(int device, void* stream, const SdpaShape& shape, float scale, const void* qkv,
                 void* out, float* lse);
// Whether the backward of this shape repeats bit for bit: true when cuDNN took the graph that
// writes dQ directly (deterministic engines only), false when only the f32 dQ-accumulator graph
// built (its engines may add in another order each run) or none did.
bool sdpaBackwardDeterministic(int device, const SdpaShape& shape);
// dqkv [B, T, 3C] bf16 is overwritten (dQ, dK, dV written in place in qkv's layout).
void sdpaBackward(int device, void* stream, const SdpaShape& shape, float scale, const void* qkv,
                  const void* out, const void* dout, const float* lse, void* dqkv);
}  // namespace lowband::runtime::cuda
