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
#include "schedules/zero.h"

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

// The part every strategy shares: the inner method over the gradient group `comm` each step
// (the replica, or the world for outer ddp): ddp (bucketed all-reduce), zero1 or zero2
// (schedules/zero.h), and the exchange statistics. Subclasses call finishInnerStep() first in
// afterOptimizerStep.
class GradientAveraging : public Strategy {
 public:
  // The gradient group is the replica, or with `world` the whole world (outer ddp: the
  // gradients go across replicas, so their time counts as outer exchange time).
  GradientAveraging(const SyncSettings& s, nn::ParamStore& params, ReplicaGroups& groups,
                    bool world = false);
  void onGradsReady(int group) override {
    if (inner_ != InnerMethod::Zero2) grads_.onGradsReady(group);
  }
  void beforeOptimizerStep() override;
  std::pair<int64_t, int64_t> optimizerRange() const override;
  double gradientNorm(const runtime::Stream& stream) override;
  const SyncStats& stats() const override { return stats_; }
  comm::TierBytes plannedTraffic(int64_t steps) const override;  // the gradients' share
  int64_t gradientExchangesPerStep() const override;
  // The outer-step counters (what metrics report), shared by every method.
  void saveState(runtime::StateDict& out) override;
  void loadState(const runtime::StateDict& in) override;

 protected:
  void finishInnerStep();  // zero: the parameter all-gather

  SyncStats stats_;
  InnerMethod inner_;
  nn::ParamStore& params_;
  GradientSync grads_;
  std::unique_ptr<ZeroShard> zero_;
  // ZeRO's shards over the group (the replica, or the world) as the settings place them.
  std::unique_ptr<ZeroShard> makeZeroShard(const SyncSettings& s, ReplicaGroups& groups,
                                           bool world);
  // Gradient codecs whose error-feedback rounds end with each step's exchange.
  std::vector<comm::CodecCommunicator*> codecs_;
};

}  // namespace lowband::schedules
