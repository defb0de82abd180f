// GEMM dispatch: OpenBLAS on the CPU, cuBLASLt/cuBLAS on CUDA. Debian's OpenBLAS has no bf16
// GEMM, so bf16 operands are widened to f32 first: a bf16 x bf16 product is exact in f32, so
// this is the GPU's "bf16 inputs, f32 accumulation" up to the order of the sums.
#include <cblas.h>

#include <limits>
#include <string>
#include <vector>

#include "lowband_build.h"
#include "runtime/bf16.h"
#include "runtime/error.h"
#include "runtime/kernels.h"
#if LB_WITH_CUDA
#include "runtime/cuda/backend.h"
#endif

namespace lowband::runtime {

namespace {

void checkGemmArgs(const GemmArgs& g) {
  auto supported = [](DType t) { return t == DType::F32 || t == DType::BF16; };
  LB_REQUIRE(supported(g.ab_type) && supported(g.c_type), ShapeError,
             std::string("gemm supports f32 and bf16 operands, got ") + dtypeName(g.ab_type) +
                 " x " + dtypeName(g.c_type));
  LB_REQUIRE(g.c_type == DType::F32 || g.beta == 0.0f, ShapeError,
             "a bf16 gemm output cannot be accumulated into (beta must be 0)");
  LB_REQUIRE(!g.bias || g.batch == 1, ShapeError, "gemm bias needs batch 1");
}

const char* at(const void* p, int64_t elements, DType t) {
  return static_cast<const char*>(p) + elements * static_cast<int64_t>(dtypeSize(t));
}

// The f32 values of `rows` x `cols` bf16 elements with leading dimension ld, packed densely.
void widen(std::vector<float>& out, const void* src, int64_t rows, int64_t cols, int64_t ld) {
  out.resize(static_cast<std::size_t>(rows * cols));
  const auto* x = static_cast<const Bf16*>(src);
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = toF32(x[r * ld + c]);
}

void cpuGemm(const GemmArgs& g) {
  constexpr int64_t kMax = std::numeric_limits<blasint>::max();
  LB_REQUIRE(
      g.m <= kMax && g.n <= kMax && g.k <= kMax && g.lda <= kMax && g.ldb <= kMax && g.ldc <= kMax,
      ShapeError, "gemm dimension exceeds OpenBLAS's 32-bit index");
  const bool bf16_in = g.ab_type == DType::BF16, bf16_out = g.c_type == DType::BF16;
  std::vector<float> a32, b32, c32;
  for (int64_t i = 0; i < g.batch; ++i) {
    const float* a = reinterpret_cast<const float*>(at(g.a, i * g.stride_a, g.ab_type));
    const float* b = reinterpret_cast<const float*>(at(g.b, i * g.stride_b, g.ab_type));
    int64_t lda = g.lda, ldb = g.ldb, ldc = g.ldc;
    if (bf16_in) {
      const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
      const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
      widen(a32, at(g.a, i * g.stride_a, g.ab_type), a_rows, a_cols, g.lda);
      widen(b32, at(g.b, i * g.stride_b, g.ab_type), b_rows, b_cols, g.ldb);
      a = a32.data();
      b = b32.data();
      lda = a_cols;
      ldb = b_cols;
    }
    char* c_at = const_cast<char*>(at(g.c, i * g.stride_c, g.c_type));
    float* c = reinterpret_cast<float*>(c_at);
    if (bf16_out) {
      c32.resize(static_cast<std::size_t>(g.m * g.n));
      c = c32.data();
      ldc = g.n;
    }
    cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                g.trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(g.m),
                static_cast<blasint>(g.n), static_cast<blasint>(g.k), g.alpha, a,
                static_cast<blasint>(lda), b, static_cast<blasint>(ldb), g.beta, c,
                static_cast<blasint>(ldc));
    if (!g.bias && !bf16_out) continue;
    // Bias, then the one rounding of a bf16 output.
    const auto* bias32 = static_cast<const float*>(g.bias);
    const auto* bias16 = static_cast<const Bf16*>(g.bias);
    auto* out16 = reinterpret_cast<Bf16*>(c_at);
#pragma omp parallel for schedule(static) if (g.m * g.n >= (1 << 16))
    for (int64_t r = 0; r < g.m; ++r)
      for (int64_t col = 0; col < g.n; ++col) {
        float v = c[r * ldc + col];
        if (g.bias) v += bf16_out ? toF32(bias16[col]) : bias32[col];
        if (bf16_out)
          out16[r * g.ldc + col] = fromF32<Bf16>(v);
        else
          c[r * ldc + col] = v;
      }
  }
}

}  // namespace

void gemm(const Stream& stream, Transpose ta, Transpose tb, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
          float* c, int64_t ldc) {
  gemm(stream, GemmArgs{ta == Transpose::Yes, tb == Transpose::Yes, m, n, k, alpha, a, lda, 0, b,
                        ldb, 0, beta, c, ldc, 0, 1});
}

void gemm(const Stream& stream, const GemmArgs& g) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  checkGemmArgs(g);
  if (stream.device().isCuda()) {
#if LB_WITH_CUDA
    cuda::gemm(stream.device().index, stream.handle(), g);
    return;
#else
    LB_THROW(DeviceError, "a CUDA stream was used but this build has no CUDA backend");
#endif
  }
  cpuGemm(g);
}

}  // namespace lowband::runtime
