#include "comm/link.h"

#include <thread>

namespace lowband::comm {

using Clock = std::chrono::steady_clock;

namespace {
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

// Done when the inner op is done and the emulated link would have delivered it. Records, once,
// how long callers waited and how long the op was in flight without anyone waiting.
class LinkCommunicator::LinkWork : public Work {
 public:
  LinkWork(LinkCommunicator& owner, const char* op, std::shared_ptr<Work> inner,
           Clock::time_point start, Clock::time_point ready)
      : owner_(owner), op_(op), inner_(std::move(inner)), start_(start), ready_(ready) {}

  bool isCompleted() const override { return inner_->isCompleted() && Clock::now() >= ready_; }
  void wait() override {
    const auto t0 = Clock::now();
    inner_->wait();
    std::this_thread::sleep_until(ready_);
    finish(t0);
  }
  bool wait(std::chrono::milliseconds timeout) override {
    const auto t0 = Clock::now();
    if (!inner_->wait(timeout)) return false;
    if (ready_ > t0 + timeout) {
      std::this_thread::sleep_until(t0 + timeout);
      return false;
    }
    std::this_thread::sleep_until(ready_);
    finish(t0);
    return true;
  }
  std::exception_ptr error() const override { return inner_->error(); }

 private:
  void finish(Clock::time_point wait_start) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (recorded_) return;
    recorded_ = true;
    const auto end = Clock::now();
    const double blocked = seconds(end - wait_start);
    owner_.account(op_, blocked, std::max(0.0, seconds(end - start_) - blocked));
  }

  LinkCommunicator& owner_;
  const char* op_;
  std::shared_ptr<Work> inner_;
  Clock::time_point start_, ready_;
  std::mutex mutex_;
  bool recorded_ = false;
};

LinkCommunicator::LinkCommunicator(Communicator& inner, std::string tier, LinkModel model)
    : inner_(inner), tier_(std::move(tier)), model_(model) {}

std::shared_ptr<Work> LinkCommunicator::track(const char* op, double wire,
                                              std::shared_ptr<Work> inner) {
  const auto now = Clock::now();
  auto ready = now;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    OpTraffic& t = traffic_[op];
    ++t.ops;
    t.bytes_sent += wire;
    t.bytes_received += wire;
    if (model_.bandwidth > 0 && size() > 1) {
      const auto begin = std::max(now, link_free_);
      const auto transfer = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(wire / model_.bandwidth));
      link_free_ = begin + transfer;
      ready = link_free_ + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(model_.latency));
    }
  }
  return std::make_shared<LinkWork>(*this, op, std::move(inner), now, ready);
}

void LinkCommunicator::account(const char* op, double blocked, double overlapped) {
  std::lock_guard<std::mutex> lock(mutex_);
  traffic_[op].blocked_s += blocked;
  traffic_[op].overlapped_s += overlapped;
}

std::map<std::string, OpTraffic> LinkCommunicator::traffic() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, OpTraffic> result = traffic_;
  OpTraffic total;
  for (const auto& [op, t] : traffic_) {
    total.ops += t.ops;
    total.bytes_sent += t.bytes_sent;
    total.bytes_received += t.bytes_received;
    total.blocked_s += t.blocked_s;
    total.overlapped_s += t.overlapped_s;
  }
  result["total"] = total;
  return result;
}

double LinkCommunicator::linkWireBytes(Collective op, int ranks, int64_t n) {
  const double p = ranks;
  switch (op) {
    case Collective::AllReduce:
      return 2 * (p - 1) / p * 4.0 * static_cast<double>(n);
    case Collective::ReduceScatter:
    case Collective::AllGather:
      return (p - 1) * 4.0 * static_cast<double>(n);
    case Collective::Broadcast:
      return (p - 1) / p * 4.0 * static_cast<double>(n);
    case Collective::AllToAllBytes:
    case Collective::AllGatherBytes:
      return (p - 1) * static_cast<double>(n);
  }
  return 0;
}

std::shared_ptr<Work> LinkCommunicator::allReduceAsync(float* data, int64_t n, ReduceOp op) {
  return track("all-reduce", linkWireBytes(Collective::AllReduce, size(), n),
               inner_.allReduceAsync(data, n, op));
}

std::shared_ptr<Work> LinkCommunicator::reduceScatterAsync(const float* in, float* out, int64_t n,
                                                           ReduceOp op) {
  return track("reduce-scatter", linkWireBytes(Collective::ReduceScatter, size(), n),
               inner_.reduceScatterAsync(in, out, n, op));
}

std::shared_ptr<Work> LinkCommunicator::allGatherAsync(const float* in, float* out, int64_t n) {
  return track("all-gather", linkWireBytes(Collective::AllGather, size(), n),
               inner_.allGatherAsync(in, out, n));
}

std::shared_ptr<Work> LinkCommunicator::broadcastAsync(float* data, int64_t n, int root) {
  return track("broadcast", linkWireBytes(Collective::Broadcast, size(), n),
               inner_.broadcastAsync(data, n, root));
}

std::shared_ptr<Work> LinkCommunicator::barrierAsync() {
  return track("barrier", 0, inner_.barrierAsync());
}

std::shared_ptr<Work> LinkCommunicator::allToAllBytesAsync(const uint8_t* in, uint8_t* out,
                                                           int64_t bytes) {
  return track("all-to-all", linkWireBytes(Collective::AllToAllBytes, size(), bytes),
               inner_.allToAllBytesAsync(in, out, bytes));
}

std::shared_ptr<Work> LinkCommunicator::allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                                            int64_t bytes) {
  return track("all-gather", linkWireBytes(Collective::AllGatherBytes, size(), bytes),
               inner_.allGatherBytesAsync(in, out, bytes));
}

}  // namespace lowband::comm
