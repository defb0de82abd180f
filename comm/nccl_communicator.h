// Collectives on device memory through NCCL (built with the CUDA backend only). The
// communicator has its own CUDA stream; every op first waits (cudaStreamWaitEvent, no host
// sync) for the work already queued on the compute stream given at construction, and its Work
// completes when an event recorded after it on the communicator's stream has. Works must be
// waited for (or completed) before the communicator is destroyed.
// The ncclUniqueId of the group travels over the bootstrap MPI communicator; split() uses
// ncclCommSplit so tier communicators share the parent's resources.
// Watchdog: wait() gives up after `timeout`, aborts the NCCL communicator and the MPI job with
// one message naming the op, the communicator and the time waited.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace lowband::comm {

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(MpiCommunicator& bootstrap, int device, void* compute_stream, std::string name,
                   std::chrono::milliseconds timeout = std::chrono::minutes(5));
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl(" + name_ + ")"; }
  void* stream() const { return stream_; }

  std::shared_ptr<Work> allReduceAsync(float* data, int64_t n, ReduceOp op) override;
  std::shared_ptr<Work> reduceScatterAsync(const float* in, float* out, int64_t n,
                                           ReduceOp op) override;
  std::shared_ptr<Work> allGatherAsync(const float* in, float* out, int64_t n) override;
  std::shared_ptr<Work> broadcastAsync(float* data, int64_t n, int root) override;
  std::shared_ptr<Work> barrierAsync() override;
  std::shared_ptr<Work> allToAllBytesAsync(const uint8_t* in, uint8_t* out, int64_t bytes) override;
  std::shared_ptr<Work> allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                            int64_t bytes) override;

  // Makes `stream` wait (on the device) for the op of `work`, without blocking the host.
  void streamWait(const Work& work, void* stream) const;
  std::unique_ptr<NcclCommunicator> split(int color, int key, std::string name) const;

 private:
  class NcclWork;
  NcclCommunicator(void* comm, int device, void* compute_stream, std::string name,
                   std::chrono::milliseconds timeout);
  void init();
  std::shared_ptr<Work> finish(const char* op, int64_t n);  // records the completion event
  void beginOp() const;  // orders the op after the compute stream's queued work

  void* comm_ = nullptr;  // ncclComm_t
  int device_ = 0;
  void* compute_stream_ = nullptr;
  void* stream_ = nullptr;
  std::string name_;
  std::chrono::milliseconds timeout_;
  int rank_ = 0, size_ = 1;
  float* barrier_scratch_ = nullptr;
};

}  // namespace lowband::comm
