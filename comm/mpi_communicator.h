// Collectives over MPI for host memory. Each communicator owns a duplicate of its MPI_Comm and
// one progress thread: ops are started there in the order they were issued (so every rank
// starts them in the same order) as nonblocking MPI calls, and the thread keeps testing them,
// because MPICH advances a nonblocking collective only while some thread is inside MPI. That is
// what lets an all-reduce started before a compute phase finish during it.
// Watchdog: an op not complete after `timeout` aborts the whole job (MPI_Abort) with one
// message naming the op, the communicator, its ranks and the time waited; never a silent hang.
// The job exits kCommFailureExit (2), and the message is out before it ends (abortJob).
#pragma once

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/communicator.h"

namespace lowband::comm {

class MpiCommunicator : public Communicator {
 public:
  // Duplicates `comm`; `name` (e.g. a tier name) appears in messages.
  MpiCommunicator(MPI_Comm comm, std::string name,
                  std::chrono::milliseconds timeout = std::chrono::minutes(5));
  ~MpiCommunicator() override;  // waits for issued ops, then frees the communicator

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi(" + name_ + ")"; }
  const std::vector<int>& worldRanks() const { return world_ranks_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  std::shared_ptr<Work> allReduceAsync(float* data, int64_t n, ReduceOp op) override;
  // `in == out` is allowed (MPI_IN_PLACE: out holds all size * n inputs, result in its first n).
  std::shared_ptr<Work> reduceScatterAsync(const float* in, float* out, int64_t n,
                                           ReduceOp op) override;
  // `in == out + rank * n` is allowed (in place).
  std::shared_ptr<Work> allGatherAsync(const float* in, float* out, int64_t n) override;
  std::shared_ptr<Work> broadcastAsync(float* data, int64_t n, int root) override;
  std::shared_ptr<Work> barrierAsync() override;
  std::shared_ptr<Work> allToAllBytesAsync(const uint8_t* in, uint8_t* out, int64_t bytes) override;
  std::shared_ptr<Work> allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                            int64_t bytes) override;

  // Ranks with the same color form a new communicator, ordered by key (MPI_Comm_split).
  std::unique_ptr<MpiCommunicator> split(int color, int key, std::string name) const;

 private:
  struct Op;
  std::shared_ptr<Work> enqueue(std::shared_ptr<Op> op);
  void progressLoop();
  void start(Op& op);
  [[noreturn]] void watchdogAbort(const Op& op, double waited) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm split_comm_ = MPI_COMM_NULL;  // only split() uses it, on the caller's thread
  std::string name_;
  std::chrono::milliseconds timeout_;
  int rank_ = 0, size_ = 1;
  std::vector<int> world_ranks_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Op>> queue_;
  bool stopping_ = false;
  std::thread progress_;
};

}  // namespace lowband::comm
