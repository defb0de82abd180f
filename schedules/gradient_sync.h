// Inner ddp: gradients averaged over a communicator every step, in buckets of about
// `bucket_bytes` made of whole parameter groups (contiguous in the flat gradient buffer). A
// bucket's all-reduce starts as soon as backward has finished all its groups, so it runs while
// the backward of earlier layers still computes; wait() starts any bucket not started yet and
// waits for all of them:  g = (1 / N) sum over the communicator's ranks of g_r.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "comm/compressed.h"
#include "nn/param_store.h"
#include "schedules/fragments.h"
#include "schedules/strategy.h"

namespace lowband::schedules {

// An exchange in flight, timed from its start to the end of the wait that landed it.
struct Exchange {
  std::shared_ptr<comm::Work> work;
  std::chrono::steady_clock::time_point start;
  explicit operator bool() const { return work != nullptr; }
};
Exchange startExchange(std::shared_ptr<comm::Work> work);
// Waits for `e` if it is in flight, swallowing its error: for destructors, which must not leave
// an op writing into buffers that are about to be freed (nor a communicator with ops pending).
void drain(Exchange& e) noexcept;
// Starts the mean over `comm` of data[0, n) in place: f32, or encoded through `codec` when
// it is given (`slot` keys its error feedback).
Exchange startMean(comm::Communicator& comm, comm::CompressedAllReduce* codec, float* data,
                   int64_t n, int slot);
// The compressed all-reduce of the settings' codec over `comm`, or null for codec none.
std::unique_ptr<comm::CompressedAllReduce> makeCodec(const SyncSettings& s,
                                                     comm::Communicator& comm);
// Waits for `e`, adds the wait to time.blocked_s and the time since its start to
// time.in_flight_s, and clears it.
void land(Exchange& e, ExchangeTime& time);

class GradientSync {
 public:
  GradientSync(nn::ParamStore& params, comm::Communicator& comm, int64_t bucket_bytes,
               ExchangeTime& time);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;
  void onGradsReady(int group);
  void wait();
  int buckets() const { return static_cast<int>(buckets_.size()); }
  comm::TierBytes wireBytesPerStep() const;  // every bucket's all-reduce

 private:
  struct Bucket {
    Span span;
    int groups = 0, ready = 0;
    Exchange exchange;
    bool started = false;
  };
  void start(Bucket& b);

  nn::ParamStore& params_;
  comm::Communicator& comm_;
  ExchangeTime& time_;
  std::vector<Bucket> buckets_;
  std::map<int, int> bucket_of_group_;
};

// The part every strategy shares: gradients averaged over `comm` each step (inner ddp over
// the replica, or over the world for outer ddp) and the exchange statistics.
class GradientAveraging : public Strategy {
 public:
  // `across_replicas`: the gradients go across replicas (outer ddp), so their time counts
  // as outer exchange time.
  GradientAveraging(nn::ParamStore& params, comm::Communicator& comm, int64_t bucket_bytes,
                    bool across_replicas = false)
      : grads_(params, comm, bucket_bytes, across_replicas ? stats_.outer : stats_.inner) {}
  void onGradsReady(int group) override { grads_.onGradsReady(group); }
  void beforeOptimizerStep() override { grads_.wait(); }
  const SyncStats& stats() const override { return stats_; }
  comm::TierBytes plannedTraffic(int64_t steps) const override;  // the gradients' share
  // The outer-step counters (what metrics report), shared by every method.
  void saveState(runtime::StateDict& out) override;
  void loadState(const runtime::StateDict& in) override;

 protected:
  SyncStats stats_;
  GradientSync grads_;
};

}  // namespace lowband::schedules
