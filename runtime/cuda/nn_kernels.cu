// CUDA kernels of runtime/cuda/nn_kernels.h. Equations as in runtime/nn_bodies.h:
//   LayerNorm:  m = mean(x), r = 1 / sqrt(var(x) + eps), out = (x - m) r w + b
//               dx += r (g - mean(g) - xhat mean(g xhat)), g = w dout, xhat = (x - m) r
//               dw += sum_rows dout xhat, db += sum_rows dout
//   softmax rows (causal, row r = h T + t, keys 0..t): P = exp(S - m) / sum, lse = m + log sum
//   cross-entropy: lse_i = log sum_v exp(x_iv), loss_i = lse_i - x_i,target
//                  dx_iv = dloss (exp(x_iv - lse_i) - [v == target_i])
// Reductions: each lane (thread) sums its own elements in index order, then lanes combine by a
// fixed shuffle-down tree whose lane-0 result is broadcast, so every lane of a row uses the
// same value and the bits do not change from run to run.
#include <algorithm>
#include <cmath>
#include <string>

#include "runtime/cuda/check.h"
#include "runtime/cuda/nn_kernels.h"

namespace lowband::runtime::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowThreads = 256;       // 8 warps: 8 rows per block for the warp-per-row kernels
constexpr int64_t kMaxBlocks = 65535;  // grids stop here; the kernels loop over the rest

unsigned blocksFor(int64_t items, int64_t per_block) {
  return static_cast<unsigned>(std::min<int64_t>((items + per_block - 1) / per_block, kMaxBlocks));
}

template <class V>
__device__ V warpSum(V v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_down_sync(0xffffffffu, v, offset);
  return __shfl_sync(0xffffffffu, v, 0);
}

__device__ float warpMax(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, offset));
  return __shfl_sync(0xffffffffu, v, 0);
}

// The block's sum (or max) in every thread; `shared` holds one value per warp.
template <class V, bool kMax>
__device__ V blockReduce(V v, V* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = kMax ? warpMax(v) : warpSum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    V w = lane < warps ? shared[lane] : (kMax ? V(-INFINITY) : V(0));
    w = kMax ? warpMax(w) : warpSum(w);
    if (lane == 0) shared[0] = w;
  }
  __syncthreads();
  v = shared[0];
  __syncthreads();  // `shared` may be reused by the caller's next reduction
  return v;
}

// Warp-per-row loop: each warp takes rows warp_id, warp_id + total warps, ...
#define LB_FOR_EACH_WARP_ROW(row, rows)                                                          \
  for (int64_t row = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp; row < rows; \
       row += int64_t(gridDim.x) * (blockDim.x / kWarp))

__global__ void embeddingForwardKernel(float* out, const int32_t* tokens, const float* wte,
                                       const float* wpe, int64_t N, int64_t T, int64_t C) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < N * C;
       j += int64_t(blockDim.x) * gridDim.x) {
    const int64_t i = j / C, c = j % C;
    out[j] = wte[static_cast<int64_t>(tokens[i]) * C + c] + wpe[(i % T) * C + c];
  }
}

template <class Out>
__global__ void layerNormForwardKernel(Out* out, float* mean, float* rstd, const float* inp,
                                       const float* w, const float* b, int64_t N, int64_t C,
                                       float eps) {
  const int lane = threadIdx.x % kWarp;
  LB_FOR_EACH_WARP_ROW(row, N) {
    const float* x = inp + row * C;
    float s = 0;
    for (int64_t c = lane; c < C; c += kWarp) s += x[c];
    const float m = warpSum(s) / static_cast<float>(C);
    float v = 0;
    for (int64_t c = lane; c < C; c += kWarp) v += (x[c] - m) * (x[c] - m);
    const float r = 1.0f / sqrtf(warpSum(v) / static_cast<float>(C) + eps);
    Out* o = out + row * C;
    for (int64_t c = lane; c < C; c += kWarp) o[c] = fromF32<Out>((x[c] - m) * r * w[c] + b[c]);
    if (lane == 0) {
      mean[row] = m;
      rstd[row] = r;
    }
  }
}

__global__ void layerNormBackwardInputKernel(float* dinp, const float* dout, const float* inp,
                                             const float* w, const float* mean, const float* rstd,
                                             int64_t N, int64_t C) {
  const int lane = threadIdx.x % kWarp;
  LB_FOR_EACH_WARP_ROW(row, N) {
    const float* x = inp + row * C;
    const float* d = dout + row * C;
    const float m = mean[row], r = rstd[row];
    float g_sum = 0, gx_sum = 0;
    for (int64_t c = lane; c < C; c += kWarp) {
      const float g = w[c] * d[c];
      g_sum += g;
      gx_sum += g * (x[c] - m) * r;
    }
    const float g_mean = warpSum(g_sum) / static_cast<float>(C);
    const float gx_mean = warpSum(gx_sum) / static_cast<float>(C);
    float* dx = dinp + row * C;
    for (int64_t c = lane; c < C; c += kWarp) {
      const float xhat = (x[c] - m) * r;
      dx[c] += (w[c] * d[c] - g_mean - xhat * gx_mean) * r;
    }
  }
}

// Column tiles of 32 (a warp reads 32 consecutive floats of a row) x 8 row lanes; block
// (tile, chunk) sums rows [chunk * R, (chunk + 1) * R) of its 32 columns, each row lane every
// 8th row, then the 8 lanes in order. Partial rows are `stride` floats apart.
constexpr int kTileRows = 8;

template <class T>
__global__ void columnSumPartialKernel(float* partial, const T* x, int64_t N, int64_t C) {
  __shared__ float lanes[kTileRows][kWarp + 1];
  const int64_t c = blockIdx.x * int64_t(kWarp) + threadIdx.x;
  for (int64_t k = blockIdx.y; k * kColumnChunkRows < N; k += gridDim.y) {
    const int64_t end = std::min<int64_t>(N, (k + 1) * kColumnChunkRows);
    float s = 0;
    if (c < C)
      for (int64_t i = k * kColumnChunkRows + threadIdx.y; i < end; i += kTileRows)
        s += toF32(x[i * C + c]);
    lanes[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
      float total = 0;
      for (int y = 0; y < kTileRows; ++y) total += lanes[y][threadIdx.x];
      partial[k * C + c] = total;
    }
    __syncthreads();
  }
}

__global__ void layerNormParamsPartialKernel(float* partial, const float* dout, const float* inp,
                                             const float* mean, const float* rstd, int64_t N,
                                             int64_t C) {
  __shared__ float lanes_w[kTileRows][kWarp + 1];
  __shared__ float lanes_b[kTileRows][kWarp + 1];
  const int64_t c = blockIdx.x * int64_t(kWarp) + threadIdx.x;
  for (int64_t k = blockIdx.y; k * kColumnChunkRows < N; k += gridDim.y) {
    const int64_t end = std::min<int64_t>(N, (k + 1) * kColumnChunkRows);
    float sw = 0, sb = 0;
    if (c < C)
      for (int64_t i = k * kColumnChunkRows + threadIdx.y; i < end; i += kTileRows) {
        const float d = dout[i * C + c];
        sw += d * (inp[i * C + c] - mean[i]) * rstd[i];
        sb += d;
      }
    lanes_w[threadIdx.y][threadIdx.x] = sw;
    lanes_b[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
      float tw = 0, tb = 0;
      for (int y = 0; y < kTileRows; ++y) {
        tw += lanes_w[y][threadIdx.x];
        tb += lanes_b[y][threadIdx.x];
      }
      partial[k * 2 * C + c] = tw;
      partial[k * 2 * C + C + c] = tb;
    }
    __syncthreads();
  }
}

// out[c] += sum_k partial[k * stride + c], k ascending.
__global__ void columnSumFinishKernel(float* out, const float* partial, int64_t K, int64_t C,
                                      int64_t stride) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C;
       c += int64_t(blockDim.x) * gridDim.x) {
    float s = 0;
    for (int64_t k = 0; k < K; ++k) s += partial[k * stride + c];
    out[c] += s;
  }
}

dim3 columnGrid(int64_t N, int64_t C) {
  return dim3(static_cast<unsigned>((C + kWarp - 1) / kWarp),
              static_cast<unsigned>(std::min<int64_t>(columnChunks(N), kMaxBlocks)));
}

void checkColumns(int64_t C) {
  LB_REQUIRE((C + kWarp - 1) / kWarp <= 0x7fffffff, ShapeError,
             "column reduction over " + std::to_string(C) + " columns");
}

void finishColumns(cudaStream_t s, float* out, const float* partial, int64_t K, int64_t C,
                   int64_t stride) {
  columnSumFinishKernel<<<blocksFor(C, kRowThreads), kRowThreads, 0, s>>>(out, partial, K, C,
                                                                          stride);
  LB_CUDA_CHECK(cudaGetLastError());
}

__global__ void attentionSoftmaxRowsKernel(float* scores, float* lse_out, const float* lse_in,
                                           int64_t rows, int64_t T) {
  const int lane = threadIdx.x % kWarp;
  LB_FOR_EACH_WARP_ROW(r, rows) {
    float* row = scores + r * T;
    const int64_t valid = r % T + 1;  // keys 0..t
    if (lse_out) {
      float m = -INFINITY;
      for (int64_t s = lane; s < valid; s += kWarp) m = fmaxf(m, row[s]);
      m = warpMax(m);
      float sum = 0;
      for (int64_t s = lane; s < valid; s += kWarp) sum += (row[s] = expf(row[s] - m));
      sum = warpSum(sum);
      const float inv = 1.0f / sum;
      for (int64_t s = lane; s < valid; s += kWarp) row[s] *= inv;
      if (lane == 0) lse_out[r] = m + logf(sum);
    } else {
      const float l = lse_in[r];
      for (int64_t s = lane; s < valid; s += kWarp) row[s] = expf(row[s] - l);
    }
    for (int64_t s = valid + lane; s < T; s += kWarp) row[s] = 0;
  }
}

// A block per row of V classes (Vp columns with padding).
__global__ void crossEntropyForwardKernel(float* losses, float* lse, const float* logits,
                                          const int32_t* targets, int64_t N, int64_t V,
                                          int64_t Vp) {
  __shared__ float shared[kWarp];
  for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
    const float* x = logits + i * Vp;
    float m = -INFINITY;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, x[v]);
    m = blockReduce<float, true>(m, shared);
    float s = 0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) s += expf(x[v] - m);
    s = blockReduce<float, false>(s, shared);
    if (threadIdx.x == 0) {
      const float l = m + logf(s);
      lse[i] = l;
      losses[i] = l - x[targets[i]];
    }
  }
}

template <class Out>
__global__ void crossEntropyBackwardKernel(Out* dlogits, const float* logits, const float* lse,
                                           const int32_t* targets, int64_t N, int64_t V, int64_t Vp,
                                           float dloss) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < N * Vp;
       j += int64_t(blockDim.x) * gridDim.x) {
    const int64_t i = j / Vp, v = j % Vp;
    const float d =
        v < V ? (expf(logits[j] - lse[i]) - (v == targets[i] ? 1.0f : 0.0f)) * dloss : 0.0f;
    dlogits[j] = fromF32<Out>(d);
  }
}

__global__ void sumSquaresPartialKernel(double* partial, const float* x, int64_t n, int64_t chunk) {
  __shared__ double shared[kWarp];
  const int64_t chunks = (n + chunk - 1) / chunk;
  for (int64_t k = blockIdx.x; k < chunks; k += gridDim.x) {
    const int64_t end = std::min<int64_t>(n, (k + 1) * chunk);
    double s = 0;
    for (int64_t i = k * chunk + threadIdx.x; i < end; i += blockDim.x)
      s += static_cast<double>(x[i]) * x[i];
    s = blockReduce<double, false>(s, shared);
    if (threadIdx.x == 0) partial[k] = s;
  }
}

}  // namespace

void embeddingForward(void* stream, float* out, const int32_t* tokens, const float* wte,
                      const float* wpe, int64_t N, int64_t T, int64_t C) {
  if (N <= 0 || C <= 0) return;  // an empty grid is a launch error; nothing to do is not
  embeddingForwardKernel<<<blocksFor(N * C, kRowThreads), kRowThreads, 0,
                           static_cast<cudaStream_t>(stream)>>>(out, tokens, wte, wpe, N, T, C);
  LB_CUDA_CHECK(cudaGetLastError());
}

template <class Out>
void layerNormForward(void* stream, Out* out, float* mean, float* rstd, const float* inp,
                      const float* w, const float* b, int64_t N, int64_t C, float eps) {
  if (N <= 0 || C <= 0) return;
  layerNormForwardKernel<Out>
      <<<blocksFor(N, kRowThreads / kWarp), kRowThreads, 0, static_cast<cudaStream_t>(stream)>>>(
          out, mean, rstd, inp, w, b, N, C, eps);
  LB_CUDA_CHECK(cudaGetLastError());
}

void layerNormBackward(void* stream, float* dinp, float* dw, float* db, const float* dout,
                       const float* inp, const float* w, const float* mean, const float* rstd,
                       int64_t N, int64_t C, float* partial) {
  if (N <= 0 || C <= 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  checkColumns(C);
  layerNormBackwardInputKernel<<<blocksFor(N, kRowThreads / kWarp), kRowThreads, 0, s>>>(
      dinp, dout, inp, w, mean, rstd, N, C);
  LB_CUDA_CHECK(cudaGetLastError());
  layerNormParamsPartialKernel<<<columnGrid(N, C), dim3(kWarp, kTileRows), 0, s>>>(
      partial, dout, inp, mean, rstd, N, C);
  LB_CUDA_CHECK(cudaGetLastError());
  const int64_t K = columnChunks(N);
  finishColumns(s, dw, partial, K, C, 2 * C);
  finishColumns(s, db, partial + C, K, C, 2 * C);
}

template <class T>
void columnSum(void* stream, float* out, const T* x, int64_t N, int64_t C, float* partial) {
  if (N <= 0 || C <= 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  checkColumns(C);
  columnSumPartialKernel<T><<<columnGrid(N, C), dim3(kWarp, kTileRows), 0, s>>>(partial, x, N, C);
  LB_CUDA_CHECK(cudaGetLastError());
  finishColumns(s, out, partial, columnChunks(N), C, C);
}

void attentionSoftmaxRows(void* stream, float* scores, float* lse_out, const float* lse_in,
                          int64_t rows, int64_t T) {
  if (rows <= 0 || T <= 0) return;
  attentionSoftmaxRowsKernel<<<blocksFor(rows, kRowThreads / kWarp), kRowThreads, 0,
                               static_cast<cudaStream_t>(stream)>>>(scores, lse_out, lse_in, rows,
                                                                    T);
  LB_CUDA_CHECK(cudaGetLastError());
}

void crossEntropyForward(void* stream, float* losses, float* lse, const float* logits,
                         const int32_t* targets, int64_t N, int64_t V, int64_t Vp) {
  if (N <= 0) return;
  constexpr int kThreads = 512;
  crossEntropyForwardKernel<<<static_cast<unsigned>(std::min<int64_t>(N, kMaxBlocks)), kThreads, 0,
                              static_cast<cudaStream_t>(stream)>>>(losses, lse, logits, targets, N,
                                                                   V, Vp);
  LB_CUDA_CHECK(cudaGetLastError());
}

template <class Out>
void crossEntropyBackward(void* stream, Out* dlogits, const float* logits, const float* lse,
                          const int32_t* targets, int64_t N, int64_t V, int64_t Vp, float dloss) {
  if (N <= 0 || Vp <= 0) return;
  crossEntropyBackwardKernel<Out>
      <<<blocksFor(N * Vp, kRowThreads), kRowThreads, 0, static_cast<cudaStream_t>(stream)>>>(
          dlogits, logits, lse, targets, N, V, Vp, dloss);
  LB_CUDA_CHECK(cudaGetLastError());
}

void sumSquaresPartial(void* stream, double* partial, const float* x, int64_t n, int64_t chunk) {
  if (n <= 0) return;
  const int64_t chunks = (n + chunk - 1) / chunk;
  sumSquaresPartialKernel<<<static_cast<unsigned>(std::min<int64_t>(chunks, kMaxBlocks)),
                            kRowThreads, 0, static_cast<cudaStream_t>(stream)>>>(partial, x, n,
                                                                                 chunk);
  LB_CUDA_CHECK(cudaGetLastError());
}

template void layerNormForward<float>(void*, float*, float*, float*, const float*, const float*,
                                      const float*, int64_t, int64_t, float);
template void layerNormForward<Bf16>(void*, Bf16*, float*, float*, const float*, const float*,
                                     const float*, int64_t, int64_t, float);
template void columnSum<float>(void*, float*, const float*, int64_t, int64_t, float*);
template void columnSum<Bf16>(void*, float*, const Bf16*, int64_t, int64_t, float*);
template void crossEntropyBackward<float>(void*, float*, const float*, const float*, const int32_t*,
                                          int64_t, int64_t, int64_t, float);
template void crossEntropyBackward<Bf16>(void*, Bf16*, const float*, const float*, const int32_t*,
                                         int64_t, int64_t, int64_t, float);

}  // namespace lowband::runtime::cuda
