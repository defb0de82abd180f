// One row-major (strided-batched) GEMM: for i < batch,
//   C_i[m, n] = alpha * op(A_i) op(B_i) + beta * C_i,  X_i = X + i * stride_x,
// where op(A) is [m, k] (A stored [k, m] when trans_a) and op(B) is [k, n] (B stored [n, k]
// when trans_b). Shared by the CPU (OpenBLAS) and CUDA (cuBLASLt / cuBLAS) backends.
#pragma once

#include <cstdint>

namespace lowband::runtime {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  const float* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  const float* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  float beta = 0.0f;
  float* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  int64_t batch = 1;
};

}  // namespace lowband::runtime
