#include "comm/mpi_communicator.h"

#include <cstdio>
#include <string>

#include "comm/mpi_runtime.h"

namespace lowband::comm {

using Clock = std::chrono::steady_clock;

enum class OpKind {
  AllReduce,
  ReduceScatter,
  AllGather,
  Broadcast,
  Barrier,
  AllToAllBytes,
  AllGatherBytes
};

const char* opName(OpKind k) {
  switch (k) {
    case OpKind::AllReduce:
      return "all-reduce";
    case OpKind::ReduceScatter:
      return "reduce-scatter";
    case OpKind::AllGather:
      return "all-gather";
    case OpKind::Broadcast:
      return "broadcast";
    case OpKind::Barrier:
      return "barrier";
    case OpKind::AllToAllBytes:
      return "all-to-all";
    case OpKind::AllGatherBytes:
      return "all-gather of bytes";
  }
  return "?";
}

struct MpiCommunicator::Op {
  OpKind kind = OpKind::Barrier;
  const float* in = nullptr;
  float* out = nullptr;
  int64_t n = 0;
  int root = 0;
  ReduceOp reduce = ReduceOp::Sum;
  const uint8_t* bytes_in = nullptr;  // byte ops: n counts bytes
  uint8_t* bytes_out = nullptr;
  MPI_Request request = MPI_REQUEST_NULL;
  Clock::time_point started{};
  std::shared_ptr<PendingWork> work = std::make_shared<PendingWork>();
};

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, std::chrono::milliseconds timeout)
    : name_(std::move(name)), timeout_(timeout) {
  LB_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  // Splits are blocking collectives on the caller's thread; doing them on a duplicate that no
  // other thread uses keeps them out of the progress thread's op order.
  LB_MPI_CHECK(MPI_Comm_dup(comm, &split_comm_));
  LB_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  LB_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  LB_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  // World ranks of the members, for watchdog messages.
  MPI_Group group, world;
  LB_MPI_CHECK(MPI_Comm_group(comm_, &group));
  LB_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world));
  std::vector<int> local(size_);
  for (int i = 0; i < size_; ++i) local[i] = i;
  world_ranks_.resize(size_);
  LB_MPI_CHECK(MPI_Group_translate_ranks(group, size_, local.data(), world, world_ranks_.data()));
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  progress_ = std::thread([this] { progressLoop(); });
}

MpiCommunicator::~MpiCommunicator() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  progress_.join();
  MPI_Comm_free(&comm_);
  MPI_Comm_free(&split_comm_);
}

std::shared_ptr<Work> MpiCommunicator::enqueue(std::shared_ptr<Op> op) {
  if (op->n < 0) LB_THROW(CommError, std::string(opName(op->kind)) + " of a negative count");
  std::shared_ptr<Work> work = op->work;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) LB_THROW(CommError, name() + " is shutting down");
    queue_.push_back(std::move(op));
  }
  wake_.notify_all();
  return work;
}

std::shared_ptr<Work> MpiCommunicator::allReduceAsync(float* data, int64_t n, ReduceOp op) {
  return enqueue(
      std::make_shared<Op>(Op{.kind = OpKind::AllReduce, .out = data, .n = n, .reduce = op}));
}

std::shared_ptr<Work> MpiCommunicator::reduceScatterAsync(const float* in, float* out, int64_t n,
                                                          ReduceOp op) {
  return enqueue(std::make_shared<Op>(
      Op{.kind = OpKind::ReduceScatter, .in = in, .out = out, .n = n, .reduce = op}));
}

std::shared_ptr<Work> MpiCommunicator::allGatherAsync(const float* in, float* out, int64_t n) {
  return enqueue(std::make_shared<Op>(Op{.kind = OpKind::AllGather, .in = in, .out = out, .n = n}));
}

std::shared_ptr<Work> MpiCommunicator::broadcastAsync(float* data, int64_t n, int root) {
  if (root < 0 || root >= size_)
    LB_THROW(CommError, "broadcast root " + std::to_string(root) + " outside " + name() + " of " +
                            std::to_string(size_) + " ranks");
  return enqueue(
      std::make_shared<Op>(Op{.kind = OpKind::Broadcast, .out = data, .n = n, .root = root}));
}

std::shared_ptr<Work> MpiCommunicator::barrierAsync() {
  return enqueue(std::make_shared<Op>(Op{.kind = OpKind::Barrier}));
}

std::shared_ptr<Work> MpiCommunicator::allToAllBytesAsync(const uint8_t* in, uint8_t* out,
                                                          int64_t bytes) {
  return enqueue(std::make_shared<Op>(
      Op{.kind = OpKind::AllToAllBytes, .n = bytes, .bytes_in = in, .bytes_out = out}));
}

std::shared_ptr<Work> MpiCommunicator::allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                                           int64_t bytes) {
  return enqueue(std::make_shared<Op>(
      Op{.kind = OpKind::AllGatherBytes, .n = bytes, .bytes_in = in, .bytes_out = out}));
}

void MpiCommunicator::start(Op& op) {
  op.started = Clock::now();
  const MPI_Count n = op.n;
  switch (op.kind) {
    case OpKind::AllReduce:
      LB_MPI_CHECK(
          MPI_Iallreduce_c(MPI_IN_PLACE, op.out, n, MPI_FLOAT, MPI_SUM, comm_, &op.request));
      break;
    case OpKind::ReduceScatter:
      LB_MPI_CHECK(MPI_Ireduce_scatter_block_c(op.in == op.out ? MPI_IN_PLACE : op.in, op.out, n,
                                               MPI_FLOAT, MPI_SUM, comm_, &op.request));
      break;
    case OpKind::AllGather:
      LB_MPI_CHECK(MPI_Iallgather_c(op.in == op.out + rank_ * op.n ? MPI_IN_PLACE : op.in, n,
                                    MPI_FLOAT, op.out, n, MPI_FLOAT, comm_, &op.request));
      break;
    case OpKind::Broadcast:
      LB_MPI_CHECK(MPI_Ibcast_c(op.out, n, MPI_FLOAT, op.root, comm_, &op.request));
      break;
    case OpKind::Barrier:
      LB_MPI_CHECK(MPI_Ibarrier(comm_, &op.request));
      break;
    case OpKind::AllToAllBytes:
      LB_MPI_CHECK(
          MPI_Ialltoall_c(op.bytes_in, n, MPI_BYTE, op.bytes_out, n, MPI_BYTE, comm_, &op.request));
      break;
    case OpKind::AllGatherBytes:
      LB_MPI_CHECK(MPI_Iallgather_c(op.bytes_in, n, MPI_BYTE, op.bytes_out, n, MPI_BYTE, comm_,
                                    &op.request));
      break;
  }
}

void MpiCommunicator::watchdogAbort(const Op& op, double waited) const {
  std::string ranks;
  for (int r : world_ranks_) {
    if (!ranks.empty()) ranks += ',';
    ranks += std::to_string(r);
  }
  char times[96];
  std::snprintf(times, sizeof times, "%.1f s (comm.timeout %.1f s)", waited,
                std::chrono::duration<double>(timeout_).count());
  const std::string line = "error: comm watchdog on rank " +
                           std::to_string(MpiRuntime::instance().rank()) + ": " + opName(op.kind) +
                           " of " + std::to_string(op.n) + " elements on " + name() +
                           " (world ranks " + ranks + ") not complete after " + times +
                           ": a peer died, hangs, or issued collectives in another order; "
                           "aborting the job";
  abortJob(line, kCommFailureExit);
}

void MpiCommunicator::progressLoop() {
  std::deque<std::shared_ptr<Op>> active;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (active.empty()) wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_ && queue_.empty() && active.empty()) return;
      // Start new ops in issue order; the lock is held so no op can overtake another.
      while (!queue_.empty()) {
        std::shared_ptr<Op> op = std::move(queue_.front());
        queue_.pop_front();
        try {
          start(*op);
          active.push_back(std::move(op));
        } catch (...) {
          op->work->complete(std::current_exception());
        }
      }
    }
    bool progressed = false;
    for (auto it = active.begin(); it != active.end();) {
      Op& op = **it;
      int flag = 0;
      std::exception_ptr error;
      try {
        LB_MPI_CHECK(MPI_Test(&op.request, &flag, MPI_STATUS_IGNORE));
      } catch (...) {
        error = std::current_exception();
        flag = 1;
      }
      if (!flag) {
        const double waited = std::chrono::duration<double>(Clock::now() - op.started).count();
        if (waited > std::chrono::duration<double>(timeout_).count()) watchdogAbort(op, waited);
        ++it;
        continue;
      }
      if (!error && op.reduce == ReduceOp::Avg &&
          (op.kind == OpKind::AllReduce || op.kind == OpKind::ReduceScatter)) {
        const float inv = 1.0f / static_cast<float>(size_);
        for (int64_t i = 0; i < op.n; ++i) op.out[i] *= inv;
      }
      op.work->complete(error);
      it = active.erase(it);
      progressed = true;
    }
    // Keep MPI progressing without taking a whole core from the compute threads.
    if (!progressed && !active.empty()) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(int color, int key,
                                                        std::string name) const {
  MPI_Comm sub = MPI_COMM_NULL;
  LB_MPI_CHECK(MPI_Comm_split(split_comm_, color, key, &sub));
  auto result = std::make_unique<MpiCommunicator>(sub, std::move(name), timeout_);
  MPI_Comm_free(&sub);
  return result;
}

}  // namespace lowband::comm
