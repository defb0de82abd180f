// Collectives with async forms that return a Work handle (PyTorch c10d style).
//
// Contract: every rank of a communicator issues the same collectives in the same order with
// matching sizes (as with MPI and NCCL). An op's buffers must stay alive and untouched until
// its Work has completed, and every Work must be complete (waited for) before its communicator
// is destroyed. Counts are in elements of f32.
//   allReduce:     data[i] = op over ranks of data[i]            (n elements, in place)
//   reduceScatter: out[i] = op over ranks r of in_r[rank * n + i] (in: size * n, out: n)
//   allGather:     out[r * n + i] = in_r[i]                      (in: n, out: size * n)
//   broadcast:     data = data of `root`
//   barrier:       completes once every rank has entered it
//   allToAllBytes: out[r * b + j] = in_r[rank * b + j]        (in, out: size * b bytes)
//   allGatherBytes: out[r * b + j] = in_r[j]                  (in: b bytes, out: size * b)
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "runtime/error.h"

namespace lowband::comm {

LB_DEFINE_ERROR(CommError, "comm");

enum class ReduceOp { Sum, Avg };

// Plans of traffic: the bytes one rank sends per tier (by tier name), as the traffic counters
// (comm/link.h) will count them.
enum class Collective {
  AllReduce,
  ReduceScatter,
  AllGather,
  Broadcast,
  AllToAllBytes,
  AllGatherBytes
};
using TierBytes = std::map<std::string, double>;
// total[tier] += times * part[tier] for every tier of part.
void addTraffic(TierBytes& total, const TierBytes& part, double times = 1);

class Work {
 public:
  virtual ~Work() = default;
  virtual bool isCompleted() const = 0;
  // Blocks until done; rethrows the op's error.
  virtual void wait() = 0;
  // Blocks at most `timeout`; true when the op completed (errors are rethrown).
  virtual bool wait(std::chrono::milliseconds timeout) = 0;
  // The op's error, or null.
  virtual std::exception_ptr error() const = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // for messages: "mpi(world)", "local"

  virtual std::shared_ptr<Work> allReduceAsync(float* data, int64_t n, ReduceOp op) = 0;
  virtual std::shared_ptr<Work> reduceScatterAsync(const float* in, float* out, int64_t n,
                                                   ReduceOp op) = 0;
  virtual std::shared_ptr<Work> allGatherAsync(const float* in, float* out, int64_t n) = 0;
  virtual std::shared_ptr<Work> broadcastAsync(float* data, int64_t n, int root) = 0;
  virtual std::shared_ptr<Work> barrierAsync() = 0;
  // Byte exchanges for encoded (compressed) tensors.
  virtual std::shared_ptr<Work> allToAllBytesAsync(const uint8_t* in, uint8_t* out,
                                                   int64_t bytes) = 0;
  virtual std::shared_ptr<Work> allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                                    int64_t bytes) = 0;

  // Bytes this rank sends per tier for one `op` of n values (f32 ops; per rank for
  // reduce-scatter and all-gather) or n bytes per rank block (byte ops). Communicators whose
  // traffic is not counted (raw MPI, local) plan none.
  virtual TierBytes wireBytes(Collective op, int64_t n) const {
    (void)op;
    (void)n;
    return {};
  }

  void allReduce(float* data, int64_t n, ReduceOp op = ReduceOp::Sum) {
    allReduceAsync(data, n, op)->wait();
  }
  void reduceScatter(const float* in, float* out, int64_t n, ReduceOp op = ReduceOp::Sum) {
    reduceScatterAsync(in, out, n, op)->wait();
  }
  void allGather(const float* in, float* out, int64_t n) { allGatherAsync(in, out, n)->wait(); }
  void broadcast(float* data, int64_t n, int root) { broadcastAsync(data, n, root)->wait(); }
  void barrier() { barrierAsync()->wait(); }
};

// A Work completed by another thread (a progress thread or a worker) through complete().
class PendingWork : public Work {
 public:
  bool isCompleted() const override;
  void wait() override;
  bool wait(std::chrono::milliseconds timeout) override;
  std::exception_ptr error() const override;
  void complete(std::exception_ptr error);

 private:
  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

// A Work that is already finished (size-1 communicators, empty ops).
class CompletedWork : public Work {
 public:
  bool isCompleted() const override { return true; }
  void wait() override {}
  bool wait(std::chrono::milliseconds) override { return true; }
  std::exception_ptr error() const override { return nullptr; }
};

// A communicator of a plan (`lowband plan`): the size and rank of a real one, no peers. Every
// op throws CommError; it counts nothing, like a raw MPI communicator.
class PlannedCommunicator : public Communicator {
 public:
  PlannedCommunicator(int rank, int size, std::string name)
      : rank_(rank), size_(size), name_(std::move(name)) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_ + " (planned)"; }
  std::shared_ptr<Work> allReduceAsync(float*, int64_t, ReduceOp) override { refuse(); }
  std::shared_ptr<Work> reduceScatterAsync(const float*, float*, int64_t, ReduceOp) override {
    refuse();
  }
  std::shared_ptr<Work> allGatherAsync(const float*, float*, int64_t) override { refuse(); }
  std::shared_ptr<Work> broadcastAsync(float*, int64_t, int) override { refuse(); }
  std::shared_ptr<Work> barrierAsync() override { refuse(); }
  std::shared_ptr<Work> allToAllBytesAsync(const uint8_t*, uint8_t*, int64_t) override { refuse(); }
  std::shared_ptr<Work> allGatherBytesAsync(const uint8_t*, uint8_t*, int64_t) override {
    refuse();
  }

 private:
  [[noreturn]] void refuse() const {
    LB_THROW(CommError, name_ + ": a planned communicator cannot run collectives");
  }
  int rank_, size_;
  std::string name_;
};

// The communicator of a single process: every collective is complete at once (all-gather and
// reduce-scatter copy, the others leave the data as it is), so one-process runs take the same
// code path as many.
class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "local"; }
  std::shared_ptr<Work> allReduceAsync(float*, int64_t, ReduceOp) override;
  std::shared_ptr<Work> reduceScatterAsync(const float* in, float* out, int64_t n,
                                           ReduceOp) override;
  std::shared_ptr<Work> allGatherAsync(const float* in, float* out, int64_t n) override;
  std::shared_ptr<Work> broadcastAsync(float*, int64_t, int root) override;
  std::shared_ptr<Work> barrierAsync() override;
  std::shared_ptr<Work> allToAllBytesAsync(const uint8_t* in, uint8_t* out, int64_t bytes) override;
  std::shared_ptr<Work> allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                            int64_t bytes) override;
};

}  // namespace lowband::comm
