// `lowband plan` in one process: the planned layout, memory and bytes against closed forms, and
// --auto's choice against the order it promises.
#include <gtest/gtest.h>

#include <string>

#include "launcher/config.h"
#include "launcher/plan.h"
#include "launcher/setup.h"
#include "tests/test_support.h"

namespace lowband::launcher {
namespace {

// A 2-block GPT on 4 ranks: 2 replicas of 2 over `wan`.
std::string config(const std::string& sync, const std::string& wan_bandwidth = "100Mbit",
                   const std::string& wan_latency = "20ms") {
  return "run: {steps: 100, checkpoint_every: 0}\n"
         "device: cpu\n"
         "model: {kind: gpt, n_layer: 2, d_model: 64, n_head: 4, seq_len: 32, vocab: 256}\n"
         "data: {train: unused.bin, batch_size: 4}\n"
         "topology:\n  tiers:\n"
         "    - {name: node, size: 2, bandwidth: 10Gbit, latency: 10us}\n"
         "    - {name: wan, size: rest, bandwidth: " +
         wan_bandwidth + ", latency: " + wan_latency +
         "}\n"
         "sync: " +
         sync + "\n";
}

Plan planOf(const std::string& sync, double step_time = 0.05) {
  PlanOptions o;
  o.world = 4;
  o.step_time = step_time;
  return makePlan(parseConfig(config(sync), "plan.yaml", {.world = 4}), o);
}

TEST(Plan, DdpOverTwoTiersMatchesTheHierarchicalAllReduce) {
  const Plan p = planOf("{outer: {method: ddp}}");
  EXPECT_EQ(p.world, 4);
  EXPECT_EQ(p.replicas, 2);
  ASSERT_EQ(p.tiers.size(), 2u);
  const double n = static_cast<double>(p.memory.params) / 4;  // padded parameter count
  // One bucket (25 MB > the model): reduce-scatter + all-gather of n/2 inside the node
  // ((2-1) * 4 * n/2 each), all-reduce of the n/2 shard across the wan (2 (2-1)/2 * 4 * n/2).
  EXPECT_DOUBLE_EQ(p.tiers[0].bytes_per_step, 4 * n);
  EXPECT_DOUBLE_EQ(p.tiers[1].bytes_per_step, 2 * n);
  EXPECT_TRUE(p.tiers[1].inner);                       // outer ddp exchanges every step everywhere
  EXPECT_EQ(p.memory.optimizer, 2 * p.memory.params);  // AdamW m and v, unsharded
  EXPECT_EQ(p.memory.outer_state, 0);
  EXPECT_GT(p.memory.activations, 0);
  // Every step: bytes / bandwidth + one exchange's latency per tier, all exposed.
  EXPECT_NEAR(p.tiers[1].seconds_per_step, 2 * n / 12.5e6 + 0.02, 1e-12);
  EXPECT_NEAR(p.tiers[0].seconds_per_step, 4 * n / 1.25e9 + 10e-6, 1e-12);
  EXPECT_NEAR(p.predicted_step_s, 0.05 + p.tiers[0].seconds_per_step + p.tiers[1].seconds_per_step,
              1e-12);
  EXPECT_NEAR(p.predicted_utilization, 0.05 / p.predicted_step_s, 1e-12);
}

TEST(Plan, ZeroAndDilocoShardStateOverTheReplica) {
  const Plan ddp = planOf("{outer: {method: diloco, H: 50}}");
  const Plan zero = planOf("{inner: {method: zero2}, outer: {method: diloco, H: 50}}");
  EXPECT_EQ(zero.memory.optimizer * 2, ddp.memory.optimizer);    // 1/2 per rank (n/2 is aligned)
  EXPECT_EQ(ddp.memory.outer_state, 3 * ddp.memory.params / 2);  // global, momentum, delta: 1/2
  // diloco across the wan: the own half of Delta all-reduced once per 50 steps.
  const double n = static_cast<double>(ddp.memory.params) / 4;
  EXPECT_DOUBLE_EQ(ddp.tiers[1].bytes_per_step, 2 * 0.5 * 4 * (n / 2) * 2 / 100);
  EXPECT_FALSE(ddp.tiers[1].inner);
}

TEST(Plan, AutoTakesTheFirstCandidateThatReachesTheTarget) {
  PlanOptions o;
  o.world = 4;
  o.step_time = 0.05;
  // A fast, near wan: outer ddp already reaches 90%.
  Config fast =
      parseConfig(config("{outer: {method: ddp}}", "400Gbit", "10us"), "fast.yaml", {.world = 4});
  fast.plan.target_utilization = 0.9;
  const AutoPlan a = autoPlan(fast, o);
  EXPECT_TRUE(a.meets_target);
  EXPECT_EQ(a.config.sync.outer.method, OuterMethod::Ddp);
  EXPECT_EQ(a.candidates, 1);
  // 100 Mbit/s: ddp cannot; the first that can is uncompressed diloco or streaming with the
  // smallest H that reaches it, and every candidate before it falls short.
  Config slow = parseConfig(config("{outer: {method: ddp}}"), "slow.yaml", {.world = 4});
  slow.plan.target_utilization = 0.9;
  const AutoPlan b = autoPlan(slow, o);
  EXPECT_TRUE(b.meets_target);
  EXPECT_NE(b.config.sync.outer.method, OuterMethod::Ddp);
  EXPECT_EQ(b.config.sync.outer.codec, CodecKind::None);
  EXPECT_GE(b.plan.predicted_utilization, 0.9);
  if (b.config.sync.outer.H > 10) {
    Config smaller = b.config;
    smaller.sync.outer.H = 10;
    smaller.sync.outer.fragments = FragmentCount{};
    EXPECT_LT(makePlan(parseConfig(toYaml(smaller), "smaller.yaml", {.world = 4}), o)
                  .predicted_utilization,
              0.9);
  }
}

// Per NIC class links (tiers[].classes): a group over the tier runs at its slowest member's
// class link (the tier's own numbers for an unlisted class); the plan takes the slowest group.
TEST(Plan, PerClassLinksRunAtTheSlowestMember) {
  const std::string yaml =
      "run: {steps: 100, checkpoint_every: 0}\n"
      "device: cpu\n"
      "model: {kind: gpt, n_layer: 2, d_model: 64, n_head: 4, seq_len: 32, vocab: 256}\n"
      "data: {train: unused.bin, batch_size: 4}\n"
      "topology:\n  ranks_per_host: 2\n"
      "  hosts: [{match: host0, nic: infiniband}, {match: '*', nic: ethernet}]\n"
      "  tiers:\n"
      "    - {name: node, size: 2, bandwidth: 10Gbit, latency: 10us,\n"
      "       classes: [{nic: infiniband, bandwidth: 100Gbit, latency: 2us}]}\n"
      "    - {name: wan, size: rest, bandwidth: 100Mbit, latency: 20ms}\n"
      "sync: {outer: {method: diloco, H: 50}}\n";
  const Config c = parseConfig(yaml, "classes.yaml", {.world = 4});
  const std::vector<std::string> split = {"infiniband", "infiniband", "ethernet", "ethernet"};
  const auto ib = tierSpecs(c, split, 1), eth = tierSpecs(c, split, 2);
  EXPECT_DOUBLE_EQ(ib[0].bandwidth, 12.5e9);
  EXPECT_DOUBLE_EQ(ib[0].latency, 2e-6);
  EXPECT_DOUBLE_EQ(eth[0].bandwidth, 1.25e9);  // ethernet is not listed: the tier's own
  EXPECT_DOUBLE_EQ(eth[0].latency, 10e-6);
  EXPECT_DOUBLE_EQ(ib[1].bandwidth, 12.5e6);  // no classes: the same for everyone
  // A group that mixes the classes runs at the slower one.
  const auto mixed = tierSpecs(c, {"infiniband", "ethernet", "infiniband", "ethernet"}, 0);
  EXPECT_DOUBLE_EQ(mixed[0].bandwidth, 1.25e9);
  EXPECT_DOUBLE_EQ(mixed[0].latency, 10e-6);
  EXPECT_DOUBLE_EQ(slowestTierSpecs(c, split)[0].bandwidth, 1.25e9);
  EXPECT_DOUBLE_EQ(tierSpecs(c)[0].bandwidth, 1.25e9);  // no islands: the tier's own
  // The plan: host0 (ranks 0, 1) is InfiniBand, host1 Ethernet; the node tier at Ethernet's.
  PlanOptions o;
  o.world = 4;
  o.step_time = 0.05;
  const Plan p = makePlan(c, o);
  EXPECT_NE(p.islands.find("infiniband"), std::string::npos) << p.islands;
  EXPECT_DOUBLE_EQ(p.tiers[0].bandwidth, 1.25e9);
  EXPECT_DOUBLE_EQ(p.tiers[0].latency, 10e-6);
  // Listing a class without host rules, or twice, is a clear error.
  EXPECT_THROW(
      parseConfig(yaml.substr(0, yaml.find("  hosts:")) + yaml.substr(yaml.find("  tiers:")),
                  "classes.yaml", {.world = 4}),
      ConfigError);
}

TEST(Plan, WorldMustFitTheTiers) {
  PlanOptions o;
  o.world = 3;
  o.step_time = 0.05;
  EXPECT_THROW(makePlan(parseConfig(config("{outer: {method: ddp}}"), "p.yaml"), o), ConfigError);
}

}  // namespace
}  // namespace lowband::launcher
