#include "schedules/gradient_sync.h"

#include <cmath>

#include "runtime/nn_ops.h"
#include "schedules/methods.h"

namespace lowband::schedules {

using Clock = std::chrono::steady_clock;

Exchange startExchange(std::shared_ptr<comm::Work> work) { return {std::move(work), Clock::now()}; }

Exchange startMean(comm::Communicator& comm, comm::CompressedAllReduce* codec, float* data,
                   int64_t n, int slot) {
  return startExchange(codec ? codec->allReduceAsync(data, n, comm::ReduceOp::Avg, slot)
                             : comm.allReduceAsync(data, n, comm::ReduceOp::Avg));
}

std::unique_ptr<comm::CompressedAllReduce> makeCodec(const SyncSettings& s,
                                                     comm::Communicator& comm) {
  if (s.codec.codec == runtime::Codec::None) return nullptr;
  return std::make_unique<comm::CompressedAllReduce>(comm, s.codec, s.error_feedback);
}

void drain(Exchange& e) noexcept {
  if (!e) return;
  try {
    e.work->wait();
  } catch (...) {  // the error was (or will be) reported where the exchange was landed
  }
  e = {};
}

void land(Exchange& e, ExchangeTime& stats) {
  if (!e) return;
  const auto t0 = Clock::now();
  e.work->wait();
  const auto t1 = Clock::now();
  stats.blocked_s += std::chrono::duration<double>(t1 - t0).count();
  stats.in_flight_s += std::chrono::duration<double>(t1 - e.start).count();
  e = {};
}

comm::TierBytes GradientSync::wireBytesPerStep() const {
  comm::TierBytes out;
  for (const Bucket& b : buckets_)
    comm::addTraffic(out, comm_.wireBytes(comm::Collective::AllReduce, b.span.end - b.span.begin));
  return out;
}

GradientAveraging::GradientAveraging(const SyncSettings& s, nn::ParamStore& params,
                                     ReplicaGroups& groups, bool world)
    : inner_(s.inner),
      params_(params),
      grads_(params, world ? groups.world() : groups.replica(), s.bucket_bytes,
             world ? stats_.outer : stats_.inner) {
  if (inner_ != InnerMethod::Ddp) zero_ = makeZeroShard(s, groups, world);
  codecs_ = groups.gradientCodecs();  // those of the gradient group and of ZeRO's spans
}

std::unique_ptr<ZeroShard> GradientAveraging::makeZeroShard(const SyncSettings& s,
                                                            ReplicaGroups& groups, bool world) {
  // The group's levels [0, m); placement tiers inside it (schedules/zero.h).
  const int m = world ? groups.tiers() : groups.outerTier();
  const int o = s.shard_optimizer_tier < 0 ? m - 1 : s.shard_optimizer_tier;
  const int g = inner_ == InnerMethod::Zero1 || s.shard_grads_tier < 0 ? o : s.shard_grads_tier;
  if (o >= m || g > o)
    LB_THROW(ScheduleError, "zero placement: optimizer tier " + std::to_string(o) +
                                " and gradient tier " + std::to_string(g) +
                                " must satisfy gradient <= optimizer < " + std::to_string(m) +
                                " (the group's levels)");
  ExchangeTime& time = world ? stats_.outer : stats_.inner;
  // The gradient shards' ranks; the gradient norm is summed over them in f32, so through a
  // span of its own when theirs encodes.
  comm::Communicator& shards = g == m - 1 ? (world ? groups.world() : groups.replica())
                                          : groups.levels(0, g + 1, "gradient shards", true);
  comm::Communicator& norm =
      groups.encodes(0, g + 1) ? groups.levels(0, g + 1, "gradient norm") : shards;
  // Spans are collective: made in this order on every rank.
  comm::Communicator& split = groups.levels(g + 1, o + 1, "optimizer split");
  comm::Communicator& mirrors = groups.levels(g + 1, m, "gradient mirrors", true);
  return std::make_unique<ZeroShard>(params_, shards, split, mirrors, norm, time);
}

void GradientAveraging::beforeOptimizerStep() {
  if (inner_ == InnerMethod::Zero2)
    zero_->reduceScatterGradients();
  else
    grads_.wait();
  for (comm::CodecCommunicator* c : codecs_) c->newRound();  // every exchange of the step landed
}

std::pair<int64_t, int64_t> GradientAveraging::optimizerRange() const {
  if (zero_) return {zero_->begin(), zero_->end()};
  return {0, params_.size()};
}

double GradientAveraging::gradientNorm(const runtime::Stream& stream) {
  // zero2: only the own shard is reduced; ddp and zero1 hold the whole mean gradient.
  if (inner_ == InnerMethod::Zero2) return std::sqrt(zero_->gradientSquares(stream));
  return std::sqrt(runtime::sumSquares(stream, params_.grads().data<float>(), params_.size()));
}

void GradientAveraging::finishInnerStep() {
  if (zero_) zero_->allGatherParameters();
}

int64_t GradientAveraging::gradientExchangesPerStep() const {
  const int64_t buckets = inner_ == InnerMethod::Zero2 ? 0 : grads_.buckets();
  return buckets + (zero_ ? zero_->exchangesPerStep(inner_ == InnerMethod::Zero2) : 0);
}

comm::TierBytes GradientAveraging::plannedTraffic(int64_t steps) const {
  comm::TierBytes out;
  if (inner_ != InnerMethod::Zero2)
    comm::addTraffic(out, grads_.wireBytesPerStep(), static_cast<double>(steps));
  if (zero_)
    comm::addTraffic(out, zero_->wireBytesPerStep(inner_ == InnerMethod::Zero2),
                     static_cast<double>(steps));
  return out;
}

void GradientAveraging::saveState(runtime::StateDict& out) {
  out.putValue("sync.outer_steps", stats_.outer_steps);
  out.put("sync.fragment_steps", stats_.fragment_steps.data(),
          stats_.fragment_steps.size() * sizeof(int64_t));
  // Error-feedback residuals of the gradient codecs, one per tensor of a step's exchange.
  for (std::size_t i = 0; i < codecs_.size(); ++i) {
    const comm::CompressedAllReduce& codec = codecs_[i]->codec();
    if (!codec.errorFeedback()) continue;
    const std::string prefix = "sync.grad_codec." + std::to_string(i) + ".";
    out.putValue(prefix + "slots", static_cast<int64_t>(codec.residuals().size()));
    for (const auto& [slot, r] : codec.residuals())
      out.putFloats(prefix + std::to_string(slot), r.data(), static_cast<int64_t>(r.size()));
  }
}

void GradientAveraging::loadState(const runtime::StateDict& in) {
  stats_.outer_steps = in.value<int64_t>("sync.outer_steps");
  in.getInto("sync.fragment_steps", stats_.fragment_steps.data(),
             stats_.fragment_steps.size() * sizeof(int64_t));
  for (std::size_t i = 0; i < codecs_.size(); ++i) {
    comm::CompressedAllReduce& codec = codecs_[i]->codec();
    if (!codec.errorFeedback()) continue;
    const std::string prefix = "sync.grad_codec." + std::to_string(i) + ".";
    const auto slots = in.value<int64_t>(prefix + "slots");
    for (int64_t slot = 0; slot < slots; ++slot)
      codec.setResidual(static_cast<int>(slot), in.floats(prefix + std::to_string(slot)));
  }
}

GradientSync::GradientSync(nn::ParamStore& params, comm::Communicator& comm, int64_t bucket_bytes,
                           ExchangeTime& time)
    : params_(params), comm_(comm), time_(time) {
  if (comm.size() == 1) return;
  // Backward finishes the groups from the end of the buffer towards its start, so buckets are
  // cut from the end: the first bucket to fill is the first to go.
  const std::vector<GroupSpan> spans = groupSpans(params);
  const int64_t limit = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)));
  for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
    if (buckets_.empty() || buckets_.back().span.end - buckets_.back().span.begin >= limit)
      buckets_.push_back({it->span, 0, 0, {}, false});
    Bucket& b = buckets_.back();
    b.span.begin = it->span.begin;
    ++b.groups;
    bucket_of_group_[it->group] = static_cast<int>(buckets_.size()) - 1;
  }
}

GradientSync::~GradientSync() {
  for (Bucket& b : buckets_) drain(b.exchange);
}

void GradientSync::start(Bucket& b) {
  b.started = true;
  b.exchange = startExchange(comm_.allReduceAsync(params_.grads().data<float>() + b.span.begin,
                                                  b.span.end - b.span.begin, comm::ReduceOp::Avg));
}

void GradientSync::onGradsReady(int group) {
  auto it = bucket_of_group_.find(group);
  if (it == bucket_of_group_.end()) return;
  Bucket& b = buckets_[it->second];
  if (++b.ready == b.groups && !b.started) start(b);
}

void GradientSync::wait() {
  // Issue order must match on all ranks: buckets are started in the same (backward) order
  // everywhere; one the model did not report is started here, in bucket order.
  for (Bucket& b : buckets_)
    if (!b.started) start(b);
  for (Bucket& b : buckets_) {
    land(b.exchange, time_);
    b.started = false;
    b.ready = 0;
  }
}

}  // namespace lowband::schedules

// ---- the descriptor of inner ddp ----------------------------------------------------------

namespace lowband::schedules {

extern const InnerMethodSpec kDdpInnerMethod{
    InnerMethod::Ddp, false, [](InnerConfig&, const std::function<bool(const std::string&)>&) {},
    [](const InnerConfig&, const std::function<int(const std::string&)>&,
       std::vector<MethodProblem>&) {},
    [](const InnerConfig&, LayoutFields&) {}};

}  // namespace lowband::schedules
