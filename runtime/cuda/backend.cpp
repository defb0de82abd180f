// CUDA runtime, cuBLAS and cuDNN calls behind the plain declarations of backend.h.
#include "runtime/cuda/backend.h"

#include <map>
#include <mutex>
#include <utility>

#include "runtime/cuda/check.h"

namespace lowband::runtime::cuda {

std::string cudaHint(cudaError_t status) {
  switch (status) {
    case cudaErrorInsufficientDriver:
      return ". HINT: no NVIDIA driver is loaded (or it is older than the CUDA runtime); "
             "use `device: cpu`";
    case cudaErrorNoDevice:
      return ". HINT: the driver sees no GPU; check CUDA_VISIBLE_DEVICES and your job's GPU "
             "allocation";
    case cudaErrorMemoryAllocation:
      return ". HINT: reduce data.batch_size or model size, or use inner zero1/zero2";
    default:
      return "";
  }
}

CudaProbe probe() {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    std::string message = std::string("cudaGetDeviceCount returned ") +
                          std::to_string(static_cast<int>(status)) + ", " +
                          cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky-free error so later probes start clean
    return {0, static_cast<int>(status), message};
  }
  if (count == 0)
    return {0, static_cast<int>(cudaErrorNoDevice), "cudaGetDeviceCount found 0 devices"};
  return {count, 0, std::to_string(count) + " device(s)"};
}

void setDevice(int index) { LB_CUDA_CHECK(cudaSetDevice(index)); }

std::string deviceName(int index) {
  cudaDeviceProp prop{};
  LB_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ")";
}

void* streamCreate(int device) {
  setDevice(device);
  cudaStream_t s = nullptr;
  LB_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void streamDestroy(void* stream) {
  LB_CUDA_CHECK(cudaStreamDestroy(static_cast<cudaStream_t>(stream)));
}

void streamSynchronize(void* stream) {
  LB_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

void* eventCreate(int device) {
  setDevice(device);
  cudaEvent_t e = nullptr;
  LB_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

void eventDestroy(void* event) { LB_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event))); }

void eventRecord(void* event, void* stream) {
  LB_CUDA_CHECK(
      cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)));
}

void streamWaitEvent(void* stream, void* event) {
  LB_CUDA_CHECK(
      cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), static_cast<cudaEvent_t>(event), 0));
}

void eventSynchronize(void* event) {
  LB_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

bool eventQuery(void* event) {
  cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (status == cudaErrorNotReady) return false;
  LB_CUDA_CHECK(status);
  return true;
}

float eventElapsedMs(void* start, void* end) {
  float ms = 0;
  LB_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}

void* deviceMalloc(int device, std::size_t bytes) {
  setDevice(device);
  void* p = nullptr;
  cudaError_t status = cudaMalloc(&p, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  LB_CUDA_CHECK(status);
  return p;
}

void deviceFree(int device, void* ptr) {
  setDevice(device);
  LB_CUDA_CHECK(cudaFree(ptr));
}

std::size_t deviceMemoryTotal(int device) {
  setDevice(device);
  std::size_t free_bytes = 0, total = 0;
  LB_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return total;
}

void memcpyAsync(void* dst, const void* src, std::size_t bytes, CopyKind kind, void* stream) {
  cudaMemcpyKind k = kind == CopyKind::HostToDevice   ? cudaMemcpyHostToDevice
                     : kind == CopyKind::DeviceToHost ? cudaMemcpyDeviceToHost
                                                      : cudaMemcpyDeviceToDevice;
  LB_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, static_cast<cudaStream_t>(stream)));
}

namespace {

// One cuBLAS handle per device, created on first use; the stream is set per call.
cublasHandle_t cublasHandle(int device) {
  static std::mutex mutex;
  static std::map<int, cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  setDevice(device);
  cublasHandle_t h = nullptr;
  LB_CUBLAS_CHECK(cublasCreate(&h));
  handles.emplace(device, h);
  return h;
}

}  // namespace

void gemm(int device, void* stream, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
          float* c, int64_t ldc) {
  cublasHandle_t h = cublasHandle(device);
  LB_CUBLAS_CHECK(cublasSetStream(h, static_cast<cudaStream_t>(stream)));
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  LB_CUBLAS_CHECK(cublasSgemm_64(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a,
                                 lda, &beta, c, ldc));
}

namespace {
std::string dotted(int v, int major_div, int minor_div, int minor_mod) {
  return std::to_string(v / major_div) + "." + std::to_string((v / minor_div) % minor_mod);
}
}  // namespace

std::string versionInfo() {
  int runtime = 0, driver = 0;
  LB_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  std::string s = "CUDA runtime " + dotted(runtime, 1000, 10, 100);
  if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0)
    s += ", driver " + dotted(driver, 1000, 10, 100);
  int cublas = 0;
  if (cublasGetProperty(MAJOR_VERSION, &cublas) == CUBLAS_STATUS_SUCCESS) {
    int minor = 0;
    cublasGetProperty(MINOR_VERSION, &minor);
    s += ", cuBLAS " + std::to_string(cublas) + "." + std::to_string(minor);
  }
  std::size_t cudnn = cudnnGetVersion();
  s += ", cuDNN " + std::to_string(cudnn / 10000) + "." + std::to_string((cudnn / 100) % 100) +
       "." + std::to_string(cudnn % 100);
  return s;
}

}  // namespace lowband::runtime::cuda
