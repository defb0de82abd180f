// One row-major (strided-batched) GEMM: for i < batch,
//   C_i[m, n] = alpha * op(A_i) op(B_i) + beta * C_i (+ bias[n] on every row),
//   X_i = X + i * stride_x elements,
// where op(A) is [m, k] (A stored [k, m] when trans_a) and op(B) is [k, n] (B stored [n, k]
// when trans_b). Shared by the CPU (OpenBLAS) and CUDA (cuBLASLt / cuBLAS) backends.
// Precision: A and B are both f32 or both bf16; products are accumulated in f32 on every device
// (bf16 x bf16 products are exact in f32). C is f32, or bf16 with beta 0: the f32 result plus
// bias is rounded once (nearest even) when it is stored. `tf32` lets CUDA run f32 operands on
// TF32 tensor cores (inputs rounded to 10 mantissa bits); the CPU ignores it and computes f32.
#pragma once

#include <cstdint>

#include "runtime/tensor.h"

namespace lowband::runtime {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  const void* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  const void* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  float beta = 0.0f;
  void* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  int64_t batch = 1;
  DType ab_type = DType::F32;  // F32 or BF16
  DType c_type = DType::F32;   // F32 or BF16
  const void* bias = nullptr;  // n elements of c_type; batch 1 only
  bool tf32 = false;
};

}  // namespace lowband::runtime
