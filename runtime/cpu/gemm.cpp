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
  const bool trans_a = ta == Transpose::Yes, trans_b = tb == Transpose::Yes;
  if (m == 0 || n == 0) return;
  if (stream.device().isCuda()) {
#if LB_WITH_CUDA
    cuda::gemm(stream.device().index, stream.handle(), trans_a, trans_b, m, n, k, alpha, a, lda, b,
               ldb, beta, c, ldc);
    return;
#else
    LB_THROW(DeviceError, "a CUDA stream was used but this build has no CUDA backend");
#endif
  }
  constexpr int64_t kMax = std::numeric_limits<blasint>::max();
  LB_REQUIRE(m <= kMax && n <= kMax && k <= kMax && lda <= kMax && ldb <= kMax && ldc <= kMax,
             ShapeError, "gemm dimension exceeds OpenBLAS's 32-bit index");
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

}  // namespace lowband::runtime
