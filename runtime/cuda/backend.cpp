// CUDA runtime, cuBLAS and cuDNN calls behind the plain declarations of backend.h.
#include "runtime/cuda/backend.h"

#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>
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

int computeCapability(int index) {
  int major = 0, minor = 0;
  LB_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index));
  LB_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, index));
  return major * 10 + minor;
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

// Per-device cuBLAS/cuBLASLt handles, the Lt workspace and the Lt plans (descriptors, layouts
// and the heuristic's algorithm) cached per GEMM shape: a training step repeats the same few
// dozen shapes, so the heuristic runs once per shape.
struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

// Shape, leading dimensions, types, bias, TF32 and the pointers' alignments (the heuristic
// picks kernels for the alignment it is told).
using LtKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int,
                         bool, bool, uint32_t, uint32_t, uint32_t, uint32_t>;

struct DeviceBlas {
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 32 << 20;
  std::map<LtKey, LtPlan> plans;
};

std::mutex blas_mutex;

DeviceBlas& deviceBlas(int device) {
  static std::map<int, DeviceBlas> devices;  // lives until exit, like the CUDA context
  auto it = devices.find(device);
  if (it != devices.end()) return it->second;
  setDevice(device);
  DeviceBlas d;
  LB_CUBLAS_CHECK(cublasCreate(&d.blas));
  LB_CUBLAS_CHECK(cublasLtCreate(&d.lt));
  LB_CUDA_CHECK(cudaMalloc(&d.workspace, d.workspace_bytes));
  return devices.emplace(device, d).first->second;
}

cudaDataType_t cudaType(DType t) { return t == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

cublasComputeType_t computeType(const GemmArgs& g) {
  return g.ab_type == DType::F32 && g.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

uint32_t alignmentOf(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS sees our B as its
// first operand and our A as its second, with m and n swapped; our bias over C's columns is
// its bias over the rows of C^T, as the BIAS epilogue wants.
const LtPlan& ltPlan(DeviceBlas& d, const GemmArgs& g) {
  const LtKey key{g.trans_a,
                  g.trans_b,
                  g.m,
                  g.n,
                  g.k,
                  g.lda,
                  g.ldb,
                  g.ldc,
                  static_cast<int>(g.ab_type),
                  static_cast<int>(g.c_type),
                  g.bias != nullptr,
                  g.tf32,
                  alignmentOf(g.a),
                  alignmentOf(g.b),
                  alignmentOf(g.c),
                  g.bias ? alignmentOf(g.bias) : 0u};
  auto it = d.plans.find(key);
  if (it != d.plans.end()) return it->second;
  LtPlan p;
  LB_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, computeType(g), CUDA_R_32F));
  const cublasOperation_t op_first = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  LB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                                 sizeof op_first));
  LB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                                 sizeof op_second));
  if (g.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    LB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                   sizeof epilogue));
    LB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &g.bias, sizeof g.bias));
  }
  // Column-major shapes as stored: our B is [n, k] (or [k, n] when trans_b), our A [k, m]
  // (or [m, k] when trans_a), C [n, m].
  const cudaDataType_t ab = cudaType(g.ab_type), c = cudaType(g.c_type);
  LB_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&p.a, ab, g.trans_b ? g.k : g.n, g.trans_b ? g.n : g.k, g.ldb));
  LB_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&p.b, ab, g.trans_a ? g.m : g.k, g.trans_a ? g.k : g.m, g.lda));
  LB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, c, g.n, g.m, g.ldc));
  cublasLtMatmulPreference_t pref = nullptr;
  LB_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint32_t align_first = std::get<13>(key), align_second = std::get<12>(key),
                 align_c = std::get<14>(key);
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_first},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_second},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c}};
  cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &d.workspace_bytes, sizeof d.workspace_bytes);
  for (const auto& [attribute, value] : alignments)
    if (status == CUBLAS_STATUS_SUCCESS)
      status = cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof value);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (status == CUBLAS_STATUS_SUCCESS)
    status =
        cublasLtMatmulAlgoGetHeuristic(d.lt, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  LB_CUBLAS_CHECK(status);
  if (found == 0)
    throw CublasError("cuBLASLt has no algorithm for a " + std::to_string(g.m) + "x" +
                          std::to_string(g.n) + "x" + std::to_string(g.k) + " " +
                          dtypeName(g.ab_type) + " GEMM with " + dtypeName(g.c_type) + " output" +
                          (g.bias ? " and bias" : "") + (g.tf32 ? " on TF32" : ""),
                      __FILE__, __LINE__);
  p.algo = result.algo;
  return d.plans.emplace(key, p).first->second;
}

}  // namespace

void gemm(int device, void* stream, const GemmArgs& g) {
  std::lock_guard<std::mutex> lock(blas_mutex);
  DeviceBlas& d = deviceBlas(device);
  auto s = static_cast<cudaStream_t>(stream);
  if (g.batch == 1) {
    const LtPlan& p = ltPlan(d, g);
    if (g.bias)  // the plan is shared by every call of its shape; the pointer is this call's
      LB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                     &g.bias, sizeof g.bias));
    LB_CUBLAS_CHECK(cublasLtMatmul(d.lt, p.desc, &g.alpha, g.b, p.a, g.a, p.b, &g.beta, g.c, p.c,
                                   g.c, p.c, &p.algo, d.workspace, d.workspace_bytes, s));
    return;
  }
  LB_CUBLAS_CHECK(cublasSetStream(d.blas, s));
  const cudaDataType_t ab = cudaType(g.ab_type), c = cudaType(g.c_type);
  LB_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
      d.blas, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, g.n,
      g.m, g.k, &g.alpha, g.b, ab, g.ldb, g.stride_b, g.a, ab, g.lda, g.stride_a, &g.beta, g.c, c,
      g.ldc, g.stride_c, g.batch, computeType(g), CUBLAS_GEMM_DEFAULT));
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
