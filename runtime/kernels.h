// The op set: the only code that knows which device runs an op. Every op takes the stream it
// runs on; tensors must live on the stream's device (checked, ShapeError/DeviceError otherwise).
#pragma once

#include <cstdint>

#include "runtime/gemm_args.h"
#include "runtime/precision.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace lowband::runtime {

void fill(const Stream& stream, const Tensor& x, float value);
void scale(const Stream& stream, const Tensor& x, float a);
void axpy(const Stream& stream, float a, const Tensor& x, const Tensor& y);  // y += a x
void lerp(const Stream& stream, const Tensor& x, const Tensor& y, float w);  // x += w (y - x)
void add(const Stream& stream, const Tensor& a, const Tensor& b, const Tensor& out);

// Copies between any two devices (same dtype and element count).
void copy(const Stream& stream, const Tensor& src, const Tensor& dst);
// Raw form: `bytes` from `src` on src_device to `dst` on dst_device, ordered on `stream`.
void copyBytes(const Stream& stream, void* dst, Device dst_device, const void* src,
               Device src_device, std::size_t bytes);

enum class Transpose { No, Yes };

// Row-major C[M,N] = alpha * op(A) op(B) + beta * C on raw pointers with leading dimensions:
// OpenBLAS cblas_sgemm on the CPU, cuBLAS on CUDA.
void gemm(const Stream& stream, Transpose ta, Transpose tb, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
          float* c, int64_t ldc);

// Any GemmArgs, batched included, on the stream's device.
void gemm(const Stream& stream, const GemmArgs& args);

// Tensor form: A is [M,K] ([K,M] when transposed), B is [K,N] ([N,K]), C is [M,N]; all 2-D f32.
void gemm(const Stream& stream, Transpose ta, Transpose tb, float alpha, const Tensor& a,
          const Tensor& b, float beta, const Tensor& c);

// Measures GEMM throughput (GFLOP/s) on the stream's device in `precision` (fp32, TF32 tensor
// cores, bf16 operands with f32 accumulation) with square matrices of size n (0: 2048 on the
// CPU, 8192 on CUDA): the peak that MFU is reported against.
double measureGemmPeak(const Stream& stream, Precision precision = Precision::Fp32, int64_t n = 0);

}  // namespace lowband::runtime
