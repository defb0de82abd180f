// Causal bf16 attention through cuDNN 9's runtime-fusion flash-attention engines, built op by
// op with the backend (graph) API the way cudnn-frontend's composite SDPA nodes lower for the
// 9.x backends (no frontend headers here).
//
// Per batch element b and head h, t the query row and s the key column, both in [0, T):
//   forward   S = scale Q K^T                      (f32 accumulation of bf16 Q, K)
//             S[t, s] = lowest float for s > t       (causal: query t sees keys s <= t)
//             P = softmax(S) row-wise, O = P V       (P rounded to bf16 for the second GEMM)
//             lse[t] = max_s S[t, s] + log sum_s exp(S[t, s] - max)   (natural log, f32)
//   backward  P = exp(S - lse)                      (recomputed, masked the same way)
//             dV = P^T dO, dP = dO V^T, delta[t] = rowsum(dO * O)[t], dS = P * (dP - delta)
//             dQ = scale dS K, dK = scale dS^T Q
//
// Forward graph, ops in order (tensors [B, H, T, T] unless said; "v" = virtual f32):
//   MATMUL Q[B,H,T,hd] x K^T[B,H,hd,T] -> S0          (K^T: K's dims and strides 2/3 swapped)
//   POINTWISE MUL S0 * scale -> S1                     (scale: by-value f32 scalar [1,1,1,1])
//   GEN_INDEX(S1, axis 2) -> row (i32); GEN_INDEX(S1, axis 3) -> col (i32)
//   CMP_GE row >= col -> keep (bool); BINARY_SELECT keep ? S1 : lowest -> S2
//   REDUCTION MAX S2 -> M [B,H,T,1]; SUB S2 - M; EXP -> E; REDUCTION ADD E -> Z [B,H,T,1]
//   LOG Z; ADD M + log Z -> Stats (non-virtual f32 [B,H,T,1] = lse); DIV E / Z -> P (bf16)
//   MATMUL P x V[B,H,T,hd] -> O (bf16)
// Backward graph:
//   MUL dO * O -> v; REDUCTION ADD -> v [B,H,T,1]; MUL by 1 -> delta (non-virtual f32 [B,H,T,1],
//   lives in our workspace); MATMUL Q x K^T -> S0; MUL scale; SUB Stats; causal mask as above;
//   EXP -> P; RESHAPE P -> P^T (bf16, strides of the transpose); MATMUL P^T x dO -> dV;
//   MATMUL dO x V^T -> dP; SUB delta; MUL P; MUL scale -> dS; RESHAPE dS -> dS^T (bf16);
//   MATMUL dS^T x Q -> dK; RESHAPE K^T -> K (f32 view); MATMUL dS x K -> dQ.
//   The first choice writes dQ directly (cuDNN's "dP workspace" form, deterministic); if no
//   engine takes it, dS x K goes to a non-virtual f32 accumulator dQacc (in our workspace, zeroed
//   before each run) and IDENTITY dQacc -> dQ (the usual, atomic-accumulating form).
//
// One cudnnHandle per device; the graphs and execution plans are built once per (device, shape,
// direction) behind one mutex and cached (failures too, with their message), so a training step
// only fills a variant pack and executes. The workspace (cuDNN's plus the backward's delta and
// dQacc) is one per-device buffer grown as needed: like the cuBLASLt workspace in backend.cpp it
// assumes one compute stream per device at a time.
#include "runtime/cuda/sdpa.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "runtime/cuda/check.h"

namespace lowband::runtime::cuda {
namespace {

// cudnnBackendSetAttribute / cudnnBackendFinalize checked with the attribute's name in the message.
#define LB_SDPA_SET(desc, name, type, count, values)                       \
  ::lowband::runtime::cuda::checkCudnn(                                    \
      cudnnBackendSetAttribute((desc), (name), (type), (count), (values)), \
      "cudnnBackendSetAttribute(" #name ")", __FILE__, __LINE__)
#define LB_SDPA_FINALIZE(desc, what)                                                             \
  ::lowband::runtime::cuda::checkCudnn(                                                          \
      cudnnBackendFinalize(desc), (std::string("cudnnBackendFinalize(") + (what) + ")").c_str(), \
      __FILE__, __LINE__)

// Owns one backend descriptor; destroyed with its owner, so a build that throws partway leaks
// nothing.
class Descriptor {
 public:
  Descriptor() = default;
  explicit Descriptor(cudnnBackendDescriptorType_t type) {
    LB_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_));
  }
  ~Descriptor() { reset(); }
  Descriptor(Descriptor&& other) noexcept : d_(std::exchange(other.d_, nullptr)) {}
  Descriptor& operator=(Descriptor&& other) noexcept {
    if (this != &other) {
      reset();
      d_ = std::exchange(other.d_, nullptr);
    }
    return *this;
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  cudnnBackendDescriptor_t get() const { return d_; }
  explicit operator bool() const { return d_ != nullptr; }

 private:
  void reset() {
    if (d_ != nullptr) cudnnBackendDestroyDescriptor(d_);  // nothing useful to do on failure
    d_ = nullptr;
  }
  cudnnBackendDescriptor_t d_ = nullptr;
};

// Descriptors owned together and destroyed newest first (plans and ops before the tensors and
// descriptors they were built from).
class DescriptorStack {
 public:
  DescriptorStack() = default;
  DescriptorStack(DescriptorStack&&) noexcept = default;
  DescriptorStack& operator=(DescriptorStack&& other) noexcept {
    clear();
    list_ = std::move(other.list_);
    return *this;
  }
  ~DescriptorStack() { clear(); }

  cudnnBackendDescriptor_t push(Descriptor d) {
    list_.push_back(std::move(d));
    return list_.back().get();
  }

 private:
  void clear() {
    while (!list_.empty()) list_.pop_back();
  }
  std::vector<Descriptor> list_;
};

using Dims = std::array<int64_t, 4>;

// Unique ids of the non-virtual tensors (the variant pack's keys); virtual ones start at 100.
enum Uid : int64_t {
  kQ = 1,
  kK = 2,
  kV = 3,
  kO = 4,
  kStats = 5,
  kScale = 6,
  kMaskValue = 7,
  kdO = 8,
  kdQ = 9,
  kdK = 10,
  kdV = 11,
  kDelta = 12,
  kOne = 13,
  kdQAccum = 14,
  kFirstVirtual = 100,
};

// The tensors and operations of one graph; keeps every descriptor alive as long as the plan.
class GraphBuilder {
 public:
  cudnnBackendDescriptor_t tensor(int64_t uid, cudnnDataType_t type, const Dims& dims,
                                  const Dims& strides, bool is_virtual = false,
                                  bool by_value = false) {
    Descriptor t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t alignment = 16;
    LB_SDPA_SET(t.get(), CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
    LB_SDPA_SET(t.get(), CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data());
    LB_SDPA_SET(t.get(), CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data());
    LB_SDPA_SET(t.get(), CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    LB_SDPA_SET(t.get(), CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
    LB_SDPA_SET(t.get(), CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    LB_SDPA_SET(t.get(), CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    LB_SDPA_FINALIZE(t.get(), "tensor " + std::to_string(uid));
    return own(std::move(t));
  }
  cudnnBackendDescriptor_t scalar(int64_t uid) {
    return tensor(uid, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  }
  cudnnBackendDescriptor_t virt(cudnnDataType_t type, const Dims& dims, const Dims& strides) {
    return tensor(next_virtual_++, type, dims, strides, true);
  }

  // y = mode(x [, b] [, t]); `t` is BINARY_SELECT's condition, `axis` GEN_INDEX's axis.
  void pointwise(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                 cudnnBackendDescriptor_t t, cudnnBackendDescriptor_t y,
                 cudnnDataType_t compute = CUDNN_DATA_FLOAT, int64_t axis = -1) {
    Descriptor pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    LB_SDPA_SET(pw.get(), CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    LB_SDPA_SET(pw.get(), CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    if (mode == CUDNN_POINTWISE_GEN_INDEX)
      LB_SDPA_SET(pw.get(), CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    LB_SDPA_FINALIZE(pw.get(), "pointwise mode " + std::to_string(static_cast<int>(mode)));
    cudnnBackendDescriptor_t pw_raw = own(std::move(pw));

    Descriptor op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    const float one = 1.0f;
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR,
                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw_raw);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &x);
    if (b != nullptr)
      LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                  &b);
    if (t != nullptr)
      LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                  &t);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &y);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one);
    LB_SDPA_FINALIZE(op.get(), "pointwise op mode " + std::to_string(static_cast<int>(mode)));
    ops_.push_back(own(std::move(op)));
  }
  void unary(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    pointwise(mode, x, nullptr, nullptr, y);
  }
  void binary(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
              cudnnBackendDescriptor_t y) {
    pointwise(mode, x, b, nullptr, y);
  }

  // c = a x b over the last two dims, batched over the first two, f32 accumulation.
  void matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
    Descriptor mm(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    LB_SDPA_SET(mm.get(), CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    LB_SDPA_FINALIZE(mm.get(), "matmul descriptor");
    cudnnBackendDescriptor_t mm_raw = own(std::move(mm));

    Descriptor op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &mm_raw);
    LB_SDPA_FINALIZE(op.get(), "matmul op");
    ops_.push_back(own(std::move(op)));
  }

  // y = reduce(x) over the dims where y has extent 1.
  void reduction(cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x,
                 cudnnBackendDescriptor_t y) {
    Descriptor rd(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    LB_SDPA_SET(rd.get(), CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1,
                &mode);
    LB_SDPA_SET(rd.get(), CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    LB_SDPA_FINALIZE(rd.get(), "reduction descriptor");
    cudnnBackendDescriptor_t rd_raw = own(std::move(rd));

    Descriptor op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &x);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &y);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &rd_raw);
    LB_SDPA_FINALIZE(op.get(), "reduction op");
    ops_.push_back(own(std::move(op)));
  }

  // y is x seen through y's dims and strides (here: a transpose of the last two dims).
  void reshape(cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    Descriptor op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    LB_SDPA_SET(op.get(), CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    LB_SDPA_FINALIZE(op.get(), "reshape op");
    ops_.push_back(own(std::move(op)));
  }

  // The operation graph over every op added so far. Returns the status of its finalization
  // (NOT_SUPPORTED when no engine family knows the pattern); other failures throw.
  cudnnStatus_t finalizeGraph(cudnnHandle_t handle, cudnnBackendDescriptor_t* graph) {
    Descriptor g(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    LB_SDPA_SET(g.get(), CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    LB_SDPA_SET(g.get(), CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                static_cast<int64_t>(ops_.size()), ops_.data());
    const cudnnStatus_t status = cudnnBackendFinalize(g.get());
    *graph = own(std::move(g));
    return status;
  }

  DescriptorStack release() { return std::move(owned_); }

 private:
  cudnnBackendDescriptor_t own(Descriptor d) { return owned_.push(std::move(d)); }

  DescriptorStack owned_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  int64_t next_virtual_ = kFirstVirtual;
};

// Layouts of the user tensors, in elements. Q, K, V (and dQ, dK, dV) are strided views into
// qkv [B, T, 3C]; O, dO into [B, T, C]; lse is [B, H, T].
struct Layout {
  int64_t B, T, H, D, C;
  explicit Layout(const SdpaShape& s) : B(s.B), T(s.T), H(s.H), D(s.hd), C(s.H * s.hd) {}
  Dims bhtd() const { return {B, H, T, D}; }
  Dims bhdt() const { return {B, H, D, T}; }
  Dims qkvStrides() const { return {T * 3 * C, D, 3 * C, 1}; }
  Dims qkvTransposedStrides() const { return {T * 3 * C, D, 1, 3 * C}; }
  Dims outStrides() const { return {T * C, D, C, 1}; }
  Dims packedStrides() const { return {H * T * D, T * D, D, 1}; }
  Dims scores() const { return {B, H, T, T}; }
  Dims scoreStrides() const { return {H * T * T, T * T, T, 1}; }
  Dims scoreTransposedStrides() const { return {H * T * T, T * T, 1, T}; }
  Dims rows() const { return {B, H, T, 1}; }
  Dims rowStrides() const { return {H * T, T, 1, 1}; }
};

// S -> S with the keys s > t replaced by the lowest float (GEN_INDEX rows and columns, CMP_GE,
// BINARY_SELECT), as cudnn-frontend's composite diagonal-band mask with right bound 0.
cudnnBackendDescriptor_t causalMask(GraphBuilder& g, const Layout& l, cudnnBackendDescriptor_t s,
                                    cudnnBackendDescriptor_t mask_value) {
  const Dims sd = l.scores(), ss = l.scoreStrides();
  auto row = g.virt(CUDNN_DATA_INT32, sd, ss);
  auto col = g.virt(CUDNN_DATA_INT32, sd, ss);
  auto keep = g.virt(CUDNN_DATA_BOOLEAN, sd, ss);
  auto masked = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr, row, CUDNN_DATA_FLOAT, 2);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr, col, CUDNN_DATA_FLOAT, 3);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, col, nullptr, keep, CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, s, mask_value, keep, masked);
  return masked;
}

void buildForward(GraphBuilder& g, const Layout& l) {
  const Dims sd = l.scores(), ss = l.scoreStrides(), rd = l.rows(), rs = l.rowStrides();
  auto q = g.tensor(kQ, CUDNN_DATA_BFLOAT16, l.bhtd(), l.qkvStrides());
  auto kt = g.tensor(kK, CUDNN_DATA_BFLOAT16, l.bhdt(), l.qkvTransposedStrides());
  auto v = g.tensor(kV, CUDNN_DATA_BFLOAT16, l.bhtd(), l.qkvStrides());
  auto o = g.tensor(kO, CUDNN_DATA_BFLOAT16, l.bhtd(), l.outStrides());
  auto stats = g.tensor(kStats, CUDNN_DATA_FLOAT, rd, rs);
  auto scale = g.scalar(kScale);
  auto mask_value = g.scalar(kMaskValue);

  auto s0 = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.matmul(q, kt, s0);
  auto s1 = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.binary(CUDNN_POINTWISE_MUL, s0, scale, s1);
  auto s2 = causalMask(g, l, s1, mask_value);
  // Softmax with stats: M = max, E = exp(S - M), Z = sum E, lse = M + log Z, P = E / Z.
  auto m = g.virt(CUDNN_DATA_FLOAT, rd, rs);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, s2, m);
  auto centered = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.binary(CUDNN_POINTWISE_SUB, s2, m, centered);
  auto e = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.unary(CUDNN_POINTWISE_EXP, centered, e);
  auto z = g.virt(CUDNN_DATA_FLOAT, rd, rs);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, z);
  auto log_z = g.virt(CUDNN_DATA_FLOAT, rd, rs);
  g.unary(CUDNN_POINTWISE_LOG, z, log_z);
  g.binary(CUDNN_POINTWISE_ADD, m, log_z, stats);
  auto p = g.virt(CUDNN_DATA_BFLOAT16, sd, ss);  // the second GEMM takes P in the I/O type
  g.binary(CUDNN_POINTWISE_DIV, e, z, p);
  g.matmul(p, v, o);
}

void buildBackward(GraphBuilder& g, const Layout& l, bool dq_accumulator) {
  const Dims sd = l.scores(), ss = l.scoreStrides(), rd = l.rows(), rs = l.rowStrides();
  auto q = g.tensor(kQ, CUDNN_DATA_BFLOAT16, l.bhtd(), l.qkvStrides());
  auto kt = g.tensor(kK, CUDNN_DATA_BFLOAT16, l.bhdt(), l.qkvTransposedStrides());
  auto vt = g.tensor(kV, CUDNN_DATA_BFLOAT16, l.bhdt(), l.qkvTransposedStrides());
  auto o = g.tensor(kO, CUDNN_DATA_BFLOAT16, l.bhtd(), l.outStrides());
  auto d_o = g.tensor(kdO, CUDNN_DATA_BFLOAT16, l.bhtd(), l.outStrides());
  auto stats = g.tensor(kStats, CUDNN_DATA_FLOAT, rd, rs);
  auto dq = g.tensor(kdQ, CUDNN_DATA_BFLOAT16, l.bhtd(), l.qkvStrides());
  auto dk = g.tensor(kdK, CUDNN_DATA_BFLOAT16, l.bhtd(), l.qkvStrides());
  auto dv = g.tensor(kdV, CUDNN_DATA_BFLOAT16, l.bhtd(), l.qkvStrides());
  auto delta = g.tensor(kDelta, CUDNN_DATA_FLOAT, rd, rs);
  auto scale = g.scalar(kScale);
  auto mask_value = g.scalar(kMaskValue);
  auto one = g.scalar(kOne);

  // delta = rowsum(dO * O)
  auto prod = g.virt(CUDNN_DATA_FLOAT, l.bhtd(), l.packedStrides());
  g.binary(CUDNN_POINTWISE_MUL, d_o, o, prod);
  auto rowsum = g.virt(CUDNN_DATA_FLOAT, rd, rs);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, prod, rowsum);
  g.binary(CUDNN_POINTWISE_MUL, rowsum, one, delta);

  // P = exp(mask(scale Q K^T) - lse); dV = P^T dO
  auto s0 = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.matmul(q, kt, s0);
  auto s1 = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.binary(CUDNN_POINTWISE_MUL, s0, scale, s1);
  auto s2 = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.binary(CUDNN_POINTWISE_SUB, s1, stats, s2);
  auto s3 = causalMask(g, l, s2, mask_value);
  auto p = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.unary(CUDNN_POINTWISE_EXP, s3, p);
  auto pt = g.virt(CUDNN_DATA_BFLOAT16, sd, l.scoreTransposedStrides());
  g.reshape(p, pt);
  g.matmul(pt, d_o, dv);

  // dS = scale P (dO V^T - delta); dK = dS^T Q; dQ = dS K
  auto dp = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.matmul(d_o, vt, dp);
  auto dp_centered = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.binary(CUDNN_POINTWISE_SUB, dp, delta, dp_centered);
  auto ds_unscaled = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.binary(CUDNN_POINTWISE_MUL, dp_centered, p, ds_unscaled);
  auto ds = g.virt(CUDNN_DATA_FLOAT, sd, ss);
  g.binary(CUDNN_POINTWISE_MUL, ds_unscaled, scale, ds);
  auto dst = g.virt(CUDNN_DATA_BFLOAT16, sd, l.scoreTransposedStrides());
  g.reshape(ds, dst);
  g.matmul(dst, q, dk);
  auto k = g.virt(CUDNN_DATA_FLOAT, l.bhtd(), l.qkvStrides());
  g.reshape(kt, k);
  if (dq_accumulator) {
    auto acc = g.tensor(kdQAccum, CUDNN_DATA_FLOAT, l.bhtd(), l.packedStrides());
    g.matmul(ds, k, acc);
    g.unary(CUDNN_POINTWISE_IDENTITY, acc, dq);
  } else {
    g.matmul(ds, k, dq);
  }
}

enum class Direction { Forward, Backward };

// A built execution plan, or the reason there is none (then `error` is set and thrown on use).
struct Plan {
  std::string error;
  DescriptorStack graph;  // tensors, ops and the operation graph the plan was made from
  Descriptor config;
  Descriptor plan;
  int64_t workspace = 0;        // cuDNN's own workspace bytes
  bool dq_accumulator = false;  // backward: the graph writes dQ through the f32 accumulator
};

using PlanKey = std::tuple<int64_t, int64_t, int64_t, int64_t, Direction>;

struct DeviceSdpa {
  cudnnHandle_t handle = nullptr;
  int sm = 0;  // 10 * major + minor
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  std::map<PlanKey, Plan> plans;
};

std::mutex sdpa_mutex;

std::string versionString(std::size_t v) {
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." +
         std::to_string(v % 100);
}

std::string shapeString(const SdpaShape& s) {
  return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " H=" + std::to_string(s.H) +
         " hd=" + std::to_string(s.hd);
}

// Limits that need neither a GPU nor cuDNN: cuDNN's fused attention takes head dims that are a
// multiple of 8 (which also keeps every q/k/v pointer and row 16-byte aligned in qkv) up to 256,
// and its backward refuses T = 1.
std::string staticReason(const SdpaShape& s) {
  if (s.B < 1 || s.T < 1 || s.H < 1 || s.hd < 1)
    return "attention shape " + shapeString(s) + " has an empty dimension";
  if (s.hd % 8 != 0)
    return "head dim hd=" + std::to_string(s.hd) +
           " is not a multiple of 8 (cuDNN's fused attention needs hd % 8 == 0, which also keeps "
           "the q/k/v rows of qkv 16-byte aligned)";
  if (s.hd > 256)
    return "head dim hd=" + std::to_string(s.hd) +
           " exceeds 256, the largest cuDNN's fused attention takes (128 except on sm_90)";
  if (s.T < 2) return "sequence length T=1: cuDNN's fused attention backward needs T >= 2";
  return "";
}

// Limits of the loaded cuDNN (cudnnGetVersion needs no GPU).
std::string versionReason(const SdpaShape& s, bool backward) {
  const std::size_t v = cudnnGetVersion();
  if (v < 90000) return "cuDNN " + versionString(v) + " is older than 9.0";
  if (v == 91000 || v == 91001)
    return "cuDNN " + versionString(v) +
           " has known bugs in its fused attention (cudnn-frontend refuses 9.10.0/9.10.1); use "
           "9.10.2 or newer";
  // cudnn-frontend adds a padding mask with per-batch lengths T to the backward graph on these
  // versions when T % 128 != 0 (a backend bug); this build does not emit that workaround.
  if (backward && v <= 91500 && s.T % 128 != 0)
    return "cuDNN " + versionString(v) +
           " needs T % 128 == 0 for the fused attention backward (T=" + std::to_string(s.T) +
           "); up to 9.15.0 other lengths need a padding-mask workaround this build does not "
           "emit";
  return "";
}

std::string archReason(int sm, const SdpaShape& s) {
  if (sm < 80)
    return "the GPU is sm_" + std::to_string(sm) +
           "; cuDNN's fused bf16 attention needs sm_80 (Ampere) or newer";
  const int64_t max_hd = sm / 10 == 9 ? 256 : 128;
  if (s.hd > max_hd)
    return "head dim hd=" + std::to_string(s.hd) + " exceeds " + std::to_string(max_hd) +
           ", the largest cuDNN's fused attention (backward) takes on sm_" + std::to_string(sm);
  return "";
}

void requireAligned(const void* p, const char* name) {
  if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0)
    LB_THROW(CudnnError, std::string("sdpa: ") + name +
                             " is not 16-byte aligned (cuDNN's fused attention reads it with "
                             "16-byte vector loads)");
}

DeviceSdpa& deviceSdpa(int device) {
  // Lives until exit, like the CUDA context: destroying descriptors during static destruction
  // could run after cuDNN is unloaded.
  static auto* devices = new std::map<int, DeviceSdpa>();
  LB_CUDA_CHECK(cudaSetDevice(device));
  auto it = devices->find(device);
  if (it != devices->end()) return it->second;
  DeviceSdpa d;
  int major = 0, minor = 0;
  LB_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  LB_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  d.sm = 10 * major + minor;
  LB_CUDNN_CHECK(cudnnCreate(&d.handle));
  return devices->emplace(device, std::move(d)).first->second;
}

// The engine behind an engine config: its global index and whether cuDNN notes it as
// non-deterministic.
std::pair<int64_t, bool> engineInfo(cudnnBackendDescriptor_t config) {
  Descriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t raw = engine.get();
  int64_t count = 0;
  LB_CUDNN_CHECK(cudnnBackendGetAttribute(config, CUDNN_ATTR_ENGINECFG_ENGINE,
                                          CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &count, &raw));
  int64_t index = -1;
  LB_CUDNN_CHECK(cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1,
                                          &count, &index));
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  LB_CUDNN_CHECK(cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                          CUDNN_TYPE_NUMERICAL_NOTE,
                                          CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &count, notes));
  bool nondeterministic = false;
  for (int64_t i = 0; i < count && i < CUDNN_NUMERICAL_NOTE_TYPE_COUNT; ++i)
    nondeterministic |= notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC;
  return {index, nondeterministic};
}

// Asks the heuristics (mode A, then the fallback list) for engine configs of `graph` and keeps
// the first whose execution plan finalizes; with `deterministic_only`, engines noted
// non-deterministic are skipped. Appends what happened to `tried`.
bool choosePlan(cudnnHandle_t handle, cudnnBackendDescriptor_t graph, bool deterministic_only,
                Plan& out, std::string& tried) {
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    const char* mode_name = mode == CUDNN_HEUR_MODE_A ? "heuristics A" : "fallback heuristics";
    Descriptor heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    LB_SDPA_SET(heur.get(), CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                &graph);
    LB_SDPA_SET(heur.get(), CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    const cudnnStatus_t heur_status = cudnnBackendFinalize(heur.get());
    if (heur_status != CUDNN_STATUS_SUCCESS) {
      tried += std::string("; ") + mode_name + ": " + cudnnGetErrorString(heur_status);
      continue;
    }
    int64_t count = 0;
    LB_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
    std::vector<Descriptor> configs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < count; ++i) {
      configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(configs.back().get());
    }
    int64_t returned = 0;
    if (count > 0)
      LB_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned,
                                              raw.data()));
    tried += std::string("; ") + mode_name + ": " + std::to_string(returned) + " config(s)";
    for (int64_t i = 0; i < returned && i < count; ++i) {
      int64_t engine = -1;
      bool nondeterministic = false;
      try {
        std::tie(engine, nondeterministic) = engineInfo(raw[i]);
      } catch (const CudnnError&) {
        // Unknown engine: try it anyway.
      }
      if (deterministic_only && nondeterministic) {
        tried += ", engine " + std::to_string(engine) + " skipped (non-deterministic)";
        continue;
      }
      Descriptor plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      LB_SDPA_SET(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
      LB_SDPA_SET(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw[i]);
      const cudnnStatus_t plan_status = cudnnBackendFinalize(plan.get());
      if (plan_status != CUDNN_STATUS_SUCCESS) {
        tried += ", engine " + std::to_string(engine) + ": " + cudnnGetErrorString(plan_status);
        continue;
      }
      int64_t workspace = 0, got = 0;
      LB_CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                              CUDNN_TYPE_INT64, 1, &got, &workspace));
      out.config = std::move(configs[i]);
      out.plan = std::move(plan);
      out.workspace = workspace;
      return true;
    }
  }
  return false;
}

// Builds the plan for one direction: the forward graph; the backward's deterministic graph,
// then its dQ-accumulator graph. Never throws for "no engine": that lands in Plan::error.
Plan buildPlan(DeviceSdpa& d, int device, const SdpaShape& shape, Direction dir) {
  const Layout layout(shape);
  struct Variant {
    const char* name;
    bool dq_accumulator;
    bool deterministic_only;
  };
  const std::vector<Variant> variants =
      dir == Direction::Forward
          ? std::vector<Variant>{{"forward graph", false, false}}
          : std::vector<Variant>{
                {"backward graph writing dQ directly (deterministic engines)", false, true},
                {"backward graph with the f32 dQ accumulator", true, false}};
  std::string tried;
  for (const Variant& v : variants) {
    tried += std::string(tried.empty() ? "" : " | ") + v.name;
    try {
      GraphBuilder g;
      if (dir == Direction::Forward)
        buildForward(g, layout);
      else
        buildBackward(g, layout, v.dq_accumulator);
      cudnnBackendDescriptor_t graph = nullptr;
      const cudnnStatus_t status = g.finalizeGraph(d.handle, &graph);
      if (status != CUDNN_STATUS_SUCCESS) {
        tried += std::string(": operation graph not finalized: ") + cudnnGetErrorString(status);
        continue;
      }
      Plan plan;
      if (choosePlan(d.handle, graph, v.deterministic_only, plan, tried)) {
        plan.graph = g.release();
        plan.dq_accumulator = v.dq_accumulator;
        return plan;
      }
    } catch (const CudnnError& e) {
      tried += std::string(": ") + e.what();
    }
  }
  Plan failed;
  failed.error = "cuDNN " + versionString(cudnnGetVersion()) + " has no engine for causal bf16 " +
                 (dir == Direction::Forward ? "attention forward" : "attention backward") +
                 " with " + shapeString(shape) + " on device " + std::to_string(device) + " (sm_" +
                 std::to_string(d.sm) + "); tried: " + tried;
  return failed;
}

const Plan& planFor(DeviceSdpa& d, int device, const SdpaShape& s, Direction dir) {
  const PlanKey key{s.B, s.T, s.H, s.hd, dir};
  auto it = d.plans.find(key);
  if (it == d.plans.end()) it = d.plans.emplace(key, buildPlan(d, device, s, dir)).first;
  return it->second;
}

constexpr std::size_t roundUp(std::size_t n) { return (n + 255) / 256 * 256; }

// The per-device workspace, grown to at least `bytes` (the old buffer is freed once the device
// is idle, since work already queued may still use it).
char* workspace(DeviceSdpa& d, std::size_t bytes) {
  if (bytes > d.workspace_bytes) {
    if (d.workspace != nullptr) {
      LB_CUDA_CHECK(cudaDeviceSynchronize());
      LB_CUDA_CHECK(cudaFree(d.workspace));
      d.workspace = nullptr;
      d.workspace_bytes = 0;
    }
    LB_CUDA_CHECK(cudaMalloc(&d.workspace, bytes));
    d.workspace_bytes = bytes;
  }
  return static_cast<char*>(d.workspace);
}

void execute(DeviceSdpa& d, const Plan& plan, void* stream, const std::vector<int64_t>& uids,
             const std::vector<void*>& pointers, void* workspace_ptr) {
  Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  LB_SDPA_SET(pack.get(), CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
              static_cast<int64_t>(uids.size()), uids.data());
  LB_SDPA_SET(pack.get(), CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
              static_cast<int64_t>(pointers.size()), pointers.data());
  LB_SDPA_SET(pack.get(), CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
              &workspace_ptr);
  LB_SDPA_FINALIZE(pack.get(), "variant pack");
  LB_CUDNN_CHECK(cudnnSetStream(d.handle, static_cast<cudaStream_t>(stream)));
  LB_CUDNN_CHECK(cudnnBackendExecute(d.handle, plan.plan.get(), pack.get()));
}

// The plan for a call, or a CudnnError naming why there is none.
const Plan& readyPlan(DeviceSdpa& d, int device, const SdpaShape& s, Direction dir) {
  std::string why = archReason(d.sm, s);
  if (!why.empty()) LB_THROW(CudnnError, why);
  const Plan& plan = planFor(d, device, s, dir);
  if (!plan.error.empty()) LB_THROW(CudnnError, plan.error);
  return plan;
}

void checkCall(const SdpaShape& s, Direction dir) {
  std::string why = staticReason(s);
  if (why.empty()) why = versionReason(s, dir == Direction::Backward);
  if (!why.empty()) LB_THROW(CudnnError, why);
}

void* offsetBytes(const void* p, int64_t bytes) {
  return const_cast<char*>(static_cast<const char*>(p)) + bytes;
}

}  // namespace

std::string sdpaUnsupportedReason(int device, const SdpaShape& shape) {
  std::string why = staticReason(shape);
  if (why.empty()) why = versionReason(shape, true);
  if (!why.empty()) return why;
  try {
    std::lock_guard<std::mutex> lock(sdpa_mutex);
    DeviceSdpa& d = deviceSdpa(device);
    why = archReason(d.sm, shape);
    if (!why.empty()) return why;
    for (Direction dir : {Direction::Forward, Direction::Backward}) {
      const Plan& plan = planFor(d, device, shape, dir);
      if (!plan.error.empty()) return plan.error;
    }
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool sdpaBackwardDeterministic(int device, const SdpaShape& shape) {
  if (!sdpaUnsupportedReason(device, shape).empty()) return false;
  std::lock_guard<std::mutex> lock(sdpa_mutex);
  DeviceSdpa& d = deviceSdpa(device);
  const Plan& plan = planFor(d, device, shape, Direction::Backward);
  return plan.error.empty() && !plan.dq_accumulator;
}

void sdpaForward(int device, void* stream, const SdpaShape& shape, float scale, const void* qkv,
                 void* out, float* lse) {
  checkCall(shape, Direction::Forward);
  requireAligned(qkv, "qkv");
  requireAligned(out, "out");
  requireAligned(lse, "lse");
  const int64_t C = shape.H * shape.hd, bf16 = 2;
  float mask_value = std::numeric_limits<float>::lowest();
  std::lock_guard<std::mutex> lock(sdpa_mutex);
  DeviceSdpa& d = deviceSdpa(device);
  const Plan& plan = readyPlan(d, device, shape, Direction::Forward);
  char* ws = workspace(d, roundUp(static_cast<std::size_t>(plan.workspace)));
  const std::vector<int64_t> uids{kQ, kK, kV, kO, kStats, kScale, kMaskValue};
  const std::vector<void*> pointers{offsetBytes(qkv, 0),
                                    offsetBytes(qkv, C * bf16),
                                    offsetBytes(qkv, 2 * C * bf16),
                                    out,
                                    lse,
                                    &scale,
                                    &mask_value};
  execute(d, plan, stream, uids, pointers, ws);
}

void sdpaBackward(int device, void* stream, const SdpaShape& shape, float scale, const void* qkv,
                  const void* out, const void* dout, const float* lse, void* dqkv) {
  checkCall(shape, Direction::Backward);
  requireAligned(qkv, "qkv");
  requireAligned(out, "out");
  requireAligned(dout, "dout");
  requireAligned(lse, "lse");
  requireAligned(dqkv, "dqkv");
  const int64_t C = shape.H * shape.hd, bf16 = 2;
  float mask_value = std::numeric_limits<float>::lowest(), one = 1.0f;
  std::lock_guard<std::mutex> lock(sdpa_mutex);
  DeviceSdpa& d = deviceSdpa(device);
  const Plan& plan = readyPlan(d, device, shape, Direction::Backward);
  // [cuDNN workspace | delta f32 [B, H, T] | dQ accumulator f32 [B, H, T, hd] (if used)]
  const std::size_t rows = static_cast<std::size_t>(shape.B * shape.H * shape.T);
  const std::size_t delta_at = roundUp(static_cast<std::size_t>(plan.workspace));
  const std::size_t accum_at = delta_at + roundUp(rows * sizeof(float));
  const std::size_t accum_bytes =
      plan.dq_accumulator ? rows * static_cast<std::size_t>(shape.hd) * sizeof(float) : 0;
  char* ws = workspace(d, accum_at + roundUp(accum_bytes));
  std::vector<int64_t> uids{kQ,  kK,  kV,     kO,     kdO,        kStats, kdQ,
                            kdK, kdV, kDelta, kScale, kMaskValue, kOne};
  std::vector<void*> pointers{offsetBytes(qkv, 0),
                              offsetBytes(qkv, C * bf16),
                              offsetBytes(qkv, 2 * C * bf16),
                              offsetBytes(out, 0),
                              offsetBytes(dout, 0),
                              offsetBytes(lse, 0),
                              offsetBytes(dqkv, 0),
                              offsetBytes(dqkv, C * bf16),
                              offsetBytes(dqkv, 2 * C * bf16),
                              ws + delta_at,
                              &scale,
                              &mask_value,
                              &one};
  if (plan.dq_accumulator) {
    // cuDNN before 9.6 expects a zeroed accumulator (cudnn-frontend memsets it there); later
    // versions clear it themselves, so this is only a safety net there.
    LB_CUDA_CHECK(
        cudaMemsetAsync(ws + accum_at, 0, accum_bytes, static_cast<cudaStream_t>(stream)));
    uids.push_back(kdQAccum);
    pointers.push_back(ws + accum_at);
  }
  execute(d, plan, stream, uids, pointers, ws);
}

}  // namespace lowband::runtime::cuda
