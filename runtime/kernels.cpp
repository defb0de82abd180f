#include "runtime/kernels.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "runtime/bf16.h"
#include "runtime/error.h"
#include "runtime/kernel_bodies.h"
#include "runtime/launch.h"

namespace lowband::runtime {

namespace {

// All tensors of an elementwise op: f32, `n` elements, on the stream's device.
void checkElementwise(const Stream& stream, int64_t n, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    t->checkDType(DType::F32);
    LB_REQUIRE(t->numel() == n, ShapeError,
               "elementwise op on tensors of " + std::to_string(n) + " and " +
                   std::to_string(t->numel()) + " elements");
    LB_REQUIRE(t->device() == stream.device(), DeviceError,
               "tensor on " + t->device().str() + " used on a stream of " + stream.device().str());
  }
}

}  // namespace

void fill(const Stream& stream, const Tensor& x, float value) {
  checkElementwise(stream, x.numel(), {&x});
  launch(stream, x.numel(), bodies::Fill{x.data<float>(), value});
}

void scale(const Stream& stream, const Tensor& x, float a) {
  checkElementwise(stream, x.numel(), {&x});
  launch(stream, x.numel(), bodies::Scale{x.data<float>(), a});
}

void axpy(const Stream& stream, float a, const Tensor& x, const Tensor& y) {
  checkElementwise(stream, y.numel(), {&x, &y});
  launch(stream, y.numel(), bodies::Axpy{a, x.data<float>(), y.data<float>()});
}

void lerp(const Stream& stream, const Tensor& x, const Tensor& y, float w) {
  checkElementwise(stream, x.numel(), {&x, &y});
  launch(stream, x.numel(), bodies::Lerp{x.data<float>(), y.data<float>(), w});
}

void add(const Stream& stream, const Tensor& a, const Tensor& b, const Tensor& out) {
  checkElementwise(stream, out.numel(), {&a, &b, &out});
  launch(stream, out.numel(), bodies::Add{a.data<float>(), b.data<float>(), out.data<float>()});
}

void copy(const Stream& stream, const Tensor& src, const Tensor& dst) {
  LB_REQUIRE(src.dtype() == dst.dtype() && src.numel() == dst.numel(), ShapeError,
             std::string("copy of ") + dtypeName(src.dtype()) + src.shape().str() + " into " +
                 dtypeName(dst.dtype()) + dst.shape().str());
  copyBytes(stream, dst.raw(), dst.device(), src.raw(), src.device(), src.nbytes());
}

void copyBytes(const Stream& stream, void* dst, Device dst_device, const void* src,
               Device src_device, std::size_t bytes) {
  if (bytes == 0) return;
  if (!src_device.isCuda() && !dst_device.isCuda()) {
    std::memmove(dst, src, bytes);
    return;
  }
#if LB_WITH_CUDA
  auto kind = !src_device.isCuda()   ? cuda::CopyKind::HostToDevice
              : !dst_device.isCuda() ? cuda::CopyKind::DeviceToHost
                                     : cuda::CopyKind::DeviceToDevice;
  LB_REQUIRE(stream.device().isCuda(), DeviceError,
             "a copy involving CUDA memory needs a CUDA stream");
  cuda::memcpyAsync(dst, src, bytes, kind, stream.handle());
#else
  (void)stream;
  LB_THROW(DeviceError, "a CUDA tensor was used but this build has no CUDA backend");
#endif
}

void gemm(const Stream& stream, Transpose ta, Transpose tb, float alpha, const Tensor& a,
          const Tensor& b, float beta, const Tensor& c) {
  for (const Tensor* t : {&a, &b, &c}) {
    t->checkDType(DType::F32);
    LB_REQUIRE(t->shape().ndim() == 2, ShapeError,
               "gemm needs 2-D tensors, got " + t->shape().str());
    LB_REQUIRE(t->device() == stream.device(), DeviceError,
               "gemm operand on " + t->device().str() + ", stream on " + stream.device().str());
  }
  const bool trans_a = ta == Transpose::Yes, trans_b = tb == Transpose::Yes;
  const int64_t m = c.shape()[0], n = c.shape()[1];
  const int64_t k = trans_a ? a.shape()[0] : a.shape()[1];
  const int64_t am = trans_a ? a.shape()[1] : a.shape()[0];
  const int64_t bk = trans_b ? b.shape()[1] : b.shape()[0];
  const int64_t bn = trans_b ? b.shape()[0] : b.shape()[1];
  LB_REQUIRE(am == m && bk == k && bn == n, ShapeError,
             "gemm shapes do not match: op(A) " + std::to_string(am) + "x" + std::to_string(k) +
                 ", op(B) " + std::to_string(bk) + "x" + std::to_string(bn) + ", C " +
                 c.shape().str());
  gemm(stream, ta, tb, m, n, k, alpha, a.data<float>(), a.shape()[1], b.data<float>(), b.shape()[1],
       beta, c.data<float>(), n);
}

double measureGemmPeak(const Stream& stream, Precision precision, int64_t n) {
  if (n <= 0) n = stream.device().isCuda() ? 8192 : 2048;
  const bool bf16 = precision == Precision::Bf16;
  const std::size_t in_bytes = n * n * (bf16 ? sizeof(Bf16) : sizeof(float));
  Storage a(stream.device(), in_bytes, stream.handle());
  Storage b(stream.device(), in_bytes, stream.handle());
  Storage c(stream.device(), n * n * sizeof(float), stream.handle());
  Tensor ta(a, DType::F32, {n * n / (bf16 ? 2 : 1)}), tb(b, DType::F32, {n * n / (bf16 ? 2 : 1)});
  fill(stream, ta, 0.5f);  // in bf16: pairs of 0x0000 and 0x3f00 (0 and 0.5), finite either way
  fill(stream, tb, 0.25f);
  GemmArgs g{false, false, n, n, n, 1.0f, a.data(), n, 0, b.data(), n, 0, 0.0f, c.data(), n, 0, 1};
  g.ab_type = bf16 ? DType::BF16 : DType::F32;
  g.tf32 = precision == Precision::Tf32;
  gemm(stream, g);  // warm up (and the cuBLASLt plan)
  stream.synchronize();
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {  // best of several: a busy moment only lowers a sample
    const auto start = std::chrono::steady_clock::now();
    gemm(stream, g);
    stream.synchronize();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  return best;
}

}  // namespace lowband::runtime
