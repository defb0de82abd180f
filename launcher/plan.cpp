#include "launcher/plan.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "comm/topology.h"
#include "launcher/bench.h"
#include "launcher/setup.h"
#include "launcher/units.h"
#include "runtime/device.h"
#include "runtime/kernels.h"
#include "runtime/stream.h"
#include "schedules/methods.h"
#include "sim/simulator.h"

namespace lowband::launcher {

namespace {

int64_t worldOf(const Config& c, int64_t requested) {
  if (requested > 0) return requested;
  int64_t world = 1;
  for (const TierConfig& t : c.topology.tiers) {
    if (t.size.isRest())
      throw ConfigError(
          keyMessage(c, "topology.tiers",
                     "tier '" + t.name + "' is `rest`: give the world size with --world N"));
    world *= t.size.ranks;
  }
  return world;
}

// Seconds of one training step of `model` on this machine at the config's batch (random data):
// one warm-up step, then the median of `steps`.
double measureStep(const Config& c, nn::Model& model, nn::Optimizer& optimizer,
                   const runtime::Stream& stream, int64_t steps) {
  const int64_t B = c.data.batch_size;
  const bool gpt = c.model.kind == ModelKind::Gpt;
  const int64_t T = gpt ? c.model.seq_len : 1;
  std::mt19937 rng(1);
  std::vector<int32_t> tokens(B * T), targets(B * T);
  std::vector<float> images(gpt ? 0 : B * c.model.input);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % c.model.vocab);
  for (auto& t : targets) t = static_cast<int32_t>(rng() % (gpt ? c.model.vocab : c.model.classes));
  for (auto& x : images) x = static_cast<float>(rng() % 256) / 255.0f;
  const nn::Batch batch{gpt ? tokens.data() : nullptr, gpt ? nullptr : images.data(),
                        targets.data(), B, T};
  return medianStepSeconds(model, optimizer, batch, stream, 1, steps);
}

std::string fmtSeconds(double s) {
  char buf[32];
  if (s >= 1)
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  else if (s >= 1e-3)
    std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.1f us", s * 1e6);
  return buf;
}

// Where zero1/zero2 split their state (schedules/zero.h), for a gradient group of k ranks.
std::string shardingText(const Config& c, const comm::Topology& topology, int k) {
  if (c.sync.inner.method == InnerMethod::Ddp) return "optimizer state whole on every rank (ddp)";
  const std::string group = c.sync.outer.method == OuterMethod::Ddp ? "world" : "replica";
  // Ranks split over the placement `tier`: tiers 0 .. tier ("replica": the whole group).
  auto split = [&](const std::string& tier) {
    const int last = tier == "replica" ? -1 : topology.tierIndex(tier);
    if (last < 0) return std::pair<int64_t, std::string>{k, "the " + group};
    int64_t ranks = 1;
    for (int i = 0; i <= last; ++i) ranks *= topology.tierSize(i);
    return std::pair<int64_t, std::string>{ranks, "tier '" + tier + "'"};
  };
  const auto [ko, over] = split(c.sync.inner.shard.optimizer);
  std::string text = "optimizer state 1/" + std::to_string(ko) + " per rank over " + over;
  if (ko < k) text += ", the same on each of its " + std::to_string(k / ko) + " copies";
  if (c.sync.inner.method == InnerMethod::Zero2) {
    const auto [kg, gover] = split(c.sync.inner.shard.grads);
    text += "; gradients reduce-scattered over " + gover + " (1/" + std::to_string(kg) + ")";
    if (kg < k) text += ", then all-reduced across the " + std::to_string(k / kg) + " copies";
  }
  return text;
}

}  // namespace

Plan makePlan(const Config& c, const PlanOptions& o) {
  checkSupported(c);
  Plan plan;
  plan.world = worldOf(c, o.world);
  checkWorld(c, plan.world);
  // With NIC islands: hosts are blocks of ranks_per_host ranks (else of the innermost tier),
  // named host<N> as hostNames() names them, and each tier at its slowest group's link.
  comm::Islands islands;
  std::vector<std::string> class_of_rank;
  if (!c.topology.hosts.empty()) {
    const bool rest = c.topology.tiers.empty() || c.topology.tiers[0].size.isRest();
    const int64_t per_host = c.topology.ranks_per_host > 0 ? c.topology.ranks_per_host
                             : rest                        ? plan.world
                                                           : c.topology.tiers[0].size.ranks;
    std::vector<std::string> names;
    for (int64_t r = 0; r < plan.world; ++r) names.push_back(blockHostName(r, per_host));
    islands = islandsFor(c, names);
    plan.islands = describeIslands(islands);
    class_of_rank = classOfRank(islands);
  }
  std::unique_ptr<comm::Topology> topology =
      comm::Topology::planned(plan.world, 0, slowestTierSpecs(c, class_of_rank),
                              static_cast<int>(c.topology.ranks_per_host));
  comm::PlannedCommunicator world(0, static_cast<int>(plan.world), "world");
  const int outer_tier = std::max(0, topology->tierIndex(c.sync.outer.tier));
  schedules::ReplicaGroups groups(*topology, world, outer_tier, innerCodecs(c),
                                  c.sync.inner.error_feedback);
  const runtime::DeviceSelection device = runtime::selectDevice(c.device);
  runtime::Stream stream(device.device);
  std::unique_ptr<nn::Model> model = buildModel(c, device.device);
  nn::ParamStore& params = model->params();
  params.initialize(static_cast<uint64_t>(c.run.seed), stream);
  const schedules::SyncSettings settings = syncSettings(c, groups.replicaIndex());
  std::unique_ptr<schedules::Strategy> strategy = schedules::makeStrategy(settings, params, groups);
  const auto [shard_begin, shard_end] = strategy->optimizerRange();
  nn::Optimizer optimizer(params, optimizerSettings(c), shard_begin, shard_end);

  plan.hosts = topology->hosts();
  plan.replicas = groups.replicas();
  plan.replica_ranks = groups.replica().size();
  plan.inner = enumName(c.sync.inner.method);
  plan.outer = strategy->describe();
  plan.model = model->describe();
  const int k =
      c.sync.outer.method == OuterMethod::Ddp ? static_cast<int>(plan.world) : plan.replica_ranks;
  plan.sharding = shardingText(c, *topology, k);
  if (strategy->outerStateBytes() > 0)
    plan.sharding +=
        "; outer state 1/" + std::to_string(plan.replica_ranks) + " per rank of a replica";

  // Compute: measured (which also sizes the activations) or given.
  const double measured = measureStep(c, *model, optimizer, stream,
                                      o.step_time > 0 ? 1 : std::max<int64_t>(1, o.timing_steps));
  plan.compute_measured = o.step_time <= 0;
  plan.compute_s = plan.compute_measured ? measured : o.step_time;
  plan.memory = {params.size() * 4, params.size() * 4,
                 static_cast<int64_t>(optimizer.state().nbytes()), strategy->outerStateBytes(),
                 model->activationBytes()};

  // Bytes per tier over the run, as the counters will show them; the step time uses the
  // steady state (a long run: no end-of-run flush, no evaluations) so a short run's final
  // flush does not read as a per-exchange cost.
  const comm::TierBytes traffic = plannedRunTraffic(c, *strategy, !c.data.val.empty(), false);
  const auto steps = static_cast<double>(c.run.steps);
  const int64_t horizon = std::max<int64_t>(c.run.steps, 1000 * c.sync.outer.H);
  const comm::TierBytes steady = strategy->plannedTraffic(horizon);
  // When the outer method exchanges: its descriptor's schedule (outer ddp's every-step exchange
  // is timed with the inner ones, as the gradients' average it is).
  const int64_t layers = c.model.layers();
  const schedules::OuterSchedule schedule =
      schedules::outerMethod(c.sync.outer.method).schedule(c.sync.outer, layers, settings.overlap);
  const bool outer_exchanges = schedule.period > 0;
  const double exchanges_per_step =
      outer_exchanges
          ? static_cast<double>(schedule.fragments.size()) / static_cast<double>(schedule.period)
          : 0;
  double full_wire_s = 0, latency_s = 0;  // all parameters once over the outer tiers
  for (int i = 0; i < topology->levels(); ++i) {
    const comm::TierSpec& t = topology->tier(i);
    TierPlan tp{t.name,
                topology->tierSize(i),
                t.bandwidth,
                t.latency,
                !outer_exchanges || i < outer_tier,
                0,
                0};
    tp.bytes_per_step = traffic.count(t.name) ? traffic.at(t.name) / steps : 0;
    const double steady_bytes =
        steady.count(t.name) ? steady.at(t.name) / static_cast<double>(horizon) : 0;
    const double wire_s = t.bandwidth > 0 ? steady_bytes / t.bandwidth : 0;
    if (tp.inner) {
      // Gradient exchanges: the strategy's collectives per step (at least one a step when
      // the tier carries any).
      const double exchanges =
          steady_bytes > 0
              ? static_cast<double>(std::max<int64_t>(1, strategy->gradientExchangesPerStep()))
              : 0;
      tp.seconds_per_step = wire_s + exchanges * t.latency;
      plan.inner_s += tp.seconds_per_step;
    } else if (steady_bytes > 0) {
      tp.seconds_per_step = wire_s + exchanges_per_step * t.latency;
      full_wire_s += wire_s * static_cast<double>(schedule.period);
      latency_s += t.latency;
    }
    plan.tiers.push_back(tp);
  }
  if (outer_exchanges && (full_wire_s > 0 || latency_s > 0)) {
    // The exposed part of the outer exchanges: the method's schedule through `lowband
    // simulate`'s step DAG (sim/simulator.h), one step's work (compute and inner exchanges)
    // hiding what it can.
    const double busy = plan.compute_s + plan.inner_s;
    const double u =
        sim::utilization(schedule, layers, busy, full_wire_s, latency_s, schedule.period);
    plan.outer_s = busy / u - busy;
  }
  plan.predicted_step_s = plan.compute_s + plan.inner_s + plan.outer_s;
  plan.predicted_utilization = plan.compute_s / plan.predicted_step_s;
  return plan;
}

std::string planText(const Plan& p) {
  std::string s;
  auto row = [&](const char* key, const std::string& value) {
    char k[16];
    std::snprintf(k, sizeof k, "%-11s", key);
    s += k + value + "\n";
  };
  row("world", std::to_string(p.world) + " rank(s) on " + std::to_string(p.hosts) + " host(s); " +
                   std::to_string(p.replicas) + " replica(s) of " +
                   std::to_string(p.replica_ranks) + " rank(s)");
  if (!p.islands.empty()) row("islands", p.islands + " (renumbered island by island)");
  std::string tiers;
  for (const TierPlan& t : p.tiers) {
    if (!tiers.empty()) tiers += " | ";
    tiers += t.name + " x" + std::to_string(t.size) + " (" + format(Bandwidth{t.bandwidth}) + ", " +
             format(Duration{t.latency}) + (t.inner ? ", every step" : ", outer") + ")";
  }
  row("tiers", tiers);
  row("model", p.model);
  row("sync", "inner " + p.inner + "; outer " + p.outer);
  row("sharding", p.sharding);
  const PlanMemory& m = p.memory;
  auto mem = [](int64_t b) { return formatApprox(ByteSize{static_cast<uint64_t>(b)}); };
  row("memory", "per rank: params " + mem(m.params) + ", grads " + mem(m.grads) + ", optimizer " +
                    mem(m.optimizer) + ", outer state " + mem(m.outer_state) + ", activations " +
                    mem(m.activations) + " (total " +
                    mem(m.params + m.grads + m.optimizer + m.outer_state + m.activations) + ")");
  std::string traffic;
  for (const TierPlan& t : p.tiers) {
    if (t.bytes_per_step <= 0) continue;
    if (!traffic.empty()) traffic += " | ";
    traffic += t.name + " " + formatApprox(ByteSize{static_cast<uint64_t>(t.bytes_per_step)}) +
               "/step (" + fmtSeconds(t.seconds_per_step) + ")";
  }
  row("traffic", traffic.empty() ? "none between ranks" : traffic + " per rank");
  row("compute", fmtSeconds(p.compute_s) + " per step (" +
                     (p.compute_measured
                          ? "measured here, " + std::to_string(omp_get_max_threads()) + " thread(s)"
                          : std::string("given")) +
                     ")");
  char pred[200];
  std::snprintf(pred, sizeof pred,
                "step %s (compute %s + inner exchanges %s + exposed outer exchanges %s), "
                "compute utilisation %.1f%%",
                fmtSeconds(p.predicted_step_s).c_str(), fmtSeconds(p.compute_s).c_str(),
                fmtSeconds(p.inner_s).c_str(), fmtSeconds(p.outer_s).c_str(),
                p.predicted_utilization * 100);
  row("predicted", pred);
  return s;
}

std::string planJson(const Plan& p) {
  std::string tiers;
  for (const TierPlan& t : p.tiers) {
    char buf[400];
    std::snprintf(buf, sizeof buf,
                  "%s{\"name\":%s,\"size\":%lld,\"bandwidth_bytes_per_s\":%.6g,"
                  "\"latency_s\":%.6g,\"every_step\":%s,\"bytes_per_step\":%.1f,"
                  "\"seconds_per_step\":%.6g}",
                  tiers.empty() ? "" : ",", jsonString(t.name).c_str(),
                  static_cast<long long>(t.size), t.bandwidth, t.latency,
                  t.inner ? "true" : "false", t.bytes_per_step, t.seconds_per_step);
    tiers += buf;
  }
  const PlanMemory& m = p.memory;
  std::string out(tiers.size() + p.inner.size() + p.outer.size() + 1024, '\0');
  out.resize(std::snprintf(
      out.data(), out.size(),
      "{\"world\":%lld,\"hosts\":%d,\"replicas\":%d,\"replica_ranks\":%d,\"inner\":%s,"
      "\"outer\":%s,\"tiers\":[%s],\"memory_per_rank_bytes\":{\"params\":%lld,\"grads\":%lld,"
      "\"optimizer\":%lld,\"outer_state\":%lld,\"activations\":%lld},\"compute_s\":%.6g,"
      "\"compute_measured\":%s,\"inner_s\":%.6g,\"outer_s\":%.6g,\"predicted_step_s\":%.6g,"
      "\"predicted_utilization\":%.4f}",
      static_cast<long long>(p.world), p.hosts, p.replicas, p.replica_ranks,
      jsonString(p.inner).c_str(), jsonString(p.outer).c_str(), tiers.c_str(),
      static_cast<long long>(m.params), static_cast<long long>(m.grads),
      static_cast<long long>(m.optimizer), static_cast<long long>(m.outer_state),
      static_cast<long long>(m.activations), p.compute_s, p.compute_measured ? "true" : "false",
      p.inner_s, p.outer_s, p.predicted_step_s, p.predicted_utilization));
  return out;
}

}  // namespace lowband::launcher

namespace lowband::launcher {

AutoPlan autoPlan(const Config& base, const PlanOptions& options) {
  struct Candidate {
    OuterMethod method;
    int64_t H;
    CodecKind codec;
  };
  std::vector<Candidate> candidates = {{OuterMethod::Ddp, base.sync.outer.H, CodecKind::None}};
  for (CodecKind codec : {CodecKind::None, CodecKind::Int8, CodecKind::Fp4})
    for (int64_t H : {10, 20, 50, 100, 200, 500})
      for (OuterMethod m : {OuterMethod::Diloco, OuterMethod::StreamingDiloco})
        candidates.push_back({m, H, codec});
  AutoPlan best;
  PlanOptions o = options;
  bool have = false;
  for (const Candidate& cand : candidates) {
    Config c = base;
    OuterSyncConfig& outer = c.sync.outer;
    outer.method = cand.method;
    outer.H = cand.H;
    outer.codec = cand.codec;
    outer.fragments = FragmentCount{};
    outer.overlap = cand.method == OuterMethod::StreamingDiloco ? 1 : 0;
    outer.overlap_per_replica.clear();
    Config resolved;
    try {  // through YAML, so the candidate gets every cross-field check a user's config gets
      resolved =
          parseConfig(toYaml(c), base.source + " (auto candidate)",
                      {.world = o.world > 0 ? std::optional<int64_t>(o.world) : std::nullopt});
    } catch (const ConfigError&) {
      continue;  // e.g. more fragments than H allows
    }
    Plan plan = makePlan(resolved, o);
    plan.compute_measured = options.step_time <= 0;  // measured for the first candidate
    ++best.candidates;
    if (o.step_time <= 0) o.step_time = plan.compute_s;  // measured once, reused
    const bool meets = plan.predicted_utilization >= base.plan.target_utilization;
    if (!have || (meets && !best.meets_target) ||
        (!best.meets_target && plan.predicted_utilization > best.plan.predicted_utilization)) {
      best.config = resolved;
      best.plan = plan;
      best.meets_target = meets;
      have = true;
    }
    if (meets) break;
  }
  if (!have) throw ConfigError(base.source + ": no candidate of `lowband plan --auto` is valid");
  return best;
}

}  // namespace lowband::launcher
