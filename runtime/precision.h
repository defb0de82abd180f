// The arithmetic a model trains in (`model.precision`):
//   fp32: f32 everywhere (the CPU's and the PyTorch fixtures' numerics);
//   tf32: as fp32, but CUDA GEMMs take their f32 operands on TF32 tensor cores (the CPU, which
//         has no TF32, computes fp32);
//   bf16: mixed precision as PyTorch autocast does it: bf16 copies of the matmul weights and
//         bf16 activations into GEMMs and attention, f32 accumulation, f32 master weights,
//         gradients, optimizer state, residual stream and LayerNorm/softmax/cross-entropy math.
#pragma once

namespace lowband::runtime {

enum class Precision { Fp32, Tf32, Bf16 };

inline const char* precisionName(Precision p) {
  return p == Precision::Fp32 ? "fp32" : p == Precision::Tf32 ? "tf32" : "bf16";
}

}  // namespace lowband::runtime
