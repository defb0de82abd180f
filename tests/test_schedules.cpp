// Schedules under `mpiexec -n 2` and `-n 4`: the equivalences of issue "schedules" between
// methods, and each outer method against a reference computed by hand in the test from every
// replica's parameters (gathered over MPI here, not through the strategy).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/topology.h"
#include "nn/gpt.h"
#include "nn/optimizer.h"
#include "runtime/kernels.h"
#include "runtime/stream.h"
#include "schedules/co2.h"
#include "schedules/diloco.h"
#include "schedules/fragments.h"
#include "schedules/strategy.h"
#include "tests/mpi_test_main.h"

namespace lowband::schedules {
namespace {

constexpr int64_t kRows = 2, kSeq = 8, kVocab = 64;

nn::GptShape tinyShape(int64_t layers = 4) { return {layers, 32, 2, kSeq, kVocab}; }

// Tokens of rank r at step i: a fixed pseudo-random function, so any process can make any
// rank's batch (the single-rank reference of ddp trains on all of them).
void fillTokens(int r, int64_t step, int64_t rows, int32_t* tokens, int32_t* targets) {
  for (int64_t j = 0; j < rows * kSeq; ++j) {
    uint64_t h = (static_cast<uint64_t>(r) * 1000003u + static_cast<uint64_t>(step)) * 2654435761u +
                 static_cast<uint64_t>(j) * 40503u;
    h ^= h >> 13;
    h *= 0x9E3779B97F4A7C15ull;
    tokens[j] = static_cast<int32_t>((h >> 20) % kVocab);
    targets[j] = static_cast<int32_t>((h >> 40) % kVocab);
  }
}

nn::OptimizerSettings plainSgd() {
  nn::OptimizerSettings o;
  o.type = nn::OptimizerType::Sgd;
  o.lr = 0.5f;
  o.momentum = 0;
  o.weight_decay = 0;
  o.grad_clip = 0;
  o.warmup = 0;
  o.schedule = nn::Schedule::Constant;
  return o;
}

nn::OptimizerSettings adamw() {
  nn::OptimizerSettings o;
  o.lr = 1e-2f;
  o.warmup = 0;
  o.schedule = nn::Schedule::Constant;
  return o;
}

// One rank's model, optimizer and strategy over a topology of tiers (innermost first) whose
// tier `outer_tier` separates replicas; by default replicas of `replica_ranks` over a wan.
class Replica {
 public:
  Replica(comm::MpiCommunicator& world, int replica_ranks, const SyncSettings& s,
          const nn::OptimizerSettings& opt, int64_t layers = 4)
      : Replica(world, {{"node", replica_ranks}, {"wan", 0}}, 1, s, opt, layers) {}
  Replica(comm::MpiCommunicator& world, const std::vector<comm::TierSpec>& tiers, int outer_tier,
          const SyncSettings& s, const nn::OptimizerSettings& opt, int64_t layers = 4,
          const std::map<int, runtime::CodecSpec>& codecs = {}, bool codec_error_feedback = false)
      : rank_(world.rank()),
        topology_(world, tiers),
        groups_(topology_, world, outer_tier, codecs, codec_error_feedback),
        model_(tinyShape(layers), runtime::Device::cpu()) {
    model_.params().initialize(7, stream_);
    strategy_ = makeStrategy(s, model_.params(), groups_);
    model_.setGradsReadyHook([this](int g) { strategy_->onGradsReady(g); });
    model_.setParamsNeededHook([this](int g) { strategy_->onParamsNeeded(g); });
    const auto [begin, end] = strategy_->optimizerRange();
    optimizer_ = std::make_unique<nn::Optimizer>(model_.params(), opt, begin, end);
  }
  // One inner step on this rank's batch; `before_outer` sees the parameters between the
  // optimizer step and the outer sync.
  template <class F>
  void step(int64_t i, F&& before_outer) {
    std::vector<int32_t> tokens(kRows * kSeq), targets(kRows * kSeq);
    fillTokens(rank_, i, kRows, tokens.data(), targets.data());
    runtime::fill(stream_, model_.params().grads(), 0.0f);
    model_.forward(stream_, {tokens.data(), nullptr, targets.data(), kRows, kSeq});
    model_.backward(stream_);
    strategy_->beforeOptimizerStep();
    optimizer_->apply(stream_, i, strategy_->gradientNorm(stream_));
    before_outer();
    strategy_->afterOptimizerStep(i);
  }
  void step(int64_t i) {
    step(i, [] {});
  }
  std::vector<float> params() {
    const float* p = model_.params().params().data<float>();
    return {p, p + model_.params().size()};
  }
  int replica_ranks() { return groups_.replica().size(); }
  ReplicaGroups& groups() { return groups_; }
  Strategy& strategy() { return *strategy_; }
  nn::ParamStore& store() { return model_.params(); }
  const nn::Optimizer& optimizer() const { return *optimizer_; }
  std::map<std::string, comm::OpTraffic> tierTraffic() const { return topology_.tierTraffic(); }

 private:
  int rank_;
  runtime::Stream stream_;
  comm::Topology topology_;
  ReplicaGroups groups_;
  nn::Gpt model_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  std::unique_ptr<Strategy> strategy_;
};

class Schedules : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::mpiAvailable()) GTEST_SKIP() << "MPI could not be initialised";
    world = std::make_unique<comm::MpiCommunicator>(MPI_COMM_WORLD, "world");
  }
  // Replicas of 2 ranks where the world allows (sharded outer state), else of 1.
  int replicaRanks() const { return world->size() >= 4 ? 2 : 1; }
  // Trains setups `a` and `b` side by side on the same batches.
  struct SideBySide {
    std::vector<float> a, b;
    int64_t a_outer_steps;
  };
  SideBySide sideBySide(const SyncSettings& a, const SyncSettings& b,
                        const nn::OptimizerSettings& opt, int64_t steps) {
    Replica ra(*world, replicaRanks(), a, opt), rb(*world, replicaRanks(), b, opt);
    for (int64_t i = 0; i < steps; ++i) {
      ra.step(i);
      rb.step(i);
    }
    return {ra.params(), rb.params(), ra.strategy().stats().outer_steps};
  }
  // The mean over replicas of `mine` (one rank per replica: they agree inside a replica).
  std::vector<float> replicaMean(const std::vector<float>& mine, int replica_ranks) {
    const std::vector<float> all = gather(mine);
    const std::size_t n = mine.size();
    const int replicas = world->size() / replica_ranks;
    std::vector<float> mean(n, 0.0f);
    for (int q = 0; q < replicas; ++q)
      for (std::size_t j = 0; j < n; ++j) mean[j] += all[q * replica_ranks * n + j];
    for (float& v : mean) v /= static_cast<float>(replicas);
    return mean;
  }
  // Every rank's vector, rank-major.
  std::vector<float> gather(const std::vector<float>& mine) {
    std::vector<float> all(mine.size() * world->size());
    world->allGather(mine.data(), all.data(), static_cast<int64_t>(mine.size()));
    return all;
  }
  std::unique_ptr<comm::MpiCommunicator> world;
};

SyncSettings settingsOf(OuterMethod method, int64_t H) {
  SyncSettings s;
  s.method = method;
  s.H = H;
  return s;
}

void expectClose(const std::vector<float>& a, const std::vector<float>& b, float rel,
                 const char* what) {
  ASSERT_EQ(a.size(), b.size());
  float worst = 0;
  int64_t at = -1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const float err = std::fabs(a[i] - b[i]) / (1e-3f + std::fabs(b[i]));
    if (err > worst) worst = err, at = static_cast<int64_t>(i);
  }
  EXPECT_LE(worst, rel) << what << ": element " << at << ": " << a[at] << " vs " << b[at];
}

// Every tier's counted bytes equal the strategy's plan for `steps` steps.
void expectCountedAsPlanned(Replica& r, int64_t steps, const std::string& what) {
  const comm::TierBytes planned = r.strategy().plannedTraffic(steps);
  for (const auto& [tier, t] : r.tierTraffic()) {
    const double want = planned.count(tier) ? planned.at(tier) : 0.0;
    EXPECT_NEAR(t.bytes_sent, want, 1e-9 * std::max(1.0, want)) << what << ", tier " << tier;
  }
}

// Steps 0 .. steps-1 of every replica setup, side by side (their collectives interleave in the
// same order on every rank).
void stepTogether(std::initializer_list<Replica*> setups, int64_t steps) {
  for (int64_t i = 0; i < steps; ++i)
    for (Replica* r : setups) r->step(i);
}

// An int8 run's parameters differ from the f32 run's, by less than the codec's error allows.
void expectInt8Close(const std::vector<float>& f32, const std::vector<float>& int8) {
  float diff = 0;
  for (std::size_t i = 0; i < f32.size(); ++i) diff = std::max(diff, std::fabs(f32[i] - int8[i]));
  EXPECT_GT(diff, 0.0f) << "int8 gradients should not be lossless";
  EXPECT_LT(diff, 5e-3f) << "int8 gradients should stay close to f32 ones";
}

TEST_F(Schedules, FragmentPlansTileTheModel) {
  nn::Gpt gpt(tinyShape(6), runtime::Device::cpu());
  for (bool strided : {true, false})
    for (bool own : {false, true}) {
      const auto plan = planFragments(gpt.params(), 3, strided, own, 12);
      ASSERT_EQ(plan.size(), own ? 4u : 3u);
      int64_t total = 0;
      for (std::size_t p = 0; p < plan.size(); ++p) {
        total += plan[p].size;
        EXPECT_EQ(plan[p].offset, std::llround(p * 12.0 / plan.size()));
      }
      EXPECT_EQ(total, gpt.params().size());
      // strided: block b in fragment b mod 3; sequential: blocks {0,1} {2,3} {4,5}
      for (int b = 0; b < 6; ++b) {
        const int want = strided ? b % 3 : b / 2;
        EXPECT_NE(std::find(plan[want].groups.begin(), plan[want].groups.end(), b),
                  plan[want].groups.end());
      }
      const auto& emb = plan[own ? 3 : 0].groups;
      EXPECT_NE(std::find(emb.begin(), emb.end(), nn::kEmbeddingGroup), emb.end());
    }
  // t_p = round(p H / P): fragment 1 of 3 with H 12 syncs at 16, 28, ...
  const auto plan = planFragments(gpt.params(), 3, true, false, 12);
  EXPECT_FALSE(plan[1].syncsAt(4, 12));
  EXPECT_TRUE(plan[1].syncsAt(16, 12));
  EXPECT_TRUE(plan[0].syncsAt(12, 12));
}

// DDP on N ranks == 1 rank with N x the batch (plain SGD, mean loss).
TEST_F(Schedules, DdpEqualsOneRankWithTheWholeBatch) {
  SyncSettings s = settingsOf(OuterMethod::Ddp, 100);
  s.bucket_bytes = 16 << 10;  // several buckets, started during backward
  Replica ddp(*world, replicaRanks(), s, plainSgd());
  nn::Gpt ref(tinyShape(), runtime::Device::cpu());
  runtime::Stream stream;
  ref.params().initialize(7, stream);
  nn::Optimizer ref_opt(ref.params(), plainSgd());
  const int n = world->size();
  for (int64_t i = 0; i < 3; ++i) {
    ddp.step(i);
    std::vector<int32_t> tokens(n * kRows * kSeq), targets(n * kRows * kSeq);
    for (int r = 0; r < n; ++r)  // rank r's rows, in world rank order
      fillTokens(r, i, kRows, tokens.data() + r * kRows * kSeq, targets.data() + r * kRows * kSeq);
    runtime::fill(stream, ref.params().grads(), 0.0f);
    ref.forward(stream, {tokens.data(), nullptr, targets.data(), n * kRows, kSeq});
    ref.backward(stream);
    ref_opt.step(stream, i);
  }
  const float* p = ref.params().params().data<float>();
  expectClose(ddp.params(), {p, p + ref.params().size()}, 2e-5f, "ddp vs one rank");
}

// local_sgd with H = 1 == ddp with plain SGD: averaging parameters after identical-start SGD
// steps is averaging the gradients.
TEST_F(Schedules, LocalSgdH1EqualsDdp) {
  const SideBySide r = sideBySide(settingsOf(OuterMethod::LocalSgd, 1),
                                  settingsOf(OuterMethod::Ddp, 1), plainSgd(), 3);
  expectClose(r.a, r.b, 2e-5f, "local_sgd H=1 vs ddp");
  EXPECT_EQ(r.a_outer_steps, 3);
}

// diloco with outer lr 1, momentum 0 == local_sgd up to float rounding (inner plain SGD: AdamW
// would amplify the rounding of near-zero gradients into lr-sized differences).
TEST_F(Schedules, DilocoLr1Mu0EqualsLocalSgd) {
  SyncSettings d = settingsOf(OuterMethod::Diloco, 2);
  d.lr = 1;
  d.momentum = 0;
  const SideBySide r = sideBySide(d, settingsOf(OuterMethod::LocalSgd, 2), plainSgd(), 6);
  expectClose(r.a, r.b, 1e-5f, "diloco lr 1 mu 0 vs local_sgd");
  EXPECT_EQ(r.a_outer_steps, 3);
}

// streaming_diloco with one fragment and no overlap is diloco, bit for bit (whatever alpha).
TEST_F(Schedules, StreamingOneFragmentNoOverlapIsDiloco) {
  SyncSettings st = settingsOf(OuterMethod::StreamingDiloco, 3);
  st.fragments = 1;
  st.overlap = 0;
  st.alpha = 0.3;
  const SideBySide r = sideBySide(settingsOf(OuterMethod::Diloco, 3), st, adamw(), 7);
  EXPECT_EQ(r.a, r.b);
}

// streaming_diloco, P = 2, tau = 0: after each fragment's sync its parameters equal
// theta_global computed here by hand (nesterov on the mean over replicas of
// theta_global - theta_local), and the other fragment's parameters are untouched.
TEST_F(Schedules, StreamingFragmentsMatchHandComputedNesterov) {
  SyncSettings s = settingsOf(OuterMethod::StreamingDiloco, 4);
  s.fragments = 2;
  s.overlap = 0;
  s.lr = 0.7;
  s.momentum = 0.9;
  Replica r(*world, replicaRanks(), s, adamw());
  const auto plan = planFragments(r.store(), 2, true, false, s.H);
  const int k = r.replica_ranks();
  std::vector<float> global = r.params(), v(global.size(), 0.0f), expect;
  for (int64_t i = 0; i < 12; ++i) {
    const int64_t t = i + 1;
    std::vector<float> local;
    r.step(i, [&] { local = r.params(); });
    const std::vector<float> mean_local = replicaMean(local, k);
    expect = local;
    for (const Fragment& f : plan) {
      if (!f.syncsAt(t, s.H)) continue;
      for (const Span& sp : f.spans)
        for (int64_t j = sp.begin; j < sp.end; ++j) {
          const float mean = global[j] - mean_local[j];  // mean over replicas of Delta
          v[j] = 0.9f * v[j] + mean;
          global[j] -= 0.7f * (mean + 0.9f * v[j]);
          expect[j] = global[j];
        }
    }
    expectClose(r.params(), expect, 1e-5f, "streaming vs hand-computed");
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_EQ(r.strategy().stats().fragment_steps, (std::vector<int64_t>{3, 2}));
}

// tau >= 1: the exchange started at t lands after step t + tau, mixed with alpha into the
// parameters trained meanwhile; evalParams shows theta_global.
TEST_F(Schedules, StreamingOverlapMixesWithAlpha) {
  SyncSettings s = settingsOf(OuterMethod::StreamingDiloco, 4);
  s.fragments = 1;
  s.overlap = 1;
  s.alpha = 0.5;
  s.optimizer = OuterOptimizer::Average;
  Replica r(*world, replicaRanks(), s, adamw(), 2);
  const int k = r.replica_ranks();
  std::vector<float> init = r.params(), mean_at_sync;
  for (int64_t i = 0; i < 5; ++i) {
    std::vector<float> local;
    r.step(i, [&] { local = r.params(); });
    const int64_t t = i + 1;
    if (t == 4) {  // start: mean over replicas of theta_local (average: theta~ = that mean)
      mean_at_sync = replicaMean(local, k);
      EXPECT_EQ(r.params(), local) << "nothing lands before t + tau";
    }
    if (t == 5) {
      std::vector<float> expect(local.size());
      for (std::size_t j = 0; j < local.size(); ++j)
        expect[j] = 0.5f * local[j] + 0.5f * mean_at_sync[j];
      expectClose(r.params(), expect, 1e-5f, "alpha mix at t + tau");
      std::vector<float> eval(local.size());
      r.strategy().evalParams(eval.data());
      expectClose(eval, mean_at_sync, 1e-5f, "evaluation on theta_global");
    }
  }
}

// finish() lands what is in flight and syncs every fragment not synced at the last step: then
// all replicas hold the same parameters, equal to theta_global.
TEST_F(Schedules, StreamingFinishLeavesOneModel) {
  SyncSettings s = settingsOf(OuterMethod::StreamingDiloco, 4);
  s.fragments = 2;
  s.overlap = 1;
  Replica r(*world, replicaRanks(), s, adamw());
  for (int64_t i = 0; i < 7; ++i) r.step(i);  // fragment 1 synced at t = 6, fragment 0 at 4
  const int64_t before = r.strategy().stats().outer_steps;
  r.strategy().finish();
  EXPECT_EQ(r.strategy().stats().outer_steps, before + 2);  // the flush of both fragments
  const std::vector<float> params = r.params();
  std::vector<float> global(params.size());
  r.strategy().evalParams(global.data());
  EXPECT_EQ(params, global);
  const std::vector<float> all = gather(params);
  for (int q = 1; q < world->size(); ++q)
    EXPECT_TRUE(std::equal(params.begin(), params.end(), all.begin() + q * params.size()))
        << "rank " << q << " differs";
}

// Per-replica tau (heterogeneous workers): replica q waits for the exchange started at t after
// step t + 1 + q, and mixes it into what it trained meanwhile.
TEST_F(Schedules, StreamingPerReplicaOverlap) {
  SyncSettings s = settingsOf(OuterMethod::StreamingDiloco, 6);
  s.fragments = 1;
  s.alpha = 0.5;
  s.optimizer = OuterOptimizer::Average;
  const int k = replicaRanks(), replica = world->rank() / k;
  s.overlap = 1 + replica % 2;
  Replica r(*world, k, s, adamw(), 2);
  std::vector<float> mean_at_sync;
  for (int64_t i = 0; i < 9; ++i) {
    std::vector<float> local;
    r.step(i, [&] { local = r.params(); });
    const int64_t t = i + 1;
    if (t == 6) mean_at_sync = replicaMean(local, k);
    if (t == 6 + s.overlap) {
      std::vector<float> expect(local.size());
      for (std::size_t j = 0; j < local.size(); ++j)
        expect[j] = 0.5f * local[j] + 0.5f * mean_at_sync[j];
      expectClose(r.params(), expect, 1e-5f, "per-replica overlap");
    } else {
      EXPECT_EQ(r.params(), local) << "step " << t << ": nothing lands here";
    }
  }
}

// land_in_forward: an exchange due after step t lands in step t + 1's forward, just before the
// fragment's first group is read, and the training is the same bit for bit as landing it at the
// end of step t; evalParams lands what is due first.
TEST_F(Schedules, StreamingLandsInTheNextForwardBitForBit) {
  for (int64_t overlap : {0, 1}) {
    SCOPED_TRACE("overlap " + std::to_string(overlap));
    SyncSettings s = settingsOf(OuterMethod::StreamingDiloco, 4);
    s.fragments = 2;
    s.overlap = overlap;
    SyncSettings deferred = s;
    deferred.land_in_forward = true;
    Replica a(*world, replicaRanks(), s, adamw());
    Replica b(*world, replicaRanks(), deferred, adamw());
    for (int64_t i = 0; i < 11; ++i) {
      a.step(i);
      b.step(i);
      const int64_t landed_a = a.strategy().stats().outer_steps;
      const int64_t landed_b = b.strategy().stats().outer_steps;
      if (i + 1 >= 4 + overlap && (i + 1 - overlap) % 2 == 0) {  // a fragment is due (t_p 0, 2)
        EXPECT_EQ(landed_b, landed_a - 1) << "step " << i + 1 << ": lands in the next forward";
        EXPECT_NE(a.params(), b.params());
      } else {
        EXPECT_EQ(landed_b, landed_a) << "step " << i + 1;
        EXPECT_EQ(a.params(), b.params()) << "step " << i + 1;
      }
      if (i == 7) {  // due at t = 8 with overlap 0: evalParams lands it
        std::vector<float> ea(a.params().size()), eb(ea.size());
        a.strategy().evalParams(ea.data());
        b.strategy().evalParams(eb.data());
        EXPECT_EQ(ea, eb);
        EXPECT_EQ(a.params(), b.params()) << "after evalParams";
      }
    }
    a.strategy().finish();
    b.strategy().finish();
    EXPECT_EQ(a.params(), b.params());
    EXPECT_EQ(a.strategy().stats().fragment_steps, b.strategy().stats().fragment_steps);
  }
}

// co2 with penalty none, no clipping, beta 0, lr 1: x_o(k+1) = x_o(k) - (x_o(k-1) - xbar(k-1)),
// i.e. each round's mean progress applied one round late.
TEST_F(Schedules, Co2WithoutPenaltyIsOneRoundDelayedAveraging) {
  SyncSettings s = settingsOf(OuterMethod::Co2, 2);
  s.penalty = GapPenalty::None;
  s.clip = ClipMode::Off;
  s.momentum = 0;
  s.lr = 1;
  Replica r(*world, replicaRanks(), s, adamw(), 2);
  const int k = r.replica_ranks();
  std::vector<float> xo = r.params(), xprev = xo, xbar_prev;
  for (int64_t i = 0; i < 8; ++i) {
    std::vector<float> local;
    r.step(i, [&] { local = r.params(); });
    if ((i + 1) % s.H != 0) continue;
    const std::vector<float> xbar = replicaMean(local, k);
    std::vector<float> next = xo;
    if (!xbar_prev.empty())
      for (std::size_t j = 0; j < xo.size(); ++j) next[j] = xo[j] - (xprev[j] - xbar_prev[j]);
    xprev = xo;
    xo = next;
    xbar_prev = xbar;
    expectClose(r.params(), xo, 1e-5f, "co2 vs one-round delayed averaging");
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_EQ(r.strategy().stats().outer_steps, 3);
  r.strategy().finish();  // lands round 3's exchange: x_o(5) = x_o(4) - (x_o(3) - xbar(3))
  std::vector<float> expect(xo.size());
  for (std::size_t j = 0; j < xo.size(); ++j) expect[j] = xo[j] - (xprev[j] - xbar_prev[j]);
  expectClose(r.params(), expect, 1e-5f, "co2 finish");
}

// co2 with the gap penalty and value clipping against the same equations computed here.
TEST_F(Schedules, Co2GapPenaltyAndClipMatchTheEquations) {
  SyncSettings s = settingsOf(OuterMethod::Co2, 2);
  s.penalty = GapPenalty::Gap;
  s.penalty_eps = 1e-8;
  s.clip = ClipMode::Value;
  s.clip_threshold = 2e-3;
  s.momentum = 0.5;
  s.lr = 0.7;
  Replica r(*world, replicaRanks(), s, adamw(), 2);
  const int k = r.replica_ranks();
  const std::size_t n = r.params().size();
  std::vector<float> xo = r.params(), xprev = xo, m(n, 0.0f), xbar_prev;
  double u = 0;
  int64_t updates = 0;
  bool clipped = false;
  for (int64_t i = 0; i < 10; ++i) {
    std::vector<float> local;
    r.step(i, [&] { local = r.params(); });
    if ((i + 1) % s.H != 0) continue;
    const std::vector<float> xbar = replicaMean(local, k);
    if (!xbar_prev.empty()) {
      double abs_sum = 0;
      for (std::size_t j = 0; j < n; ++j) {
        const float lambda =
            1.0f / (1.0f + std::fabs(xo[j] - xprev[j]) / (1e-8f + static_cast<float>(u)));
        m[j] = 0.5f * m[j] + lambda * (xprev[j] - xbar_prev[j]);
        clipped |= std::fabs(m[j]) > 2e-3f;
        m[j] = std::clamp(m[j], -2e-3f, 2e-3f);
        abs_sum += std::fabs(m[j]);
        xprev[j] = xo[j];
        xo[j] -= 0.7f * m[j];
      }
      ++updates;
      u += (0.7 * abs_sum / static_cast<double>(n) - u) / static_cast<double>(updates);
    } else {
      xprev = xo;
    }
    xbar_prev = xbar;
    // The whole-model sums are f32 over shards here and f64 in the test; AdamW turns such
    // rounding into small parameter differences over the rounds.
    expectClose(r.params(), xo, 5e-4f, "co2 gap + clip vs equations");
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_TRUE(clipped) << "the threshold should bite in this test";
}

// An fp4 exchange differs from the f32 one by at most the codec's bound (runtime/codec.h)
// on each replica's contribution plus that of the re-quantised mean.
TEST_F(Schedules, Fp4ExchangeStaysWithinTheCodecBound) {
  SyncSettings s = settingsOf(OuterMethod::StreamingDiloco, 3);
  s.fragments = 1;
  s.overlap = 0;
  s.optimizer = OuterOptimizer::Average;  // theta_local = theta_global - mean Delta
  SyncSettings q = s;
  q.codec.codec = runtime::Codec::Fp4;
  q.codec.block = 32;
  Replica a(*world, replicaRanks(), s, adamw(), 2);
  Replica b(*world, replicaRanks(), q, adamw(), 2);
  const std::vector<float> init = a.params();
  std::vector<float> local;
  for (int64_t i = 0; i < 3; ++i) {
    a.step(i);
    b.step(i, [&] { local = b.params(); });
  }
  const int ranks = world->size(), k = a.replica_ranks(), replicas = ranks / k;
  const std::size_t n = init.size();
  const std::vector<float> all = gather(local);
  // Bound with A = the largest |Delta| anywhere (>= every block's absmax), per element j:
  //   mean_r e_r <= m_j / 3 + A / 128, |mean| <= m_j + that, e_mean <= |mean| / 3 + A' / 128.
  float A = 0;
  std::vector<float> m(n, 0.0f);
  for (int q2 = 0; q2 < replicas; ++q2)
    for (std::size_t j = 0; j < n; ++j) {
      const float d = std::fabs(init[j] - all[q2 * k * n + j]);
      A = std::max(A, d);
      m[j] += d / static_cast<float>(replicas);
    }
  const std::vector<float> exact = a.params(), coded = b.params();
  float worst_excess = -1, biggest = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const float contrib = m[j] / 3 + A / 128;
    const float mean_bound = m[j] + contrib;
    const float bound = contrib + mean_bound / 3 + (A + A / 3 + A / 128) / 128;
    const float diff = std::fabs(exact[j] - coded[j]);
    biggest = std::max(biggest, diff);
    worst_excess = std::max(worst_excess, diff - bound * 1.001f - 1e-7f);
  }
  EXPECT_LE(worst_excess, 0.0f);
  EXPECT_GT(biggest, 0.0f) << "fp4 should not be lossless here";
}

// zero1 and zero2 train like ddp (the same parameters to float-order tolerance, clipping
// active) over gradient groups of 1, 2 and 3 tiers, on a 3-block model whose parameter count
// does not split evenly into aligned shards; each optimizer holds 1/k of the state; and the
// traffic counted per tier equals the strategy's plan. zero2 sums gradients in another order
// (reduce-scatter): AdamW would turn the rounding noise of gradients that are exactly 0 in
// exact arithmetic (the attention key bias) into +-lr steps, so zero2 is compared under SGD
// with momentum; zero1 (the same all-reduce as ddp) under both.
TEST_F(Schedules, ZeroEqualsDdpOverOneTwoAndThreeTiers) {
  const int n = world->size();
  struct Layout {
    std::vector<comm::TierSpec> tiers;
    int outer_tier;
    OuterMethod method;
  };
  std::vector<Layout> layouts = {
      {{{"world", 0}}, 0, OuterMethod::Ddp},                // one tier: flat over the world
      {{{"node", 2}, {"wan", 0}}, 1, OuterMethod::Ddp},     // two tiers, hierarchical world
      {{{"node", 2}, {"wan", 0}}, 1, OuterMethod::Diloco},  // inside replicas of 2, diloco
  };
  if (n == 4) layouts.push_back({{{"node", 2}, {"rack", 2}, {"wan", 0}}, 2, OuterMethod::Ddp});
  if (n == 4)  // three tiers inside the replica, a fourth (of size 1) across
    layouts.push_back({{{"node", 2}, {"rack", 2}, {"wan", 0}}, 2, OuterMethod::LocalSgd});
  // SGD unclipped (sees the gradients' scale), SGD and AdamW clipped below the gradient norms
  // (see the norm combined over the shards).
  nn::OptimizerSettings momentum = plainSgd();
  momentum.momentum = 0.9f;
  momentum.weight_decay = 0.01f;
  nn::OptimizerSettings clipped = momentum, adam = adamw();
  clipped.grad_clip = adam.grad_clip = 0.05f;
  for (const Layout& l : layouts)
    for (const nn::OptimizerSettings& opt : {momentum, clipped, adam}) {
      const bool is_adam = opt.type == nn::OptimizerType::AdamW;
      SyncSettings ddp = settingsOf(l.method, 3);
      ddp.bucket_bytes = 16 << 10;
      Replica reference(*world, l.tiers, l.outer_tier, ddp, opt, 3);
      for (InnerMethod inner : {InnerMethod::Zero1, InnerMethod::Zero2}) {
        if (is_adam && inner == InnerMethod::Zero2) continue;
        SyncSettings zero = ddp;
        zero.inner = inner;
        Replica sharded(*world, l.tiers, l.outer_tier, zero, opt, 3);
        for (int64_t i = 0; i < 5; ++i) sharded.step(i);
        sharded.strategy().finish();
        if (inner == InnerMethod::Zero1) {
          for (int64_t i = 0; i < 5; ++i) reference.step(i);
          reference.strategy().finish();
        }
        const std::string what = std::string(inner == InnerMethod::Zero1 ? "zero1" : "zero2") +
                                 (is_adam             ? " adamw"
                                  : opt.grad_clip > 0 ? " sgd clipped"
                                                      : " sgd") +
                                 " over " + std::to_string(l.tiers.size()) + " tier(s)";
        expectClose(sharded.params(), reference.params(), 2e-5f, what.c_str());
        // Optimizer state: 1/k of the unsharded (AdamW: m and v), up to the aligned padding.
        const int k = l.method == OuterMethod::Ddp ? n : sharded.groups().replica().size();
        const auto [begin, end] = sharded.strategy().optimizerRange();
        const int64_t size = sharded.store().size();
        EXPECT_LE(end - begin, (size + k - 1) / k + nn::ParamStore::kAlign) << what;
        EXPECT_EQ(sharded.optimizer().state().numel(),
                  (is_adam ? 2 : 1) * std::max<int64_t>(1, end - begin))
            << what;
        expectCountedAsPlanned(sharded, 5, what);
      }
    }
}

// The slow tier under zero2 laid over the tiers (reduce-scatter and all-gather inside the node
// first) carries at most 1/k of what it carries when the same ranks form one flat tier
// (k = ranks per node), counted over two steps.
TEST_F(Schedules, HierarchicalZero2KeepsTheSlowTierToOneKth) {
  if (world->size() != 4) GTEST_SKIP() << "needs 4 ranks (2 nodes of 2)";
  SyncSettings s = settingsOf(OuterMethod::Ddp, 100);
  s.inner = InnerMethod::Zero2;
  Replica layered(*world, {{"node", 2}, {"slow", 0}}, 1, s, plainSgd(), 3);
  Replica flat(*world, {{"slow", 0}}, 0, s, plainSgd(), 3);
  stepTogether({&layered, &flat}, 2);
  const double layered_bytes = layered.tierTraffic().at("slow").bytes_sent;
  const double flat_bytes = flat.tierTraffic().at("slow").bytes_sent;
  EXPECT_GT(layered_bytes, 0);
  EXPECT_LE(layered_bytes, flat_bytes / 2) << layered_bytes << " vs flat " << flat_bytes;
  expectClose(layered.params(), flat.params(), 2e-5f, "layered vs flat zero2");
}

// Shards placed below the replica (schedules/zero.h) on 4 ranks laid out node 2 x rack 2: the
// optimizer split over the node only (replicated across the rack), and zero2's gradient shards
// on the node with the optimizer over the whole replica. Each trains like ddp, holds the state
// of its shard (1/2 or 1/4), the counters match the plan, and with the optimizer on the node the
// rack carries no parameter all-gather (the same rack bytes as ddp's gradient all-reduce).
TEST_F(Schedules, ZeroShardsPlacedBelowTheReplica) {
  if (world->size() != 4) GTEST_SKIP() << "needs 4 ranks (2 nodes of 2)";
  struct Case {
    std::vector<comm::TierSpec> tiers;
    int outer_tier;
    OuterMethod method;
    InnerMethod inner;
    int optimizer_tier, grads_tier, k;  // k: ranks the optimizer state is split over
  };
  const std::vector<comm::TierSpec> replica4 = {{"node", 2}, {"rack", 2}, {"wan", 0}};
  const std::vector<comm::TierSpec> world4 = {{"node", 2}, {"rack", 0}};
  const std::vector<Case> cases = {
      {replica4, 2, OuterMethod::LocalSgd, InnerMethod::Zero1, 0, 0, 2},
      {replica4, 2, OuterMethod::LocalSgd, InnerMethod::Zero2, 0, 0, 2},
      {replica4, 2, OuterMethod::LocalSgd, InnerMethod::Zero2, 1, 0, 4},
      {world4, 1, OuterMethod::Ddp, InnerMethod::Zero2, 0, 0, 2},  // outer ddp: the world
  };
  nn::OptimizerSettings opt = plainSgd();
  opt.momentum = 0.9f;
  opt.grad_clip = 0.05f;  // active: the norm combined over the gradient shards
  for (const Case& c : cases) {
    SyncSettings ddp = settingsOf(c.method, 1000);
    Replica reference(*world, c.tiers, c.outer_tier, ddp, opt, 3);
    SyncSettings zero = ddp;
    zero.inner = c.inner;
    zero.shard_optimizer_tier = c.optimizer_tier;
    zero.shard_grads_tier = c.grads_tier;
    Replica sharded(*world, c.tiers, c.outer_tier, zero, opt, 3);
    for (int64_t i = 0; i < 4; ++i) {
      reference.step(i);
      sharded.step(i);
    }
    const std::string what = std::string(c.inner == InnerMethod::Zero1 ? "zero1" : "zero2") +
                             " optimizer on tier " + std::to_string(c.optimizer_tier) +
                             ", grads on tier " + std::to_string(c.grads_tier);
    const std::string rack = c.tiers[1].name;
    if (c.optimizer_tier == 0 && c.inner == InnerMethod::Zero1) {
      EXPECT_EQ(sharded.tierTraffic().at(rack).bytes_sent,
                reference.tierTraffic().at(rack).bytes_sent)
          << what << ": the rack should carry only the gradients";
    }
    reference.strategy().finish();
    sharded.strategy().finish();
    expectCountedAsPlanned(sharded, 4, what);  // a run ending in finish()
    expectClose(sharded.params(), reference.params(), 2e-5f, what.c_str());
    const auto [begin, end] = sharded.strategy().optimizerRange();
    const int64_t size = sharded.store().size();
    EXPECT_LE(end - begin, (size + c.k - 1) / c.k + nn::ParamStore::kAlign) << what;
    // The shards tile the buffer once per copy of the optimizer state (world / k copies).
    float covered = static_cast<float>(end - begin);
    world->allReduce(&covered, 1);
    EXPECT_EQ(static_cast<int64_t>(covered), size * world->size() / c.k) << what;
    EXPECT_EQ(sharded.optimizer().state().numel(), std::max<int64_t>(1, end - begin)) << what;
  }
}

// zero2 with its gradient shards on the node and an int8 codec on the rack (ZeRO++ qgZ's
// layout): the rack all-reduces 1/2-sized gradient shards encoded, under a third of the f32
// bytes, within the codec's error of f32, counted == planned.
TEST_F(Schedules, Zero2GradientShardsEncodedOnTheSlowTier) {
  if (world->size() != 4) GTEST_SKIP() << "needs 4 ranks (2 nodes of 2)";
  const std::vector<comm::TierSpec> tiers = {{"node", 2}, {"rack", 2}, {"wan", 0}};
  SyncSettings s = settingsOf(OuterMethod::LocalSgd, 1000);
  s.inner = InnerMethod::Zero2;
  s.shard_optimizer_tier = s.shard_grads_tier = 0;
  Replica f32(*world, tiers, 2, s, plainSgd(), 3);
  Replica int8(*world, tiers, 2, s, plainSgd(), 3, {{1, {runtime::Codec::Int8, 64, 0}}});
  stepTogether({&f32, &int8}, 3);
  const double f32_bytes = f32.tierTraffic().at("rack").bytes_sent;
  const double int8_bytes = int8.tierTraffic().at("rack").bytes_sent;
  EXPECT_GT(int8_bytes, 0);
  EXPECT_LT(int8_bytes, f32_bytes / 3) << int8_bytes << " vs f32 " << f32_bytes;
  f32.strategy().finish();
  int8.strategy().finish();
  expectCountedAsPlanned(int8, 3, "int8");
  expectInt8Close(f32.params(), int8.params());
}

// An int8 gradient codec on the replica's outermost tier (ZeRO++ qgZ's idea: quantise only on
// the slow link): parameters stay within the codec's error of f32 ddp (not equal to them), the
// tier carries under a third of the f32 bytes, and the counters match the plan.
TEST_F(Schedules, GradientCodecOnTheSlowTierOfTheReplica) {
  const int n = world->size();
  // n = 2: a replica of one tier of 2; n = 4: a replica of node 2 x rack 2 (the codec on rack).
  const std::vector<comm::TierSpec> tiers =
      n == 4 ? std::vector<comm::TierSpec>{{"node", 2}, {"rack", 2}, {"wan", 0}}
             : std::vector<comm::TierSpec>{{"rack", 2}, {"wan", 0}};
  const int outer = n == 4 ? 2 : 1, slow = outer - 1;
  SyncSettings s = settingsOf(OuterMethod::LocalSgd, 1000);  // replicas of the whole world
  Replica f32(*world, tiers, outer, s, plainSgd(), 3);
  Replica int8(*world, tiers, outer, s, plainSgd(), 3, {{slow, {runtime::Codec::Int8, 64, 0}}});
  stepTogether({&f32, &int8}, 3);
  // The gradients' bytes (finish() adds an f32 parameter gather inside the replica).
  const double f32_bytes = f32.tierTraffic().at("rack").bytes_sent;
  const double int8_bytes = int8.tierTraffic().at("rack").bytes_sent;
  EXPECT_LT(int8_bytes, f32_bytes / 3) << int8_bytes << " vs f32 " << f32_bytes;
  f32.strategy().finish();
  int8.strategy().finish();
  expectInt8Close(f32.params(), int8.params());
  expectCountedAsPlanned(int8, 3, "int8");
}

// Error feedback on a gradient codec (int4 on the replica's slow tier): under plain SGD,
// theta = theta_0 - lr sum_t g_t, so carrying what each step's encoding dropped into the next
// step keeps the parameters nearer the f32 run's than dropping it; counted == planned.
TEST_F(Schedules, GradientCodecErrorFeedbackTracksF32) {
  const int n = world->size();
  const std::vector<comm::TierSpec> tiers =
      n == 4 ? std::vector<comm::TierSpec>{{"node", 2}, {"rack", 2}, {"wan", 0}}
             : std::vector<comm::TierSpec>{{"rack", 2}, {"wan", 0}};
  const int outer = n == 4 ? 2 : 1;
  const std::map<int, runtime::CodecSpec> int4 = {{outer - 1, {runtime::Codec::Int4, 64, 0}}};
  SyncSettings s = settingsOf(OuterMethod::LocalSgd, 1000);
  s.bucket_bytes = 16 << 10;  // several tensors per step, each with its own residual
  nn::OptimizerSettings sgd = plainSgd();
  sgd.lr = 0.05f;  // small steps: the runs stay close, the dropped error is what differs
  Replica f32(*world, tiers, outer, s, sgd, 3);
  Replica plain(*world, tiers, outer, s, sgd, 3, int4);
  Replica fed(*world, tiers, outer, s, sgd, 3, int4, true);
  stepTogether({&f32, &plain, &fed}, 8);
  auto distance = [&](Replica& r) {
    const std::vector<float> a = f32.params(), b = r.params();
    double d = 0;
    for (std::size_t j = 0; j < a.size(); ++j) d += double(a[j] - b[j]) * double(a[j] - b[j]);
    return std::sqrt(d);
  };
  const double with = distance(fed), without = distance(plain);
  EXPECT_GT(with, 0);
  EXPECT_LT(with, 0.7 * without) << "error feedback " << with << " vs none " << without;
  f32.strategy().finish();
  fed.strategy().finish();
  expectCountedAsPlanned(fed, 8, "int4 with error feedback");
}

// An encoded outer exchange across replicas that span two tiers (one-rank replicas over rack x
// wan): its byte all-to-all and all-gather run tier by tier, so both tiers' counters see them
// and match the plan.
TEST_F(Schedules, EncodedOuterExchangeOverTwoTiersIsCountedOnEach) {
  if (world->size() != 4) GTEST_SKIP() << "needs 4 ranks (2 x 2)";
  SyncSettings s = settingsOf(OuterMethod::Diloco, 2);
  s.codec = {runtime::Codec::Fp4, 64, 0};
  Replica r(*world, {{"rack", 2}, {"wan", 0}}, 0, s, plainSgd(), 3);
  for (int64_t i = 0; i < 4; ++i) r.step(i);
  r.strategy().finish();
  const auto traffic = r.tierTraffic();
  EXPECT_GT(traffic.at("rack").bytes_sent, 0);
  EXPECT_GT(traffic.at("wan").bytes_sent, 0);
  expectCountedAsPlanned(r, 4, "fp4 across rack x wan");
}

// Gradient codecs on a tier where the hierarchical collectives reduce-scatter (the node tier
// under ddp; the rack tier under zero2, whose gradients are reduce-scattered over the whole
// replica): the reduce-scatter goes encoded, the all-gather f32. The tier carries less than
// f32, the parameters stay within int8's error of f32, and the counters match the plan.
TEST_F(Schedules, GradientCodecsEncodeReduceScattersToo) {
  if (world->size() != 4) GTEST_SKIP() << "needs 4 ranks (2 nodes of 2)";
  const std::vector<comm::TierSpec> tiers = {{"node", 2}, {"rack", 2}, {"wan", 0}};
  struct Case {
    InnerMethod inner;
    int tier;  // the encoded one
  };
  for (const Case c : {Case{InnerMethod::Ddp, 0}, Case{InnerMethod::Zero2, 1}}) {
    SyncSettings s = settingsOf(OuterMethod::LocalSgd, 1000);
    s.inner = c.inner;
    const std::string what = std::string(c.inner == InnerMethod::Ddp ? "ddp" : "zero2") +
                             ", int8 on " + tiers[c.tier].name;
    Replica f32(*world, tiers, 2, s, plainSgd(), 3);
    Replica int8(*world, tiers, 2, s, plainSgd(), 3, {{c.tier, {runtime::Codec::Int8, 64, 0}}});
    stepTogether({&f32, &int8}, 3);
    const double f32_bytes = f32.tierTraffic().at(tiers[c.tier].name).bytes_sent;
    const double int8_bytes = int8.tierTraffic().at(tiers[c.tier].name).bytes_sent;
    EXPECT_LT(int8_bytes, 0.7 * f32_bytes) << what << ": " << int8_bytes << " vs " << f32_bytes;
    f32.strategy().finish();
    int8.strategy().finish();
    expectInt8Close(f32.params(), int8.params());
    expectCountedAsPlanned(int8, 3, what);
  }
}

}  // namespace
}  // namespace lowband::schedules