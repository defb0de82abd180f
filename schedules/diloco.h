// Outer methods that synchronise parameters every H inner steps, fragment by fragment
// (docs/methods.md). One rank holds, per fragment p, only its shard (fragments.h) of the outer
// state and exchanges only that shard across replicas (M replicas, r = this replica):
//   local_sgd:  every H steps  theta_local = theta_global - (1/M) sum_r (theta_global -
//               theta_local,r) = (1/M) sum_r theta_local,r  (diloco with `average`; a codec
//               quantises the small Delta, never the parameters)                (one fragment)
//   diloco:     every H steps  Delta = (1/M) sum_r (theta_global - theta_local,r)
//               nesterov: v = mu v + Delta; theta_global -= lr (Delta + mu v)
//               sgd:      theta_global -= lr Delta;   average: theta_global -= Delta
//               theta_local = theta_global                                    (one fragment)
//   streaming_diloco: fragment p syncs at steps t >= H with (t - t_p) mod H == 0:
//               Delta_p as above, encoded with the codec and averaged with f32 accumulation
//               (comm/compressed.h), started at t and awaited after step t + tau of this
//               replica; then theta~ = OuterOpt(theta_global,p, Delta_p), theta_global,p = theta~,
//               theta_local,p = alpha theta_local,p + (1 - alpha) theta~     (tau >= 1)
//               theta_local,p = theta~                                         (tau = 0)
// Alpha mixes in only what was trained while the exchange was in flight: with tau = 0 nothing
// was, theta_local,p = theta~ and alpha does not apply (P = 1, tau = 0 is diloco exactly).
// "Lands after step t + tau" is a point in the math, not in time: with land_in_forward the
// exchange is awaited and applied just before the next forward first reads one of the
// fragment's groups (nothing writes those parameters in between, so the result is the same
// bit for bit), and the wait hides behind the forward of the layers before it.
// finish() lands what is in flight, then syncs once more (tau = 0) every fragment that did not
// start a sync at the last step, so the final theta_global holds every step's work.
// Evaluation uses theta_global (evalParams lands what is due first).
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "comm/compressed.h"
#include "schedules/fragments.h"
#include "schedules/gradient_sync.h"
#include "schedules/strategy.h"

namespace lowband::schedules {

class StreamingDiloco : public GradientAveraging {
 public:
  StreamingDiloco(const SyncSettings& settings, nn::ParamStore& params, ReplicaGroups& groups);
  ~StreamingDiloco() override;  // waits for exchanges still in flight (not applied)
  std::string describe() const override;
  void onParamsNeeded(int group) override;
  void afterOptimizerStep(int64_t step) override;
  void finish() override;
  void evalParams(float* out) override;
  void saveState(runtime::StateDict& out) override;
  void loadState(const runtime::StateDict& in) override;
  int64_t outerStateBytes() const override;
  comm::TierBytes plannedTraffic(int64_t steps) const override;
  comm::TierBytes evalTraffic() const override;
  const std::vector<Fragment>& fragments() const { return plan_; }

 private:
  struct FragmentState {
    std::unique_ptr<FragmentShard> shard;
    std::vector<float> global;  // theta_global shard (stride floats; padding stays 0)
    std::vector<float> v;       // nesterov momentum shard
    std::vector<float> delta;   // exchanged shard
    Exchange exchange;
    int64_t due = 0;       // step after which the exchange lands
    int64_t started = -1;  // step after which the last exchange started
  };
  void start(int p, int64_t t);
  void landFragment(int p);
  // Lands fragment p if its exchange is in flight and, with `due_only`, due.
  void landIfInFlight(int p, bool due_only);
  void landDue();  // every due exchange, in start order

  SyncSettings s_;
  ReplicaGroups& groups_;
  std::vector<Fragment> plan_;
  std::vector<FragmentState> frags_;
  std::deque<int> in_flight_;  // fragments, in start order (due ones too, with land_in_forward)
  std::map<int, int> fragment_of_group_;
  int64_t last_step_ = 0;  // t of the last afterOptimizerStep
  std::vector<float> scratch_;
  std::unique_ptr<comm::CompressedAllReduce> codec_;
};

}  // namespace lowband::schedules
