// CO2: outer updates fully overlapped with the next round's compute, applied one round late
// with a staleness gap penalty and outer momentum clipping. Round k = H inner steps; every
// replica starts it from x_o(k) and ends it at x_r(k). At the end of round k, per element:
//   k >= 1:  xbar(k-1) = (1/M) sum_r x_r(k-1)     (the all-reduce started at the end of k-1)
//   start the all-reduce of a snapshot of x_r(k)  (it runs during round k+1)
//   k >= 1:  Delta = x_o(k-1) - xbar(k-1);  g = x_o(k) - x_o(k-1)
//            Lambda = 1 / (1 + |g| / (eps + u))    penalty gap, u = mean over the updates
//                                                  applied so far of mean_i |x_o(j+1) - x_o(j)|
//            Lambda = 1 / divisor                  penalty constant;   Lambda = 1: none
//            m = beta m + Lambda * Delta
//            m = clamp(m, -phi, phi)               clip value;   m *= min(1, phi / ||m||): norm
//            x_o(k+1) = x_o(k) - lr m
//   k = 0:   x_o(1) = x_o(0)                       (no stale result yet)
//   every replica continues from x_o(k+1).
// beta = sync.outer.optimizer.momentum, lr = sync.outer.optimizer.lr. finish() lands the last
// exchange and applies it the same way. The means and norms are over the whole model (the
// replica's shards summed with one all-reduce of two floats); x_o, x_o(k-1), m and the two
// snapshots (landing, in flight) are held as this rank's shard only.
#pragma once

#include "schedules/fragments.h"
#include "schedules/gradient_sync.h"
#include "schedules/strategy.h"

namespace lowband::schedules {

class Co2 : public GradientAveraging {
 public:
  Co2(const SyncSettings& settings, nn::ParamStore& params, ReplicaGroups& groups);
  ~Co2() override { drain(exchange_); }  // an exchange still in flight is waited for, not applied
  std::string describe() const override;
  void afterOptimizerStep(int64_t step) override;
  void finish() override;
  void evalParams(float* out) override;
  void saveState(runtime::StateDict& out) override;
  comm::TierBytes plannedTraffic(int64_t steps) const override;
  comm::TierBytes evalTraffic() const override {
    return groups_.replica().wireBytes(comm::Collective::AllGather, shard_->stride());
  }
  int64_t outerStateBytes() const override {
    return static_cast<int64_t>(sizeof(float)) *
           static_cast<int64_t>(xo_.size() + xprev_.size() + m_.size() + snap_[0].size() +
                                snap_[1].size());  // (not the transient all-gather buffer)
  }
  void loadState(const runtime::StateDict& in) override;

 private:
  void applyStale(const float* xbar);  // the k >= 1 update of x_o from xbar(k-1)

  SyncSettings s_;
  ReplicaGroups& groups_;
  std::vector<Fragment> plan_;  // one fragment: the whole model
  std::unique_ptr<FragmentShard> shard_;
  std::vector<float> xo_, xprev_, m_, snap_[2], scratch_;
  float update_mean_ = 0;  // u
  int64_t updates_ = 0;
  Exchange exchange_;
  std::unique_ptr<comm::CompressedAllReduce> codec_;
  int in_flight_ = -1;  // index of the snapshot being reduced
};

}  // namespace lowband::schedules
