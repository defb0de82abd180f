// GEMM dispatch: OpenBLAS on the CPU, cuBLAS on CUDA.
#include <cblas.h>

#include <limits>

#include "lowband_build.h"
#include "runtime/error.h"
#include "runtime/kernels.h"
#if LB_WITH_CUDA
#include "runtime/cuda/backend.h"
#endif

namespace lowband::runtime {

void gemm(const Stream& stream, Transpose ta, Transpose tb, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
          float* c, int64_t ldc) {
  gemm(stream, GemmArgs{ta == Transpose::Yes, tb == Transpose::Yes, m, n, k, alpha, a, lda, 0, b,
                        ldb, 0, beta, c, ldc, 0, 1});
}

void gemm(const Stream& stream, const GemmArgs& g) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (stream.device().isCuda()) {
#if LB_WITH_CUDA
    cuda::gemm(stream.device().index, stream.handle(), g);
    return;
#else
    LB_THROW(DeviceError, "a CUDA stream was used but this build has no CUDA backend");
#endif
  }
  constexpr int64_t kMax = std::numeric_limits<blasint>::max();
  LB_REQUIRE(
      g.m <= kMax && g.n <= kMax && g.k <= kMax && g.lda <= kMax && g.ldb <= kMax && g.ldc <= kMax,
      ShapeError, "gemm dimension exceeds OpenBLAS's 32-bit index");
  for (int64_t i = 0; i < g.batch; ++i)
    cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                g.trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(g.m),
                static_cast<blasint>(g.n), static_cast<blasint>(g.k), g.alpha, g.a + i * g.stride_a,
                static_cast<blasint>(g.lda), g.b + i * g.stride_b, static_cast<blasint>(g.ldb),
                g.beta, g.c + i * g.stride_c, static_cast<blasint>(g.ldc));
}

}  // namespace lowband::runtime
