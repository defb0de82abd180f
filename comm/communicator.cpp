#include "comm/communicator.h"

#include <algorithm>

#include "comm/serial_worker.h"

namespace lowband::comm {

void addTraffic(TierBytes& total, const TierBytes& part, double times) {
  for (const auto& [tier, bytes] : part) total[tier] += times * bytes;
}

bool PendingWork::isCompleted() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

void PendingWork::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  done_cv_.wait(lock, [&] { return done_; });
  if (error_) std::rethrow_exception(error_);
}

bool PendingWork::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!done_cv_.wait_for(lock, timeout, [&] { return done_; })) return false;
  if (error_) std::rethrow_exception(error_);
  return true;
}

std::exception_ptr PendingWork::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

void PendingWork::complete(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    error_ = error;
  }
  done_cv_.notify_all();
}

SerialWorker::SerialWorker() {
  thread_ = std::thread([this] {
    while (true) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      auto [task, work] = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      std::exception_ptr error;
      try {
        task();
      } catch (...) {
        error = std::current_exception();
      }
      work->complete(error);
    }
  });
}

SerialWorker::~SerialWorker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::shared_ptr<Work> SerialWorker::submit(std::function<void()> task) {
  auto work = std::make_shared<PendingWork>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.emplace_back(std::move(task), work);
  }
  wake_.notify_all();
  return work;
}

namespace {
std::shared_ptr<Work> done() { return std::make_shared<CompletedWork>(); }
}  // namespace

std::shared_ptr<Work> LocalCommunicator::allReduceAsync(float*, int64_t, ReduceOp) {
  return done();
}

std::shared_ptr<Work> LocalCommunicator::reduceScatterAsync(const float* in, float* out, int64_t n,
                                                            ReduceOp) {
  if (in != out) std::copy_n(in, n, out);
  return done();
}

std::shared_ptr<Work> LocalCommunicator::allGatherAsync(const float* in, float* out, int64_t n) {
  if (in != out) std::copy_n(in, n, out);
  return done();
}

std::shared_ptr<Work> LocalCommunicator::broadcastAsync(float*, int64_t, int root) {
  if (root != 0)
    LB_THROW(CommError, "broadcast root " + std::to_string(root) + " on a communicator of 1 rank");
  return done();
}

std::shared_ptr<Work> LocalCommunicator::barrierAsync() { return done(); }

std::shared_ptr<Work> LocalCommunicator::allToAllBytesAsync(const uint8_t* in, uint8_t* out,
                                                            int64_t bytes) {
  if (in != out) std::copy_n(in, bytes, out);
  return done();
}

std::shared_ptr<Work> LocalCommunicator::allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                                             int64_t bytes) {
  if (in != out) std::copy_n(in, bytes, out);
  return done();
}

}  // namespace lowband::comm
