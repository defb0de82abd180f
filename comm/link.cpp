#include "comm/link.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>

#include "comm/mpi_runtime.h"

namespace lowband::comm {

using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::atomic<bool> g_emulation_stopped{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from signal handlers");

bool emulationStopped() { return g_emulation_stopped.load(std::memory_order_relaxed); }

// Sleeps until `until`, in slices: a stop signal arrives on some thread with SA_RESTART, so
// one long sleep would go on for as long as the link model says (hours at a few bit/s).
void sleepUntil(Clock::time_point until) {
  constexpr auto kSlice = std::chrono::milliseconds(50);
  for (auto now = Clock::now(); now < until && !emulationStopped(); now = Clock::now())
    std::this_thread::sleep_until(std::min(until, now + kSlice));
}

bool delivered(Clock::time_point ready) { return emulationStopped() || Clock::now() >= ready; }

std::string bitsPerSecond(double bytes_per_s) {
  static const char* const kUnits[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"};
  double v = bytes_per_s * 8;
  int u = 0;
  for (; v >= 1000 && u < 4; ++u) v /= 1000;
  char text[48];
  std::snprintf(text, sizeof text, "%g%s", v, kUnits[u]);
  return text;
}

std::string span(double s) {
  char text[64];
  if (s < 1e-3)
    std::snprintf(text, sizeof text, "%.0f us", s * 1e6);
  else if (s < 1)
    std::snprintf(text, sizeof text, "%.1f ms", s * 1e3);
  else if (s < 7200)
    std::snprintf(text, sizeof text, "%.1f s", s);
  else
    std::snprintf(text, sizeof text, "%.3g s (%.1f days)", s, s / 86400);
  return text;
}

}  // namespace

void stopLinkEmulation() noexcept { g_emulation_stopped.store(true, std::memory_order_relaxed); }
void resumeLinkEmulation() noexcept { g_emulation_stopped.store(false, std::memory_order_relaxed); }

// Done when the inner op is done and the emulated link would have delivered it. Records, once,
// how long callers waited and how long the op was in flight without anyone waiting.
class LinkCommunicator::LinkWork : public Work {
 public:
  LinkWork(LinkCommunicator& owner, const char* op, std::shared_ptr<Work> inner,
           Clock::time_point start, Clock::time_point ready)
      : owner_(owner), op_(op), inner_(std::move(inner)), start_(start), ready_(ready) {}

  bool isCompleted() const override { return inner_->isCompleted() && delivered(ready_); }
  void wait() override {
    const auto t0 = Clock::now();
    inner_->wait();
    sleepUntil(ready_);
    finish(t0);
  }
  bool wait(std::chrono::milliseconds timeout) override {
    const auto t0 = Clock::now();
    if (!inner_->wait(timeout)) return false;
    sleepUntil(std::min(ready_, t0 + timeout));
    if (!delivered(ready_)) return false;
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
  double queued = 0;  // seconds the op waits for earlier ones on this rank's link
  {
    std::lock_guard<std::mutex> lock(mutex_);
    OpTraffic& t = traffic_[op];
    ++t.ops;
    t.bytes_sent += wire;
    t.bytes_received += wire;
    if (model_.bandwidth > 0 && size() > 1 && !emulationStopped()) {
      const auto begin = std::max(now, link_free_);
      const auto transfer = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(wire / model_.bandwidth));
      link_free_ = begin + transfer;
      ready = link_free_ + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(model_.latency));
      queued = seconds(begin - now);
    }
  }
  // The watchdog of emulated time: the delivery time is known now, so an op that would outlive
  // comm.timeout ends the job at once instead of sleeping that long first.
  const double delay = seconds(ready - now);
  if (model_.timeout > 0 && delay > model_.timeout) {
    char timeout[32];
    std::snprintf(timeout, sizeof timeout, "%.1f s", model_.timeout);
    abortJob("error: comm watchdog on rank " + std::to_string(MpiRuntime::instance().rank()) +
                 ": " + op + " of " + std::to_string(static_cast<int64_t>(wire)) +
                 " bytes on the emulated link '" + tier_ + "' (" + bitsPerSecond(model_.bandwidth) +
                 ", latency " + span(model_.latency) + ") would complete " + span(delay) +
                 " after it was issued" +
                 (queued > 0 ? " (" + span(queued) + " of it behind earlier ops)" : "") +
                 ", more than comm.timeout " + timeout +
                 ": the emulated link is too slow (topology.emulate); raise the tier's bandwidth "
                 "or comm.timeout; aborting the job",
             kCommFailureExit);
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
