// Communicator tests under `mpiexec -n 2` and `-n 4`: every collective against the value each
// rank can compute for itself, in-place forms, sub-communicators, async overlap with compute.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "comm/compressed.h"
#include "comm/hierarchical.h"
#include "comm/link.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_runtime.h"
#include "comm/topology.h"
#include "lowband_build.h"
#include "runtime/device.h"
#include "runtime/kernels.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"
#include "tests/mpi_test_main.h"
#if LB_WITH_CUDA
#include "comm/nccl_communicator.h"
#endif

namespace lowband::comm {
namespace {

using Clock = std::chrono::steady_clock;

// The value rank r contributes at index i: distinct per rank and index, exact in f32 sums.
float contribution(int r, int64_t i) { return static_cast<float>((r + 1) * 1000 + i % 997); }

class Comm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::mpiAvailable()) GTEST_SKIP() << "MPI could not be initialised";
    world = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "world");
  }
  float sumOver(int64_t i) const {
    float s = 0;
    for (int r = 0; r < world->size(); ++r) s += contribution(r, i);
    return s;
  }
  std::unique_ptr<MpiCommunicator> world;
};

TEST_F(Comm, AllReduceSumAndAvg) {
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{(1 << 20) + 3}}) {
    std::vector<float> x(n), y(n);
    for (int64_t i = 0; i < n; ++i) x[i] = y[i] = contribution(world->rank(), i);
    world->allReduce(x.data(), n, ReduceOp::Sum);
    world->allReduce(y.data(), n, ReduceOp::Avg);
    for (int64_t i = 0; i < n; i += 1 + n / 1000) {
      ASSERT_EQ(x[i], sumOver(i)) << "n " << n << " i " << i;
      ASSERT_FLOAT_EQ(y[i], sumOver(i) / world->size()) << "n " << n << " i " << i;
    }
  }
}

TEST_F(Comm, ReduceScatterGivesEachRankItsBlock) {
  const int64_t n = 4097, p = world->size();
  std::vector<float> in(p * n), out(n), inplace(p * n);
  for (int64_t i = 0; i < p * n; ++i) in[i] = inplace[i] = contribution(world->rank(), i);
  world->reduceScatter(in.data(), out.data(), n, ReduceOp::Sum);
  world->reduceScatter(inplace.data(), inplace.data(), n, ReduceOp::Avg);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(out[i], sumOver(world->rank() * n + i)) << i;
    ASSERT_FLOAT_EQ(inplace[i], sumOver(world->rank() * n + i) / p) << i;
  }
}

TEST_F(Comm, AllGatherConcatenatesInRankOrder) {
  const int64_t n = 513, p = world->size();
  std::vector<float> in(n), out(p * n), inplace(p * n);
  for (int64_t i = 0; i < n; ++i)
    in[i] = inplace[world->rank() * n + i] = contribution(world->rank(), i);
  world->allGather(in.data(), out.data(), n);
  world->allGather(inplace.data() + world->rank() * n, inplace.data(), n);
  for (int r = 0; r < p; ++r)
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(out[r * n + i], contribution(r, i));
      ASSERT_EQ(inplace[r * n + i], contribution(r, i));
    }
}

TEST_F(Comm, BroadcastFromTheLastRankAndBarrier) {
  const int root = world->size() - 1;
  std::vector<float> x(100);
  for (int64_t i = 0; i < 100; ++i) x[i] = contribution(world->rank(), i);
  world->broadcast(x.data(), 100, root);
  for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(x[i], contribution(root, i));
  world->barrier();
  EXPECT_THROW(world->broadcastAsync(x.data(), 1, world->size()), CommError);
}

TEST_F(Comm, OpsCompleteInIssueOrderAcrossManyAsyncCalls) {
  std::vector<std::vector<float>> bufs(16, std::vector<float>(2048));
  std::vector<std::shared_ptr<Work>> works;
  for (std::size_t k = 0; k < bufs.size(); ++k) {
    for (int64_t i = 0; i < 2048; ++i) bufs[k][i] = contribution(world->rank(), i + k);
    works.push_back(world->allReduceAsync(bufs[k].data(), 2048, ReduceOp::Sum));
  }
  for (auto& w : works) w->wait();
  for (std::size_t k = 0; k < bufs.size(); ++k) ASSERT_EQ(bufs[k][7], sumOver(7 + k)) << k;
}

TEST_F(Comm, SplitMakesSubCommunicators) {
  auto half = world->split(world->rank() % 2, world->rank(), "parity");
  EXPECT_EQ(half->size(), (world->size() + 1 - world->rank() % 2) / 2);
  EXPECT_EQ(half->name(), "mpi(parity)");
  EXPECT_EQ(half->worldRanks()[half->rank()], world->rank());
  float x = static_cast<float>(world->rank());
  half->allReduce(&x, 1);
  float expected = 0;
  for (int r = world->rank() % 2; r < world->size(); r += 2) expected += static_cast<float>(r);
  EXPECT_EQ(x, expected);
}

// The point of the progress thread: an all-reduce started before a compute phase that makes no
// MPI calls is finished by the time the compute ends.
TEST_F(Comm, AsyncAllReduceProgressesDuringCompute) {
  const int64_t n = 2 << 20;  // 8 MiB
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = contribution(world->rank(), i);
  world->barrier();
  auto work = world->allReduceAsync(x.data(), n, ReduceOp::Sum);
  // About a second of compute with no MPI call in it.
  const auto start = Clock::now();
  volatile double sink = 0;
  while (Clock::now() - start < std::chrono::milliseconds(1000))
    for (int i = 0; i < 10000; ++i) sink = sink + std::sqrt(static_cast<double>(i));
  const bool done_during_compute = work->isCompleted();
  const auto before_wait = Clock::now();
  work->wait();
  const double waited = std::chrono::duration<double>(Clock::now() - before_wait).count();
  EXPECT_TRUE(done_during_compute) << "waited " << waited << " s after the compute";
  EXPECT_EQ(x[n - 1], sumOver(n - 1));
}

// Tier layouts that fit the world: 2 ranks -> node x 1; 4 ranks -> several nestings.
std::vector<std::vector<TierSpec>> layouts(int world) {
  if (world == 2) return {{{"node", 2}, {"wan", 0}}, {{"node", 1}, {"wan", 0}}, {{"all", 0}}};
  return {{{"node", 2}, {"wan", 0}},
          {{"node", 2}, {"rack", 2}},
          {{"gpu", 1}, {"node", 2}, {"wan", 0}},
          {{"node", 4}, {"wan", 0}},
          {{"node", 2}, {"rack", 1}, {"wan", 2}}};
}

std::string describe(const std::vector<TierSpec>& tiers) {
  std::string s;
  for (const TierSpec& t : tiers) s += t.name + "=" + std::to_string(t.size) + " ";
  return s;
}

TEST_F(Comm, TopologyCoordinatesAndGroups) {
  for (const auto& tiers : layouts(world->size())) {
    Topology topo(*world, tiers);
    SCOPED_TRACE(describe(tiers));
    // Composite order: the world rank rebuilt from the coordinates.
    int64_t rebuilt = 0, stride = 1;
    for (int i = 0; i < topo.levels(); ++i) {
      EXPECT_EQ(topo.level(i).size(), topo.tierSize(i));
      EXPECT_EQ(topo.level(i).rank(), topo.coordinate(i));
      rebuilt += topo.coordinate(i) * stride;
      stride *= topo.tierSize(i);
    }
    EXPECT_EQ(rebuilt, world->rank());
    EXPECT_EQ(stride, world->size());
    int64_t below = 1;  // ranks in tiers [0, t)
    for (int t = 1; t <= topo.levels(); ++t) {
      below *= topo.tierSize(t - 1);
      EXPECT_EQ(topo.inner(t).size(), below);
      EXPECT_EQ(topo.inner(t).rank(), world->rank() % below);
      if (t < topo.levels()) {
        EXPECT_EQ(topo.outer(t).size(), world->size() / below);
      }
    }
    EXPECT_EQ(topo.outer(0).size(), world->size());
    EXPECT_EQ(topo.hosts(), 1);  // one machine, no ranks_per_host
  }
  Topology fake_hosts(*world, {{"node", 1}, {"wan", 0}}, 1);
  EXPECT_EQ(fake_hosts.hosts(), world->size());
  EXPECT_EQ(fake_hosts.host(), world->rank());
  EXPECT_THROW(Topology(*world, {{"node", 3}, {"wan", 0}}), CommError);
  EXPECT_THROW(Topology(*world, {{"node", 0}, {"wan", 2}}), CommError);
}

TEST_F(Comm, HierarchicalCollectivesEqualFlatOnes) {
  for (const auto& tiers : layouts(world->size())) {
    Topology topo(*world, tiers);
    std::vector<Communicator*> levels;
    for (int i = 0; i < topo.levels(); ++i) levels.push_back(&topo.level(i));
    HierarchicalCommunicator hier(levels, world.get(), "hier");
    SCOPED_TRACE(describe(tiers));
    const int p = world->size();
    // Integer-valued floats: sums are exact in any order, so equality is bit-exact.
    // Above kChunkValues the all-reduce is pipelined in chunks (the last one padded).
    const int64_t big = 2 * HierarchicalCommunicator::kChunkValues + 1001;
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1001}, int64_t{65536}, big}) {
      std::vector<float> a(n), b(n);
      for (int64_t i = 0; i < n; ++i) a[i] = b[i] = contribution(world->rank(), i);
      hier.allReduce(a.data(), n, ReduceOp::Sum);
      world->allReduce(b.data(), n, ReduceOp::Sum);
      ASSERT_EQ(a, b) << "all-reduce n " << n;
      if (n == big) continue;  // the other collectives are not chunked
      std::vector<float> in(p * n), h(n), f(n);
      for (int64_t i = 0; i < p * n; ++i) in[i] = contribution(world->rank(), i);
      hier.reduceScatter(in.data(), h.data(), n, ReduceOp::Avg);
      world->reduceScatter(in.data(), f.data(), n, ReduceOp::Avg);
      ASSERT_EQ(h, f) << "reduce-scatter n " << n;
      std::vector<float> gh(p * n), gf(p * n);
      hier.allGather(h.data(), gh.data(), n);
      world->allGather(f.data(), gf.data(), n);
      ASSERT_EQ(gh, gf) << "all-gather n " << n;
    }
    // Byte exchanges (encoded tensors): the same bytes as flat, and each tier's counter sees
    // what wireBytes plans.
    for (int64_t bytes : {int64_t{1}, int64_t{13}, int64_t{1000}}) {
      const std::map<std::string, OpTraffic> before = topo.tierTraffic();
      std::vector<uint8_t> in(p * bytes), h(p * bytes), f(p * bytes);
      for (int64_t i = 0; i < p * bytes; ++i)
        in[i] = static_cast<uint8_t>(world->rank() * 31 + i * 7);
      hier.allToAllBytesAsync(in.data(), h.data(), bytes)->wait();
      world->allToAllBytesAsync(in.data(), f.data(), bytes)->wait();
      ASSERT_EQ(h, f) << "byte all-to-all " << bytes;
      hier.allGatherBytesAsync(in.data(), h.data(), bytes)->wait();
      world->allGatherBytesAsync(in.data(), f.data(), bytes)->wait();
      ASSERT_EQ(h, f) << "byte all-gather " << bytes;
      TierBytes planned = hier.wireBytes(Collective::AllToAllBytes, bytes);
      addTraffic(planned, hier.wireBytes(Collective::AllGatherBytes, bytes));
      for (const auto& [tier, t] : topo.tierTraffic()) {
        const double sent = t.bytes_sent - before.at(tier).bytes_sent;
        EXPECT_EQ(sent, planned.count(tier) ? planned.at(tier) : 0.0) << tier << ", " << bytes;
      }
    }
    // Non-integer data: equal up to summation order.
    std::vector<float> a(3333), b(3333);
    for (int64_t i = 0; i < 3333; ++i) a[i] = b[i] = std::sin(0.1f * i + world->rank());
    hier.allReduce(a.data(), 3333, ReduceOp::Avg);
    world->allReduce(b.data(), 3333, ReduceOp::Avg);
    for (int64_t i = 0; i < 3333; ++i) ASSERT_NEAR(a[i], b[i], 1e-6f) << i;
  }
}

// The value rank r holds in the compressed tests: normal noise, with a few blocks scaled up so
// block scales differ.
std::vector<float> noisy(int r, int64_t n) {
  std::mt19937 rng(100 + r);
  std::normal_distribution<float> d;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = d(rng) * ((i / 64) % 5 == 0 ? 30.0f : 1.0f);
  return x;
}

double codecBound(runtime::Codec c, double x, double a) {
  using runtime::Codec;
  switch (c) {
    case Codec::Bf16:
      return std::fabs(x) / 256 + 1e-38;
    case Codec::Fp8:
      return std::fabs(x) / 16 + a / 262144;
    case Codec::Int8:
      return a / 254;
    case Codec::Int4:
      return a / 14;
    case Codec::Fp4:
      return std::fabs(x) / 3 + a / 128;
    default:
      return 0;
  }
}

TEST_F(Comm, CompressedAllReduceWithinTheCodecBound) {
  const int p = world->size();
  const int64_t n = 3000;  // not a multiple of p or of the block
  using runtime::Codec;
  for (Codec c : {Codec::None, Codec::Bf16, Codec::Fp8, Codec::Int8, Codec::Int4, Codec::Fp4}) {
    CompressedAllReduce car(*world, {c, 64});
    std::vector<float> mine = noisy(world->rank(), n), exact = mine;
    car.allReduce(mine.data(), n, ReduceOp::Sum);
    world->allReduce(exact.data(), n, ReduceOp::Sum);
    // The bound: each rank's contribution quantised once, the reduced shard once more.
    std::vector<std::vector<float>> all;
    for (int r = 0; r < p; ++r) all.push_back(noisy(r, n));
    const int64_t shard = car.shardSize(n);
    // e1[i]: the bound of the first quantisation (every rank's contribution), then the bound
    // of re-quantising the accumulated value, whose size is |exact| + e1 at most.
    std::vector<double> e1(n, 0.0);
    auto blockStart = [&](int64_t i) { return i / shard * shard + (i % shard) / 64 * 64; };
    for (int64_t i = 0; i < n; ++i)
      for (int r = 0; r < p; ++r) {
        double a = 0;
        for (int64_t j = blockStart(i); j < std::min(n, blockStart(i) + 64); ++j)
          a = std::max(a, std::fabs(double(all[r][j])));
        e1[i] += codecBound(c, all[r][i], a);
      }
    for (int64_t i = 0; i < n; ++i) {
      double reduced_abs = 0;
      for (int64_t j = blockStart(i); j < std::min(n, blockStart(i) + 64); ++j)
        reduced_abs = std::max(reduced_abs, std::fabs(double(exact[j])) + e1[j]);
      const double bound = e1[i] + codecBound(c, std::fabs(double(exact[i])) + e1[i], reduced_abs) +
                           1e-4 * (1 + std::fabs(exact[i]));
      ASSERT_LE(std::fabs(double(mine[i]) - exact[i]), bound)
          << runtime::codecName(c) << " i " << i;
    }
  }
  // fp4 moves about 1/7 of the bytes of f32 through the same pattern.
  CompressedAllReduce fp4(*world, {Codec::Fp4, 64}), f32(*world, {Codec::None, 64});
  EXPECT_LT(double(fp4.wireBytesPerRank(1 << 20)) / double(f32.wireBytesPerRank(1 << 20)), 0.16);
}

// Large tensors go in pipelined chunks: with codec none (f32 on the wire, integers so the sums
// are exact) the result is exactly the all-reduce, chunk seams and padding included; with
// error feedback the residual covers every chunk.
TEST_F(Comm, CompressedAllReduceChunksLargeTensors) {
  const int64_t n = 3 * CompressedAllReduce::kChunkValues + 4099;
  ASSERT_EQ(CompressedAllReduce::chunkCount(n), 4);
  CompressedAllReduce car(*world, {runtime::Codec::None, 64});
  std::vector<float> mine(n), exact(n);
  for (int64_t i = 0; i < n; ++i) mine[i] = exact[i] = contribution(world->rank(), i);
  car.allReduce(mine.data(), n, ReduceOp::Avg);
  world->allReduce(exact.data(), n, ReduceOp::Avg);
  EXPECT_EQ(mine, exact);
  CompressedAllReduce fp4(*world, {runtime::Codec::Fp4, 64}, true);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = 1.0f + static_cast<float>(i % 7);
  fp4.allReduce(x.data(), n, ReduceOp::Avg, 3);
  // The residual: n contributed values, then the shard this rank reduces of every chunk.
  int64_t owned = 0;
  const int64_t len = (n + 3) / 4;
  for (int64_t begin = 0; begin < n; begin += len) owned += fp4.shardSize(std::min(len, n - begin));
  ASSERT_EQ(static_cast<int64_t>(fp4.residual(3).size()), n + owned);
  for (int64_t i : {int64_t{0}, CompressedAllReduce::kChunkValues + 1, n - 1})
    EXPECT_NEAR(x[i], 1.0f + static_cast<float>(i % 7), (1.0f + static_cast<float>(i % 7)) / 2)
        << i;
}

TEST(CompressedAllReduce, ErrorFeedbackCarriesWhatWasDropped) {
  // One rank, topk: each call sends the largest quarter of x + residual; what was sent plus the
  // final residual must add up to everything that was put in.
  LocalCommunicator local;
  CompressedAllReduce car(local, {runtime::Codec::Topk, 64, 0.25}, true);
  const int64_t n = 256;
  std::vector<float> x = noisy(0, n), sent_total(n, 0.0f);
  const int calls = 12;
  for (int k = 0; k < calls; ++k) {
    std::vector<float> y = x;
    car.allReduce(y.data(), n);
    for (int64_t i = 0; i < n; ++i) sent_total[i] += y[i];
  }
  // One rank reduces the whole tensor: its residual is n contributed values, then n reduced.
  const std::vector<float>& r = car.residual();
  ASSERT_EQ(r.size(), static_cast<std::size_t>(2 * n));
  for (int64_t i = 0; i < n; ++i)
    ASSERT_NEAR(sent_total[i] + r[i] + r[n + i], calls * x[i], 1e-3 * calls * (1 + std::fabs(x[i])))
        << i;
  std::vector<float> wrong(n + 1);
  EXPECT_THROW(car.allReduce(wrong.data(), n + 1), CommError);  // residual is per tensor size
}

// A gradient codec with error feedback keys each all-reduce by its place in the round, so the
// two tensors of every round (of different sizes, as a step's buckets are) keep a residual
// each: over the rounds, what was sent plus the residual adds up to everything put in.
TEST(CodecCommunicator, ErrorFeedbackKeepsOneResidualPerTensorOfARound) {
  LocalCommunicator local;
  CodecCommunicator codec(local, {runtime::Codec::Topk, 64, 0.25}, true);
  const std::vector<float> a = noisy(1, 256), b = noisy(2, 100), c = noisy(3, 192);
  std::vector<float> sent_a(a.size(), 0.0f), sent_b(b.size(), 0.0f), sent_c(c.size(), 0.0f);
  const int rounds = 10;
  for (int k = 0; k < rounds; ++k) {
    std::vector<float> ya = a, yb = b, yc(c.size());
    auto wa = codec.allReduceAsync(ya.data(), static_cast<int64_t>(ya.size()), ReduceOp::Sum);
    auto wb = codec.allReduceAsync(yb.data(), static_cast<int64_t>(yb.size()), ReduceOp::Sum);
    auto wc = codec.reduceScatterAsync(c.data(), yc.data(), static_cast<int64_t>(c.size()),
                                       ReduceOp::Sum);  // one rank: its one block
    wa->wait();
    wb->wait();
    wc->wait();
    codec.newRound();
    for (std::size_t i = 0; i < a.size(); ++i) sent_a[i] += ya[i];
    for (std::size_t i = 0; i < b.size(); ++i) sent_b[i] += yb[i];
    for (std::size_t i = 0; i < c.size(); ++i) sent_c[i] += yc[i];
  }
  ASSERT_EQ(codec.codec().residuals().size(), 3u);
  const std::vector<float>& rc = codec.codec().residual(2);  // a reduce-scatter: no second hop
  ASSERT_EQ(rc.size(), c.size());
  for (std::size_t i = 0; i < c.size(); ++i)
    ASSERT_NEAR(sent_c[i] + rc[i], rounds * c[i], 1e-3 * rounds * (1 + std::fabs(c[i]))) << i;
  auto expectTracked = [&](int slot, const std::vector<float>& x, const std::vector<float>& sent) {
    // Contributed values, then the reduced shard (padded to whole codec blocks).
    const std::vector<float>& r = codec.codec().residual(slot);
    ASSERT_GE(r.size(), 2 * x.size());
    for (std::size_t i = 0; i < x.size(); ++i)
      ASSERT_NEAR(sent[i] + r[i] + r[x.size() + i], rounds * x[i],
                  1e-3 * rounds * (1 + std::fabs(x[i])))
          << "slot " << slot << ", " << i;
  };
  expectTracked(0, a, sent_a);
  expectTracked(1, b, sent_b);
}

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST_F(Comm, TopologyCountsAndEmulatesPerTier) {
  if (world->size() < 4) GTEST_SKIP() << "needs 2 tiers of 2 ranks";
  // node: fast and not slowed; wan: 100 Mbit/s emulated.
  Topology topo(*world, {{"node", 2, 0, 0}, {"wan", 0, 100e6 / 8, 0.001}}, 0, true);
  HierarchicalCommunicator hier({&topo.level(0), &topo.level(1)}, world.get(), "hier");
  const int64_t n = 1 << 20;  // 4 MiB
  std::vector<float> x(n, 1.0f);
  world->barrier();
  const auto start = Clock::now();
  hier.allReduce(x.data(), n);
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(x[0], static_cast<float>(world->size()));
  const auto traffic = topo.tierTraffic();
  const double p_wan = static_cast<double>(topo.tierSize(1));
  // The wan tier carries the all-reduce of a half-size shard: 2 (k-1)/k * 4n/2 bytes.
  EXPECT_DOUBLE_EQ(traffic.at("wan").bytes_sent, 2 * (p_wan - 1) / p_wan * 4.0 * n / 2);
  // node carries the reduce-scatter and the all-gather: (2-1) * 4n/2 bytes each.
  EXPECT_DOUBLE_EQ(traffic.at("node").bytes_sent, 2 * 4.0 * n / 2);
  EXPECT_GE(took, traffic.at("wan").bytes_sent / (100e6 / 8));  // the slow tier paced it
}

TEST_F(Comm, EmulatedLinkTakesBytesOverBandwidth) {
  const double p = world->size();
  LinkCommunicator slow(*world, "wan", {100e6 / 8, 0.0});  // 100 Mbit/s
  const int64_t n = 4 << 20;                               // 16 MiB of f32
  std::vector<float> x(n, 1.0f);
  world->barrier();
  const auto start = Clock::now();
  slow.allReduce(x.data(), n);
  const double took = secondsSince(start);
  const double expected = 2 * (p - 1) / p * 4.0 * n / (100e6 / 8);
  EXPECT_NEAR(took / expected, 1.0, 0.2) << took << " s for " << expected << " s of wire time";
  EXPECT_EQ(x[5], p);
  const OpTraffic t = slow.traffic().at("all-reduce");
  EXPECT_EQ(t.ops, 1);
  EXPECT_DOUBLE_EQ(t.bytes_sent, 2 * (p - 1) / p * 4.0 * n);
}

TEST_F(Comm, LinkSharesBandwidthAndCountsOverlap) {
  LinkCommunicator slow(*world, "wan", {100e6 / 8, 0.002});
  const int64_t n = 1 << 18;  // 1 MiB
  const double one = 2.0 * (world->size() - 1) / world->size() * 4.0 * n / (100e6 / 8) + 0.002;
  std::vector<float> a(n, 1.0f), b(n, 2.0f);
  world->barrier();
  auto start = Clock::now();
  auto wa = slow.allReduceAsync(a.data(), n, ReduceOp::Sum);
  auto wb = slow.allReduceAsync(b.data(), n, ReduceOp::Sum);
  wa->wait();
  wb->wait();
  // The second op queues behind the first on this rank's link.
  EXPECT_GT(secondsSince(start), 1.8 * (one - 0.002));
  // An op started before compute and waited for afterwards is overlapped, not blocked.
  world->barrier();
  auto w = slow.allReduceAsync(a.data(), n, ReduceOp::Sum);
  start = Clock::now();
  while (secondsSince(start) < 2 * one) {
  }
  w->wait();
  const OpTraffic t = slow.traffic().at("total");
  EXPECT_EQ(t.ops, 3);
  EXPECT_GT(t.overlapped_s, 0.5 * one);
  EXPECT_LT(t.blocked_s, 2.5 * one + 0.1);  // the first two were waited for
}

#if LB_WITH_CUDA
// NCCL on the GPUs of this job: each rank uses GPU (rank % count). Skips without a GPU.
TEST_F(Comm, NcclAllReduceAndReduceScatterOnDeviceMemory) {
  const runtime::CudaProbe& probe = runtime::probeCuda();
  if (probe.count == 0) GTEST_SKIP() << "no usable GPU: " << probe.message;
  const runtime::Device gpu = runtime::Device::cuda(world->rank() % probe.count);
  runtime::Stream compute(gpu);
  NcclCommunicator nccl(*world, gpu.index, compute.handle(), "world");
  const int64_t n = 1 << 20, p = world->size();
  std::vector<float> host(p * n);
  for (int64_t i = 0; i < p * n; ++i) host[i] = contribution(world->rank(), i);
  runtime::Storage dev(gpu, p * n * sizeof(float)), out(gpu, n * sizeof(float));
  runtime::copyBytes(compute, dev.data(), gpu, host.data(), runtime::Device::cpu(),
                     host.size() * 4);
  nccl.reduceScatterAsync(static_cast<float*>(dev.data()), static_cast<float*>(out.data()), n,
                          ReduceOp::Sum)
      ->wait();
  auto w = nccl.allReduceAsync(static_cast<float*>(dev.data()), p * n, ReduceOp::Avg);
  nccl.streamWait(*w, compute.handle());
  std::vector<float> back(p * n), shard(n);
  runtime::copyBytes(compute, back.data(), runtime::Device::cpu(), dev.data(), gpu,
                     back.size() * 4);
  runtime::copyBytes(compute, shard.data(), runtime::Device::cpu(), out.data(), gpu, n * 4);
  compute.synchronize();
  for (int64_t i = 0; i < n; i += 997) ASSERT_EQ(shard[i], sumOver(world->rank() * n + i));
  for (int64_t i = 0; i < p * n; i += 997) ASSERT_FLOAT_EQ(back[i], sumOver(i) / p);
}
#endif

TEST(LocalCommunicator, IsTheIdentityOfOneRank) {
  LocalCommunicator local;
  std::vector<float> x = {1, 2, 3}, y(3);
  local.allReduce(x.data(), 3, ReduceOp::Avg);
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3}));
  local.allGather(x.data(), y.data(), 3);
  EXPECT_EQ(y, x);
  local.reduceScatter(x.data(), y.data(), 3);
  EXPECT_EQ(y, x);
  EXPECT_TRUE(local.barrierAsync()->isCompleted());
  EXPECT_THROW(local.broadcast(x.data(), 3, 1), CommError);
}

}  // namespace
}  // namespace lowband::comm
