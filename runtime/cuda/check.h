// Status checks for CUDA runtime, cuBLAS and cuDNN calls. Each failing call throws the matching
// runtime::Error subclass with file:line, the call text and the library's own message.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "runtime/error.h"

namespace lowband::runtime::cuda {

std::string cudaHint(cudaError_t status);

inline void checkCuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  throw CudaError(std::string(call) + " failed: " + cudaGetErrorString(status) + " (" +
                      cudaGetErrorName(status) + " = " + std::to_string(static_cast<int>(status)) +
                      ")" + cudaHint(status),
                  file, line);
}

inline void checkCublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw CublasError(std::string(call) + " failed: " + cublasGetStatusString(status) + " (" +
                        cublasGetStatusName(status) + ")",
                    file, line);
}

inline void checkCudnn(cudnnStatus_t status, const char* call, const char* file, int line) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  throw CudnnError(std::string(call) + " failed: " + cudnnGetErrorString(status), file, line);
}

}  // namespace lowband::runtime::cuda

#define LB_CUDA_CHECK(call) ::lowband::runtime::cuda::checkCuda((call), #call, __FILE__, __LINE__)
#define LB_CUBLAS_CHECK(call) \
  ::lowband::runtime::cuda::checkCublas((call), #call, __FILE__, __LINE__)
#define LB_CUDNN_CHECK(call) ::lowband::runtime::cuda::checkCudnn((call), #call, __FILE__, __LINE__)
