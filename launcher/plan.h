// `lowband plan CONFIG [--world N]`: what a run of the config would do and cost, without
// training and without MPI (docs/studies.md): ranks -> hosts -> tiers -> replicas, what is sharded
// where, memory per rank, bytes per step per tier, and the predicted step time and compute
// utilisation. The layout and the bytes come from the same objects training uses (the
// strategy over a planned topology: comm::Topology::planned), so the bytes are the ones the
// counters will show. The step time:
//   compute  T_c: measured here (one warm-up step, then the median of `timing_steps` steps of
//            forward + backward + optimizer at the config's batch) or given (--step-time)
//   tier i   t_i = bytes_i / bandwidth_i + exchanges_i * latency_i   per step
//   inner    (tiers inside a replica; all tiers under outer ddp) are exposed every step
//   outer    one exchange x = its bytes / bandwidth + latency per tier it crosses; exposed per
//            exchange: diloco/local_sgd x; streaming max(0, x - tau (T_c + T_inner)); co2
//            max(0, x - H (T_c + T_inner)); spread over the steps between exchanges
//   step     T_c + T_inner + T_outer;   utilisation = T_c / step
#pragma once

#include <string>
#include <vector>

#include "launcher/config.h"

namespace lowband::launcher {

struct PlanOptions {
  int64_t world = 0;     // 0: the config's tier sizes if they are all fixed
  double step_time = 0;  // compute seconds per step; 0: measure it here
  int64_t timing_steps = 3;
};

struct TierPlan {
  std::string name;
  int64_t size = 0;
  double bandwidth = 0;  // bytes per second per rank
  double latency = 0;
  bool inner = true;  // inside a replica (exposed every step)
  double bytes_per_step = 0;
  double seconds_per_step = 0;  // bytes / bandwidth + exchanges * latency
};

struct PlanMemory {
  int64_t params = 0, grads = 0, optimizer = 0, outer_state = 0, activations = 0;
};

struct Plan {
  int64_t world = 0;
  int hosts = 0;
  int replicas = 0, replica_ranks = 0;
  std::string inner, outer, sharding;
  std::string model;
  std::string islands;  // NIC islands (topology.hosts), "" without
  std::vector<TierPlan> tiers;
  PlanMemory memory;  // of rank 0
  double compute_s = 0;
  bool compute_measured = false;
  double inner_s = 0, outer_s = 0;
  double predicted_step_s = 0, predicted_utilization = 0;
};

// ConfigError for a config it cannot plan (as training would refuse it).
Plan makePlan(const Config& config, const PlanOptions& options);

// `lowband plan --auto`: the outer method, H, fragments, overlap and codec for the tier across
// replicas that reach plan.target_utilization with the least expected quality loss. Candidates,
// in that order: outer ddp; then for codec none, int8, fp4 (less compression first), for H
// 10, 20, 50, 100, 200, 500 (smaller first): diloco, then streaming_diloco (fragments auto,
// overlap 1). The first that reaches the target wins; if none does, the one with the highest
// utilisation. The replica layout (tiers, outer tier) and the inner method stay as configured.
struct AutoPlan {
  Config config;  // the chosen config (resolved)
  Plan plan;
  bool meets_target = false;
  int candidates = 0;  // planned
};
AutoPlan autoPlan(const Config& config, const PlanOptions& options);
std::string planText(const Plan& plan);
std::string planJson(const Plan& plan);  // one line

}  // namespace lowband::launcher
