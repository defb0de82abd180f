// How replicas synchronise (docs/design.md). Ranks form replicas: the outer tier splits the
// world into replica groups; inside a replica gradients are averaged every step (inner ddp),
// across replicas only by the outer method. The trainer drives a Strategy through these hooks,
// on every rank, in this order per step:
//   model forward  -> onParamsNeeded(group) per parameter group (the model's hook; with
//                              SyncSettings::land_in_forward, outer updates due land here)
//   model backward -> onGradsReady(group) per parameter group (set as the model's hook)
//   beforeOptimizerStep()      gradients are the replica's mean when it returns
//   gradientNorm(); optimizer step over optimizerRange() (or a skipped step: the hooks run
//                              either way, so collectives stay matched)
//   afterOptimizerStep(step)   ZeRO's parameter all-gather, then the outer synchronisation
// and finish() once after the last step (in-flight exchanges landed and applied).
// Strategies speak only comm::Communicator; every rank of a replica group calls the same hooks
// in the same order, which is what keeps the collectives of all ranks matched.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/compressed.h"
#include "comm/topology.h"
#include "nn/optimizer.h"
#include "nn/param_store.h"
#include "runtime/codec.h"
#include "runtime/error.h"
#include "runtime/state_dict.h"
#include "schedules/settings.h"

namespace lowband::schedules {

LB_DEFINE_ERROR(ScheduleError, "schedules");

// Time the training thread spent waiting for exchanges, and how long they were in flight.
struct ExchangeTime {
  double blocked_s = 0;    // waiting in hooks for exchanges to land
  double in_flight_s = 0;  // from each exchange's start to the end of its wait
  // Fraction of exchange time hidden behind compute: 1 - blocked / in flight (1 with none).
  double hiddenFraction() const {
    return in_flight_s > 0 ? std::max(0.0, 1.0 - blocked_s / in_flight_s) : 1.0;
  }
};

struct SyncStats {
  ExchangeTime inner;       // gradient averaging (inner ddp; outer ddp's world all-reduce)
  ExchangeTime outer;       // parameter exchanges across replicas
  int64_t outer_steps = 0;  // outer updates applied (all fragments)
  std::vector<int64_t> fragment_steps;  // per fragment (streaming), else one entry
  ExchangeTime total() const {
    return {inner.blocked_s + outer.blocked_s, inner.in_flight_s + outer.in_flight_s};
  }
};

// The communicators of one rank's replica layout over a Topology.
class ReplicaGroups {
 public:
  // `outer_tier` indexes topology tiers; a replica is the group of ranks below it (one rank
  // when it is tier 0). `world` spans the topology's ranks in rank order. `codecs`: tiers
  // (by index) whose gradient reductions (all-reduce, reduce-scatter) are encoded in the
  // replica's and the world's communicators (comm::CodecCommunicator). Collective.
  // `codec_error_feedback`: the codecs keep each gradient tensor's quantisation error and add it
  // to the next step's (comm::CodecCommunicator).
  ReplicaGroups(comm::Topology& topology, comm::Communicator& world, int outer_tier,
                const std::map<int, runtime::CodecSpec>& codecs = {},
                bool codec_error_feedback = false);
  comm::Communicator& replica() { return *replica_; }  // ranks of this replica
  comm::Communicator& across() { return *across_; }    // same position in every replica
  comm::Communicator& world() { return *world_; }      // every rank (outer ddp)
  int replicaIndex() const { return replica_index_; }
  int replicas() const { return replicas_; }
  int outerTier() const { return outer_tier_; }     // replica = levels [0, outerTier())
  int tiers() const { return topology_.levels(); }  // world = levels [0, tiers())
  // The ranks that differ only in levels [begin, end) of the topology, as one communicator: a
  // level's link, or hierarchical over several; with `encoded`, reductions on the levels that
  // have a gradient codec are encoded. Collective: every rank asks for the same spans in the
  // same order.
  comm::Communicator& levels(int begin, int end, const std::string& name, bool encoded = false);
  // Whether a level in [begin, end) has a gradient codec (its `encoded` span would encode).
  bool encodes(int begin, int end) const {
    return codecs_.lower_bound(begin) != codecs_.lower_bound(end);
  }
  // The encoded levels made so far (gradient codecs), in the order they were made.
  const std::vector<comm::CodecCommunicator*>& gradientCodecs() const { return codecs_made_; }

 private:
  // Level i: its link, encoded by the level's codec when `encoded`.
  comm::Communicator* level(int i, bool encoded);
  // Levels [begin, end): none -> local, one -> that level, more -> hierarchical with `flat`.
  comm::Communicator* over(int begin, int end, bool encoded, comm::Communicator* flat,
                           const std::string& name);

  comm::Topology& topology_;
  std::map<int, runtime::CodecSpec> codecs_;
  bool codec_error_feedback_;
  std::vector<comm::CodecCommunicator*> codecs_made_;
  int outer_tier_;
  std::vector<std::unique_ptr<comm::Communicator>> owned_;
  comm::Communicator* replica_ = nullptr;
  comm::Communicator* across_ = nullptr;
  comm::Communicator* world_ = nullptr;
  int replica_index_ = 0, replicas_ = 1;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string describe() const = 0;
  virtual void onGradsReady(int group) = 0;
  virtual void onParamsNeeded(int /*group*/) {}
  virtual void beforeOptimizerStep() = 0;
  // The part of the flat buffers this rank's optimizer updates (all of it unless ZeRO), and
  // the norm of the group's mean gradient, for clipping (collective under zero2).
  virtual std::pair<int64_t, int64_t> optimizerRange() const = 0;
  virtual double gradientNorm(const runtime::Stream& stream) = 0;
  virtual void afterOptimizerStep(int64_t step) = 0;  // step: 0-based index of the step done
  virtual void finish() = 0;
  // Writes the parameters evaluation uses (theta_global; the replica's own where there is no
  // outer state) into `out` (params().size() floats). Collective over the replica. Outer
  // updates deferred to the next forward (land_in_forward) land first, so the replica's
  // parameters may change: read them after this call.
  virtual void evalParams(float* out) = 0;
  // Checkpoints, at a step boundary (after afterOptimizerStep), on every rank: saveState
  // waits for the exchanges in flight and keeps their results, which are applied when they
  // are due as if nothing had happened, so a run resumed from loadState continues exactly.
  // Entries go under "sync."; a checkpoint of another method or layout is refused by name/size.
  virtual void saveState(runtime::StateDict& out) = 0;
  virtual void loadState(const runtime::StateDict& in) = 0;
  virtual const SyncStats& stats() const = 0;
  // The bytes this rank will send per tier over a run of `steps` steps ending in finish(), as
  // the tiers' counters count them, and for one evalParams() call.
  virtual comm::TierBytes plannedTraffic(int64_t steps) const = 0;
  virtual comm::TierBytes evalTraffic() const { return {}; }
  // Collectives the gradient exchange issues per step (buckets, ZeRO's reduce-scatter and
  // all-gather), each paying its tiers' latency: for the planner.
  virtual int64_t gradientExchangesPerStep() const { return 0; }
  // Bytes of outer state this rank holds (theta_global, momenta, snapshots, the exchanged
  // shard; not the transient buffer the replica's all-gather lands in).
  virtual int64_t outerStateBytes() const { return 0; }
};

// The strategy of `settings.method` for `params` (host memory) over `groups`.
std::unique_ptr<Strategy> makeStrategy(const SyncSettings& settings, nn::ParamStore& params,
                                       ReplicaGroups& groups);

}  // namespace lowband::schedules
