#include "comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <thread>

#include "comm/mpi_runtime.h"
#include "runtime/cuda/check.h"

namespace lowband::comm {

namespace {

void checkNccl(ncclResult_t r, const char* call, const char* file, int line) {
  if (r == ncclSuccess) return;
  throw NcclError(
      std::string(call) + " failed: " + ncclGetErrorString(r) + " (" +
          std::to_string(static_cast<int>(r)) + ")" +
          (r == ncclSystemError || r == ncclRemoteError
               ? ". HINT: set NCCL_DEBUG=WARN and check NCCL_SOCKET_IFNAME / NCCL_IB_HCA"
               : ""),
      file, line);
}

#define LB_NCCL_CHECK(call) checkNccl((call), #call, __FILE__, __LINE__)

ncclComm_t asComm(void* c) { return static_cast<ncclComm_t>(c); }
cudaStream_t asStream(void* s) { return static_cast<cudaStream_t>(s); }
ncclRedOp_t redOp(ReduceOp op) { return op == ReduceOp::Avg ? ncclAvg : ncclSum; }

}  // namespace

class NcclCommunicator::NcclWork : public Work {
 public:
  NcclWork(const NcclCommunicator& owner, const char* op, int64_t n, cudaEvent_t event)
      : owner_(owner), op_(op), n_(n), event_(event), start_(std::chrono::steady_clock::now()) {}
  ~NcclWork() override { cudaEventDestroy(event_); }
  bool isCompleted() const override {
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) return false;
    LB_CUDA_CHECK(status);
    return true;
  }
  void wait() override {
    if (!wait(owner_.timeout_)) watchdog();
  }
  bool wait(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!isCompleted()) {
      ncclResult_t async = ncclSuccess;
      LB_NCCL_CHECK(ncclCommGetAsyncError(asComm(owner_.comm_), &async));
      LB_NCCL_CHECK(async);
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return true;
  }
  std::exception_ptr error() const override { return nullptr; }
  cudaEvent_t event() const { return event_; }

 private:
  [[noreturn]] void watchdog() const {
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    char line[512];
    std::snprintf(line, sizeof line,
                  "error: comm watchdog on rank %d: %s of %lld elements on %s not complete after "
                  "%.1f s (comm.timeout): a peer died, hangs, or issued collectives in another "
                  "order; aborting the job",
                  MpiRuntime::instance().rank(), op_, static_cast<long long>(n_),
                  owner_.name().c_str(), waited);
    abortJob(line, kCommFailureExit, [&] { ncclCommAbort(asComm(owner_.comm_)); });
  }
  const NcclCommunicator& owner_;
  const char* op_;
  int64_t n_;
  cudaEvent_t event_;
  std::chrono::steady_clock::time_point start_;
};

NcclCommunicator::NcclCommunicator(MpiCommunicator& bootstrap, int device, void* compute_stream,
                                   std::string name, std::chrono::milliseconds timeout)
    : device_(device), compute_stream_(compute_stream), name_(std::move(name)), timeout_(timeout) {
  LB_CUDA_CHECK(cudaSetDevice(device_));
  ncclUniqueId id;
  if (bootstrap.rank() == 0) LB_NCCL_CHECK(ncclGetUniqueId(&id));
  // The id is 128 bytes; it travels as floats through the bootstrap's broadcast.
  static_assert(sizeof(ncclUniqueId) % sizeof(float) == 0);
  bootstrap.broadcast(reinterpret_cast<float*>(&id), sizeof id / sizeof(float), 0);
  ncclComm_t comm = nullptr;
  LB_NCCL_CHECK(ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()));
  comm_ = comm;
  init();
}

NcclCommunicator::NcclCommunicator(void* comm, int device, void* compute_stream, std::string name,
                                   std::chrono::milliseconds timeout)
    : comm_(comm),
      device_(device),
      compute_stream_(compute_stream),
      name_(std::move(name)),
      timeout_(timeout) {
  init();
}

void NcclCommunicator::init() {
  LB_CUDA_CHECK(cudaSetDevice(device_));
  LB_NCCL_CHECK(ncclCommUserRank(asComm(comm_), &rank_));
  LB_NCCL_CHECK(ncclCommCount(asComm(comm_), &size_));
  cudaStream_t s = nullptr;
  LB_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;
  LB_CUDA_CHECK(cudaMalloc(&barrier_scratch_, sizeof(float)));
}

NcclCommunicator::~NcclCommunicator() {
  cudaSetDevice(device_);
  cudaStreamSynchronize(asStream(stream_));
  ncclCommDestroy(asComm(comm_));
  cudaFree(barrier_scratch_);
  cudaStreamDestroy(asStream(stream_));
}

void NcclCommunicator::beginOp() const {
  LB_CUDA_CHECK(cudaSetDevice(device_));
  // No compute stream given: order after the legacy default stream (handle 0).
  cudaEvent_t ready;
  LB_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  LB_CUDA_CHECK(cudaEventRecord(ready, asStream(compute_stream_)));
  LB_CUDA_CHECK(cudaStreamWaitEvent(asStream(stream_), ready, 0));
  LB_CUDA_CHECK(cudaEventDestroy(ready));  // released once the wait has been enqueued
}

std::shared_ptr<Work> NcclCommunicator::finish(const char* op, int64_t n) {
  cudaEvent_t done;
  LB_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  LB_CUDA_CHECK(cudaEventRecord(done, asStream(stream_)));
  return std::make_shared<NcclWork>(*this, op, n, done);
}

std::shared_ptr<Work> NcclCommunicator::allReduceAsync(float* data, int64_t n, ReduceOp op) {
  beginOp();
  LB_NCCL_CHECK(
      ncclAllReduce(data, data, n, ncclFloat, redOp(op), asComm(comm_), asStream(stream_)));
  return finish("all-reduce", n);
}

std::shared_ptr<Work> NcclCommunicator::reduceScatterAsync(const float* in, float* out, int64_t n,
                                                           ReduceOp op) {
  beginOp();
  LB_NCCL_CHECK(
      ncclReduceScatter(in, out, n, ncclFloat, redOp(op), asComm(comm_), asStream(stream_)));
  return finish("reduce-scatter", n);
}

std::shared_ptr<Work> NcclCommunicator::allGatherAsync(const float* in, float* out, int64_t n) {
  beginOp();
  LB_NCCL_CHECK(ncclAllGather(in, out, n, ncclFloat, asComm(comm_), asStream(stream_)));
  return finish("all-gather", n);
}

std::shared_ptr<Work> NcclCommunicator::broadcastAsync(float* data, int64_t n, int root) {
  if (root < 0 || root >= size_)
    LB_THROW(CommError, "broadcast root " + std::to_string(root) + " outside " + name());
  beginOp();
  LB_NCCL_CHECK(ncclBroadcast(data, data, n, ncclFloat, root, asComm(comm_), asStream(stream_)));
  return finish("broadcast", n);
}

std::shared_ptr<Work> NcclCommunicator::barrierAsync() {
  beginOp();
  LB_NCCL_CHECK(ncclAllReduce(barrier_scratch_, barrier_scratch_, 1, ncclFloat, ncclSum,
                              asComm(comm_), asStream(stream_)));
  return finish("barrier", 0);
}

std::shared_ptr<Work> NcclCommunicator::allToAllBytesAsync(const uint8_t* in, uint8_t* out,
                                                           int64_t bytes) {
  beginOp();
  LB_NCCL_CHECK(ncclGroupStart());
  for (int r = 0; r < size_; ++r) {
    LB_NCCL_CHECK(ncclSend(in + r * bytes, bytes, ncclUint8, r, asComm(comm_), asStream(stream_)));
    LB_NCCL_CHECK(ncclRecv(out + r * bytes, bytes, ncclUint8, r, asComm(comm_), asStream(stream_)));
  }
  LB_NCCL_CHECK(ncclGroupEnd());
  return finish("all-to-all", bytes);
}

std::shared_ptr<Work> NcclCommunicator::allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                                            int64_t bytes) {
  beginOp();
  LB_NCCL_CHECK(ncclAllGather(in, out, bytes, ncclUint8, asComm(comm_), asStream(stream_)));
  return finish("all-gather of bytes", bytes);
}

void NcclCommunicator::streamWait(const Work& work, void* stream) const {
  const auto* nw = dynamic_cast<const NcclWork*>(&work);
  if (!nw) LB_THROW(CommError, "streamWait needs a Work of this NCCL communicator");
  LB_CUDA_CHECK(cudaStreamWaitEvent(asStream(stream), nw->event(), 0));
}

std::unique_ptr<NcclCommunicator> NcclCommunicator::split(int color, int key,
                                                          std::string name) const {
  ncclComm_t sub = nullptr;
  LB_NCCL_CHECK(ncclCommSplit(asComm(comm_), color, key, &sub, nullptr));
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(sub, device_, compute_stream_, std::move(name), timeout_));
}

}  // namespace lowband::comm
