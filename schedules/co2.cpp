#include "schedules/co2.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "schedules/methods.h"

namespace lowband::schedules {

Co2::Co2(const SyncSettings& settings, nn::ParamStore& params, ReplicaGroups& groups)
    : GradientAveraging(settings, params, groups), s_(settings), groups_(groups) {
  plan_ = planFragments(params, 1, true, false, s_.H);
  shard_ =
      std::make_unique<FragmentShard>(plan_[0], groups.replica().rank(), groups.replica().size());
  const auto n = static_cast<std::size_t>(shard_->stride());
  xo_.assign(n, 0.0f);
  shard_->gatherOwn(params.params().data<float>(), xo_.data());
  xprev_ = xo_;
  m_.assign(n, 0.0f);
  snap_[0].assign(n, 0.0f);
  snap_[1].assign(n, 0.0f);
  stats_.fragment_steps.assign(1, 0);
  codec_ = makeCodec(s_, groups.across());
}

std::string Co2::describe() const {
  char text[160];
  std::snprintf(text, sizeof text, "co2 H %lld, lr %g, beta %g, penalty %s, clip %s, codec %s",
                static_cast<long long>(s_.H), s_.lr, s_.momentum,
                s_.penalty == GapPenalty::Gap        ? "gap"
                : s_.penalty == GapPenalty::Constant ? "constant"
                                                     : "none",
                s_.clip == ClipMode::Off     ? "off"
                : s_.clip == ClipMode::Value ? "value"
                                             : "norm",
                runtime::codecName(s_.codec.codec));
  return text;
}

void Co2::applyStale(const float* xbar) {
  const int64_t own = shard_->own();
  const float beta = static_cast<float>(s_.momentum), lr = static_cast<float>(s_.lr);
  const float phi = static_cast<float>(s_.clip_threshold);
  const float eps = static_cast<float>(s_.penalty_eps);
  const float inv_divisor = static_cast<float>(1.0 / s_.penalty_divisor);
  for (int64_t i = 0; i < own; ++i) {
    const float delta = xprev_[i] - xbar[i];
    float lambda = 1.0f;
    if (s_.penalty == GapPenalty::Gap)
      lambda = 1.0f / (1.0f + std::fabs(xo_[i] - xprev_[i]) / (eps + update_mean_));
    else if (s_.penalty == GapPenalty::Constant)
      lambda = inv_divisor;
    m_[i] = beta * m_[i] + lambda * delta;
    if (s_.clip == ClipMode::Value) m_[i] = std::clamp(m_[i], -phi, phi);
  }
  // Whole-model sums over the replica's shards: ||m||^2 and sum |m|.
  float sums[2] = {0, 0};
  for (int64_t i = 0; i < own; ++i) {
    sums[0] += m_[i] * m_[i];
    sums[1] += std::fabs(m_[i]);
  }
  groups_.replica().allReduce(sums, 2);
  float scale = 1.0f;
  if (s_.clip == ClipMode::Norm && std::sqrt(sums[0]) > phi) scale = phi / std::sqrt(sums[0]);
  for (int64_t i = 0; i < own; ++i) {
    m_[i] *= scale;
    xprev_[i] = xo_[i];
    xo_[i] -= lr * m_[i];
  }
  // u: the running mean of the mean |update| per element.
  const double u = lr * scale * sums[1] / static_cast<double>(shard_->packedSize());
  ++updates_;
  update_mean_ += static_cast<float>((u - update_mean_) / static_cast<double>(updates_));
  ++stats_.outer_steps;
  ++stats_.fragment_steps[0];
}

void Co2::afterOptimizerStep(int64_t step) {
  finishInnerStep();
  if ((step + 1) % s_.H != 0) return;
  const int landing = in_flight_;
  if (landing >= 0) land(exchange_, stats_.outer);
  const int next = landing == 0 ? 1 : 0;
  shard_->gatherOwn(params_.params().data<float>(), snap_[next].data());
  exchange_ = startMean(groups_.across(), codec_.get(), snap_[next].data(), shard_->own(), 0);
  in_flight_ = next;
  if (landing >= 0) applyStale(snap_[landing].data());  // round 0: x_o(1) = x_o(0)
  evalParams(params_.params().data<float>());           // the replica continues from x_o
}

void Co2::finish() {
  if (in_flight_ < 0) return;
  land(exchange_, stats_.outer);
  applyStale(snap_[in_flight_].data());
  in_flight_ = -1;
  evalParams(params_.params().data<float>());
}

void Co2::evalParams(float* out) {
  // The one fragment spans the whole buffer: every element of out is written.
  shard_->allGatherInto(groups_.replica(), xo_.data(), scratch_, out, 0.0f);
}

comm::TierBytes Co2::plannedTraffic(int64_t steps) const {
  comm::TierBytes out = GradientAveraging::plannedTraffic(steps);
  const int64_t rounds = steps / s_.H;
  // Each round's end: the exchange of the own shard; the stale update's two-float sums (from
  // the second round on, and once more in finish()) and evalParams' all-gather (every round,
  // and once more in finish()).
  const comm::TierBytes mean =
      codec_ ? codec_->wireBytes(shard_->own())
             : groups_.across().wireBytes(comm::Collective::AllReduce, shard_->own());
  comm::addTraffic(out, mean, static_cast<double>(rounds));
  comm::addTraffic(out, groups_.replica().wireBytes(comm::Collective::AllReduce, 2),
                   static_cast<double>(rounds));
  comm::addTraffic(out, evalTraffic(), static_cast<double>(rounds + (rounds > 0 ? 1 : 0)));
  return out;
}

void Co2::saveState(runtime::StateDict& out) {
  GradientAveraging::saveState(out);
  // The exchange in flight is waited for here; its mean stays in its snapshot and is applied
  // at the end of the round as usual (that wait is then a no-op).
  land(exchange_, stats_.outer);
  const int64_t own = shard_->own();
  out.putFloats("sync.outer", xo_.data(), own);
  out.putFloats("sync.outer_prev", xprev_.data(), own);
  out.putFloats("sync.momentum", m_.data(), own);
  out.putFloats("sync.snapshot", in_flight_ >= 0 ? snap_[in_flight_].data() : nullptr,
                in_flight_ >= 0 ? own : 0);
  out.putValue("sync.snapshot_index", in_flight_);
  out.putValue("sync.update_mean", update_mean_);
  out.putValue("sync.updates", updates_);
}

void Co2::loadState(const runtime::StateDict& in) {
  GradientAveraging::loadState(in);
  const int64_t own = shard_->own();
  in.getFloats("sync.outer", xo_.data(), own);
  in.getFloats("sync.outer_prev", xprev_.data(), own);
  in.getFloats("sync.momentum", m_.data(), own);
  in_flight_ = in.value<int>("sync.snapshot_index");
  if (in_flight_ < -1 || in_flight_ > 1)
    LB_THROW(ScheduleError, in.source() + ": sync.snapshot_index " + std::to_string(in_flight_) +
                                " is not -1, 0 or 1");
  if (in_flight_ >= 0) in.getFloats("sync.snapshot", snap_[in_flight_].data(), own);
  update_mean_ = in.value<float>("sync.update_mean");
  updates_ = in.value<int64_t>("sync.updates");
}

}  // namespace lowband::schedules

// ---- the descriptor of co2 ------------------------------------------------------------------

namespace lowband::schedules {

namespace {

// All parameters at the end of each round of H steps, applied one round late: the exchange
// lands before the forward of the round after next.
OuterSchedule co2Schedule(const OuterConfig& outer, int64_t layers, int64_t) {
  OuterSchedule s;
  s.period = outer.H;
  s.delay = outer.H;
  s.fragments = {{0, 0, layers}};
  return s;
}

}  // namespace

extern const OuterMethodSpec kCo2Method{
    OuterMethod::Co2,
    kKeyTier | kKeyH | kKeyCodec | kKeyOuterOptimizer | kKeyPenalty | kKeyClip,
    [](OuterConfig&, const std::function<bool(const std::string&)>&) {},
    [](const OuterConfig&, int64_t, std::vector<MethodProblem>&) {},
    co2Schedule,
    [](const OuterConfig&, int64_t, LayoutFields&) {},
    [](const SyncSettings& s, nn::ParamStore& params, ReplicaGroups& groups)
        -> std::unique_ptr<Strategy> { return std::make_unique<Co2>(s, params, groups); }};

}  // namespace lowband::schedules
