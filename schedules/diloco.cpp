#include "schedules/diloco.h"

#include <algorithm>

#include "schedules/methods.h"

namespace lowband::schedules {

StreamingDiloco::StreamingDiloco(const SyncSettings& settings, nn::ParamStore& params,
                                 ReplicaGroups& groups)
    : GradientAveraging(settings, params, groups), s_(settings), groups_(groups) {
  // local_sgd is diloco with plain averaging: theta_global - mean(theta_global - theta_local)
  // is the mean of theta_local, and an encoded exchange quantises the small Delta, not the
  // parameters themselves.
  if (s_.method == OuterMethod::LocalSgd) s_.optimizer = OuterOptimizer::Average;
  const bool streaming = s_.method == OuterMethod::StreamingDiloco;
  if (!streaming) {
    s_.fragments = 1;
    s_.embeddings_own = false;
    s_.overlap = 0;
  }
  if (s_.overlap < 0 || (s_.overlap > 0 && s_.overlap >= s_.H))
    LB_THROW(ScheduleError, "overlap " + std::to_string(s_.overlap) +
                                " must be in [0, H = " + std::to_string(s_.H) + ")");
  plan_ = planFragments(params, s_.fragments, s_.strided, s_.embeddings_own, s_.H);
  frags_.resize(plan_.size());
  const float* theta = params.params().data<float>();
  for (std::size_t p = 0; p < plan_.size(); ++p) {
    FragmentState& f = frags_[p];
    f.shard =
        std::make_unique<FragmentShard>(plan_[p], groups.replica().rank(), groups.replica().size());
    f.delta.assign(f.shard->stride(), 0.0f);
    f.global.assign(f.shard->stride(), 0.0f);
    f.shard->gatherOwn(theta, f.global.data());  // every replica starts from the same init
    if (s_.optimizer == OuterOptimizer::Nesterov) f.v.assign(f.shard->stride(), 0.0f);
  }
  for (std::size_t p = 0; p < plan_.size(); ++p)
    for (int g : plan_[p].groups) fragment_of_group_[g] = static_cast<int>(p);
  stats_.fragment_steps.assign(plan_.size(), 0);
  codec_ = makeCodec(s_, groups.across());
}

StreamingDiloco::~StreamingDiloco() {
  for (FragmentState& f : frags_) drain(f.exchange);
}

std::string StreamingDiloco::describe() const {
  std::string d = s_.method == OuterMethod::LocalSgd ? "local_sgd"
                  : s_.method == OuterMethod::Diloco ? "diloco"
                                                     : "streaming_diloco";
  d += " H " + std::to_string(s_.H);
  if (s_.method == OuterMethod::StreamingDiloco)
    d += ", " + std::to_string(plan_.size()) + " fragments, overlap " + std::to_string(s_.overlap);
  d += ", codec " + std::string(runtime::codecName(s_.codec.codec));
  return d;
}

void StreamingDiloco::start(int p, int64_t t) {
  FragmentState& f = frags_[p];
  const int64_t own = f.shard->own();
  f.shard->gatherOwn(params_.params().data<float>(), f.delta.data());
  for (int64_t i = 0; i < own; ++i) f.delta[i] = f.global[i] - f.delta[i];  // Delta
  f.exchange = startMean(groups_.across(), codec_.get(), f.delta.data(), own, p);
  f.due = t + s_.overlap;
  f.started = t;
  in_flight_.push_back(p);
}

void StreamingDiloco::landFragment(int p) {
  FragmentState& f = frags_[p];
  land(f.exchange, stats_.outer);
  const int64_t own = f.shard->own();
  const float lr = static_cast<float>(s_.lr), mu = static_cast<float>(s_.momentum);
  float* g = f.global.data();
  const float* d = f.delta.data();
  switch (s_.optimizer) {
    case OuterOptimizer::Nesterov:
      for (int64_t i = 0; i < own; ++i) {
        f.v[i] = mu * f.v[i] + d[i];
        g[i] -= lr * (d[i] + mu * f.v[i]);
      }
      break;
    case OuterOptimizer::Sgd:
      for (int64_t i = 0; i < own; ++i) g[i] -= lr * d[i];
      break;
    case OuterOptimizer::Average:
      for (int64_t i = 0; i < own; ++i) g[i] -= d[i];
      break;
  }
  // Mix only what was trained while the exchange was in flight (tau = 0 and the final flush:
  // nothing was, so theta_local = theta~).
  const float keep = last_step_ > f.started ? static_cast<float>(s_.alpha) : 0.0f;
  f.shard->allGatherInto(groups_.replica(), g, scratch_, params_.params().data<float>(), keep);
  ++stats_.fragment_steps[p];
  ++stats_.outer_steps;
}

void StreamingDiloco::landIfInFlight(int p, bool due_only) {
  const auto it = std::find(in_flight_.begin(), in_flight_.end(), p);
  if (it == in_flight_.end() || (due_only && frags_[p].due > last_step_)) return;
  in_flight_.erase(it);
  landFragment(p);
}

void StreamingDiloco::landDue() {
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (frags_[*it].due > last_step_) {
      ++it;
      continue;
    }
    const int p = *it;
    it = in_flight_.erase(it);
    landFragment(p);  // does not touch in_flight_
  }
}

void StreamingDiloco::onParamsNeeded(int group) {
  if (!s_.land_in_forward) return;
  const auto it = fragment_of_group_.find(group);
  if (it != fragment_of_group_.end()) landIfInFlight(it->second, true);
}

void StreamingDiloco::afterOptimizerStep(int64_t step) {
  finishInnerStep();
  const int64_t t = step + 1;
  last_step_ = t;
  // Exchanges due now land first (in start order; with land_in_forward at the next forward),
  // then fragments due now start.
  if (!s_.land_in_forward) landDue();
  for (std::size_t p = 0; p < plan_.size(); ++p) {
    if (!plan_[p].syncsAt(t, s_.H)) continue;
    // Its last exchange is long due (tau < H); still in flight only if no forward read it.
    landIfInFlight(static_cast<int>(p), false);
    start(static_cast<int>(p), t);
    if (s_.overlap == 0 && !s_.land_in_forward) landIfInFlight(static_cast<int>(p), false);
  }
}

void StreamingDiloco::finish() {
  while (!in_flight_.empty()) {
    const int p = in_flight_.front();
    in_flight_.pop_front();
    landFragment(p);
  }
  // Flush: every fragment not synced at the last step syncs once more, so theta_global (what
  // is evaluated and saved) holds all the replicas' work, not only that up to each fragment's
  // last offset.
  for (std::size_t p = 0; p < plan_.size(); ++p) {
    if (frags_[p].started == last_step_) continue;
    start(static_cast<int>(p), last_step_);
    in_flight_.pop_back();
    landFragment(static_cast<int>(p));
  }
}

void StreamingDiloco::evalParams(float* out) {
  landDue();
  // The fragments tile the whole buffer: every element of out is written.
  for (FragmentState& f : frags_)
    f.shard->allGatherInto(groups_.replica(), f.global.data(), scratch_, out, 0.0f);
}

comm::TierBytes StreamingDiloco::plannedTraffic(int64_t steps) const {
  comm::TierBytes out = GradientAveraging::plannedTraffic(steps);
  for (std::size_t p = 0; p < plan_.size(); ++p) {
    // Syncs at t in [1, steps], plus finish()'s flush when the last step is not one of them.
    int64_t syncs = 0;
    for (int64_t t = 1; t <= steps; ++t) syncs += plan_[p].syncsAt(t, s_.H);
    if (steps > 0 && !plan_[p].syncsAt(steps, s_.H)) ++syncs;
    const FragmentShard& shard = *frags_[p].shard;
    comm::addTraffic(out,
                     codec_ ? codec_->wireBytes(shard.own())
                            : groups_.across().wireBytes(comm::Collective::AllReduce, shard.own()),
                     static_cast<double>(syncs));
    comm::addTraffic(out, groups_.replica().wireBytes(comm::Collective::AllGather, shard.stride()),
                     static_cast<double>(syncs));
  }
  return out;
}

comm::TierBytes StreamingDiloco::evalTraffic() const {
  comm::TierBytes out;
  for (const FragmentState& f : frags_)
    comm::addTraffic(out,
                     groups_.replica().wireBytes(comm::Collective::AllGather, f.shard->stride()));
  return out;
}

int64_t StreamingDiloco::outerStateBytes() const {
  std::size_t floats = 0;  // (not the transient all-gather buffer)
  for (const FragmentState& f : frags_) floats += f.global.size() + f.v.size() + f.delta.size();
  return static_cast<int64_t>(floats * sizeof(float));
}

void StreamingDiloco::saveState(runtime::StateDict& out) {
  GradientAveraging::saveState(out);
  // Exchanges in flight are waited for here; their means stay in `delta` and are applied at
  // their due step (landFragment's wait is then a no-op), before and after a resume alike.
  for (int p : in_flight_) land(frags_[p].exchange, stats_.outer);
  for (std::size_t p = 0; p < frags_.size(); ++p) {
    const FragmentState& f = frags_[p];
    const std::string prefix = "sync.fragment" + std::to_string(p) + ".";
    out.putFloats(prefix + "global", f.global.data(), f.shard->own());
    out.putFloats(prefix + "momentum", f.v.data(), f.v.empty() ? 0 : f.shard->own());
    out.putFloats(prefix + "delta", f.delta.data(), f.shard->own());
    out.putValue(prefix + "due", f.due);
    out.putValue(prefix + "started", f.started);
    if (codec_ && codec_->errorFeedback()) {
      const std::vector<float>& r = codec_->residual(static_cast<int>(p));
      out.putFloats(prefix + "residual", r.data(), static_cast<int64_t>(r.size()));
    }
  }
  const std::vector<int32_t> order(in_flight_.begin(), in_flight_.end());
  out.put("sync.in_flight", order.data(), order.size() * sizeof(int32_t));
  out.putValue("sync.last_step", last_step_);
}

void StreamingDiloco::loadState(const runtime::StateDict& in) {
  GradientAveraging::loadState(in);
  for (std::size_t p = 0; p < frags_.size(); ++p) {
    FragmentState& f = frags_[p];
    const std::string prefix = "sync.fragment" + std::to_string(p) + ".";
    in.getFloats(prefix + "global", f.global.data(), f.shard->own());
    in.getFloats(prefix + "momentum", f.v.data(), f.v.empty() ? 0 : f.shard->own());
    in.getFloats(prefix + "delta", f.delta.data(), f.shard->own());
    f.due = in.value<int64_t>(prefix + "due");
    f.started = in.value<int64_t>(prefix + "started");
    if (codec_ && codec_->errorFeedback()) {
      codec_->setResidual(static_cast<int>(p), in.floats(prefix + "residual"));
    }
  }
  const std::span<const uint8_t> order = in.get("sync.in_flight");
  std::vector<int32_t> fragments(order.size() / sizeof(int32_t));
  in.getInto("sync.in_flight", fragments.data(), fragments.size() * sizeof(int32_t));
  in_flight_.clear();
  for (int32_t p : fragments) {
    if (p < 0 || p >= static_cast<int32_t>(frags_.size()))
      LB_THROW(ScheduleError, in.source() + ": sync.in_flight names fragment " + std::to_string(p) +
                                  " of " + std::to_string(frags_.size()));
    in_flight_.push_back(p);
  }
  last_step_ = in.value<int64_t>("sync.last_step");
}

}  // namespace lowband::schedules

// ---- the descriptors of local_sgd, diloco and streaming_diloco ------------------------------

namespace lowband::schedules {

namespace {

std::unique_ptr<Strategy> makeStreamingDiloco(const SyncSettings& s, nn::ParamStore& params,
                                              ReplicaGroups& groups) {
  return std::make_unique<StreamingDiloco>(s, params, groups);
}
void noDefaults(OuterConfig&, const std::function<bool(const std::string&)>&) {}
void noChecks(const OuterConfig&, int64_t, std::vector<MethodProblem>&) {}
void noLayout(const OuterConfig&, int64_t, LayoutFields&) {}

// All parameters every H steps, applied before the next step.
OuterSchedule everyH(const OuterConfig& outer, int64_t layers, int64_t) {
  OuterSchedule s;
  s.period = outer.H;
  s.fragments = {{0, 0, layers}};
  return s;
}

// Fragment p every H steps at offset round(p H / P), landing tau steps later.
OuterSchedule streamingSchedule(const OuterConfig& outer, int64_t layers, int64_t overlap) {
  OuterSchedule s;
  s.period = outer.H;
  s.delay = overlap;
  s.fragments = contiguousFragments(layers, outer.resolvedFragments(layers), outer.H);
  return s;
}

// Streaming syncs with overlap 1 and fp4 Deltas unless told otherwise (the paper's setting).
void streamingDefaults(OuterConfig& outer, const std::function<bool(const std::string&)>& set) {
  if (!set("overlap")) outer.overlap = 1;
  if (!set("codec")) outer.codec = runtime::Codec::Fp4;
}

void streamingChecks(const OuterConfig& outer, int64_t layers, std::vector<MethodProblem>& out) {
  const int64_t p = outer.resolvedFragments(layers);
  const std::string frag = std::to_string(p) + (outer.fragments.isAuto() ? " (auto)" : "");
  if (p > layers)
    out.push_back({"sync.outer.fragments",
                   "fragments " + frag + " > the model's " + std::to_string(layers) + " layers"});
  if (p > outer.H)
    out.push_back({"sync.outer.fragments", "fragments " + frag + " > H " + std::to_string(outer.H) +
                                               ": every fragment needs its own step offset "
                                               "within H"});
  auto checkTau = [&](const std::string& path, int64_t tau) {
    if (tau * p >= outer.H)
      out.push_back({path, "overlap " + std::to_string(tau) + " must be < H/fragments = " +
                               std::to_string(outer.H) + "/" + std::to_string(p) +
                               " (an exchange must land before the fragment's next sync); "
                               "lower it or fragments, or raise H"});
  };
  checkTau("sync.outer.overlap", outer.overlap);
  for (std::size_t i = 0; i < outer.overlap_per_replica.size(); ++i)
    checkTau("sync.outer.overlap_per_replica[" + std::to_string(i) + "]",
             outer.overlap_per_replica[i]);
}

void streamingLayout(const OuterConfig& outer, int64_t layers, LayoutFields& out) {
  out.emplace_back("fragments", std::to_string(outer.resolvedFragments(layers)));
}

}  // namespace

extern const OuterMethodSpec kLocalSgdMethod{
    OuterMethod::LocalSgd, kKeyTier | kKeyH | kKeyCodec, noDefaults, noChecks, everyH, noLayout,
    makeStreamingDiloco};

extern const OuterMethodSpec kDilocoMethod{OuterMethod::Diloco,
                                           kKeyTier | kKeyH | kKeyCodec | kKeyOuterOptimizer,
                                           noDefaults,
                                           noChecks,
                                           everyH,
                                           noLayout,
                                           makeStreamingDiloco};

extern const OuterMethodSpec kStreamingDilocoMethod{
    OuterMethod::StreamingDiloco,
    kKeyTier | kKeyH | kKeyFragments | kKeyOverlap | kKeyAlpha | kKeyCodec | kKeyOuterOptimizer,
    streamingDefaults,
    streamingChecks,
    streamingSchedule,
    streamingLayout,
    makeStreamingDiloco};

}  // namespace lowband::schedules
