// Per-tier traffic counters and link emulation, as one decorator over any Communicator.
//
// Wire bytes per rank and op (what one rank sends; the same arrives), n = bytes of the tensor
// (f32 ops) or of one rank's block (byte ops), P ranks:
//   all-reduce 2 (P-1)/P n; reduce-scatter, all-gather, all-to-all (P-1) n per rank block;
//   broadcast (P-1)/P n; barrier 0.
// Emulation (topology.emulate): an op issued at t completes no earlier than
//   begin + wire / bandwidth + latency,  begin = max(t, when this rank's link is free),
// and the link is then busy until begin + wire / bandwidth: one token bucket per rank and tier,
// shared by concurrent ops, so a study on one machine behaves like the declared cluster.
// An op the model delivers more than `timeout` after it was issued ends the job at once, as the
// MPI watchdog ends one stuck that long, with a message naming the emulated link and its
// bandwidth. Waits sleep in short slices and end as soon as stopLinkEmulation() is called.
// Counters: bytes sent/received, ops, time callers were blocked in wait(), and time the op was
// in flight while nobody waited for it (overlapped with compute).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "comm/communicator.h"

namespace lowband::comm {

struct OpTraffic {
  int64_t ops = 0;
  double bytes_sent = 0;
  double bytes_received = 0;
  double blocked_s = 0;
  double overlapped_s = 0;
};

struct LinkModel {
  double bandwidth = 0;  // bytes per second per rank; 0 = no emulation
  double latency = 0;    // seconds
  double timeout = 0;    // seconds (comm.timeout); 0 = none
};

// Ends every emulated wait now and delays no later op, in every LinkCommunicator of the process
// (async-signal-safe): a stop signal must not wait hours for a slow emulated link before the
// step boundary where it is acted on. Emulation only adds time, so results stay the same.
// resumeLinkEmulation() turns emulation back on (a new run).
void stopLinkEmulation() noexcept;
void resumeLinkEmulation() noexcept;

class LinkCommunicator : public Communicator {
 public:
  // `inner` is not owned. With model.bandwidth > 0 ops are slowed to the model.
  LinkCommunicator(Communicator& inner, std::string tier, LinkModel model = {});

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string name() const override { return tier_; }

  std::shared_ptr<Work> allReduceAsync(float* data, int64_t n, ReduceOp op) override;
  std::shared_ptr<Work> reduceScatterAsync(const float* in, float* out, int64_t n,
                                           ReduceOp op) override;
  std::shared_ptr<Work> allGatherAsync(const float* in, float* out, int64_t n) override;
  std::shared_ptr<Work> broadcastAsync(float* data, int64_t n, int root) override;
  std::shared_ptr<Work> barrierAsync() override;
  std::shared_ptr<Work> allToAllBytesAsync(const uint8_t* in, uint8_t* out, int64_t bytes) override;
  std::shared_ptr<Work> allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                            int64_t bytes) override;

  TierBytes wireBytes(Collective op, int64_t n) const override {
    return {{tier_, linkWireBytes(op, size(), n)}};
  }
  // The formula above for P ranks.
  static double linkWireBytes(Collective op, int p, int64_t n);

  // Counters by op name ("all-reduce", ...); "total" sums them.
  std::map<std::string, OpTraffic> traffic() const;

 private:
  class LinkWork;
  std::shared_ptr<Work> track(const char* op, double wire_bytes, std::shared_ptr<Work> inner);
  void account(const char* op, double blocked, double overlapped);

  Communicator& inner_;
  std::string tier_;
  LinkModel model_;
  mutable std::mutex mutex_;
  std::chrono::steady_clock::time_point link_free_{};
  std::map<std::string, OpTraffic> traffic_;
};

}  // namespace lowband::comm
