#include "schedules/zero.h"

#include <algorithm>

#include "runtime/nn_ops.h"
#include "schedules/gradient_sync.h"
#include "schedules/methods.h"

namespace lowband::schedules {

ZeroShard::ZeroShard(nn::ParamStore& params, comm::Communicator& grads_group,
                     comm::Communicator& split, comm::Communicator& mirrors,
                     comm::Communicator& norm_group, ExchangeTime& time)
    : params_(params),
      grads_group_(grads_group),
      split_(split),
      mirrors_(mirrors),
      norm_group_(norm_group),
      time_(time) {
  const int64_t n = params.size(), g = grads_group.size(), p = split.size();
  const int64_t align = nn::ParamStore::kAlign;
  stride_ = ((n + g * p - 1) / (g * p) + align - 1) / align * align;
  grad_stride_ = p * stride_;
  grad_begin_ = std::min(n, grads_group.rank() * grad_stride_);
  grad_end_ = std::min(n, grad_begin_ + grad_stride_);
  begin_ = std::min(n, grad_begin_ + split.rank() * stride_);
  end_ = std::min(n, begin_ + stride_);
  padded_.assign(static_cast<std::size_t>(g * grad_stride_), 0.0f);
  grad_shard_.assign(static_cast<std::size_t>(grad_stride_), 0.0f);
  own_.assign(static_cast<std::size_t>(stride_), 0.0f);
}

void ZeroShard::reduceScatterGradients() {
  float* g = params_.grads().data<float>();
  std::copy_n(g, params_.size(), padded_.begin());  // the tail beyond N stays 0
  Exchange e = startExchange(grads_group_.reduceScatterAsync(padded_.data(), grad_shard_.data(),
                                                             grad_stride_, comm::ReduceOp::Avg));
  land(e, time_);
  if (mirrors_.size() > 1) {
    e = startExchange(
        mirrors_.allReduceAsync(grad_shard_.data(), grad_stride_, comm::ReduceOp::Avg));
    land(e, time_);
  }
  std::copy_n(grad_shard_.data(), grad_end_ - grad_begin_, g + grad_begin_);
}

double ZeroShard::gradientSquares(const runtime::Stream& stream) {
  float v = static_cast<float>(runtime::sumSquares(
      stream, params_.grads().data<float>() + grad_begin_, grad_end_ - grad_begin_));
  norm_group_.allReduce(&v, 1);
  return v;
}

void ZeroShard::allGatherParameters() {
  float* theta = params_.params().data<float>();
  if (split_.size() > 1) {
    std::fill(own_.begin(), own_.end(), 0.0f);
    std::copy_n(theta + begin_, end_ - begin_, own_.begin());
    Exchange e = startExchange(split_.allGatherAsync(own_.data(), grad_shard_.data(), stride_));
    land(e, time_);
  } else {
    std::fill(grad_shard_.begin(), grad_shard_.end(), 0.0f);
    std::copy_n(theta + grad_begin_, grad_end_ - grad_begin_, grad_shard_.begin());
  }
  Exchange e =
      startExchange(grads_group_.allGatherAsync(grad_shard_.data(), padded_.data(), grad_stride_));
  land(e, time_);
  std::copy_n(padded_.data(), params_.size(), theta);
}

comm::TierBytes ZeroShard::wireBytesPerStep(bool reduce_scatter) const {
  comm::TierBytes out = grads_group_.wireBytes(comm::Collective::AllGather, grad_stride_);
  comm::addTraffic(out, split_.wireBytes(comm::Collective::AllGather, stride_));
  if (reduce_scatter) {
    comm::addTraffic(out, grads_group_.wireBytes(comm::Collective::ReduceScatter, grad_stride_));
    if (mirrors_.size() > 1)
      comm::addTraffic(out, mirrors_.wireBytes(comm::Collective::AllReduce, grad_stride_));
    comm::addTraffic(out, norm_group_.wireBytes(comm::Collective::AllReduce, 1));  // the norm
  }
  return out;
}

}  // namespace lowband::schedules

// ---- the descriptors of zero1 and zero2 ---------------------------------------------------

namespace lowband::schedules {

namespace {

// Gradients split like the optimizer state unless the config says otherwise.
void shardDefaults(InnerConfig& inner, const std::function<bool(const std::string&)>& set) {
  if (!set("shard.grads")) inner.shard.grads = inner.shard.optimizer;
}

void shardChecks(const InnerConfig& inner, const std::function<int(const std::string&)>& level,
                 std::vector<MethodProblem>& out) {
  const ShardPlacement& s = inner.shard;
  if (inner.method == InnerMethod::Zero1 && level(s.grads) != level(s.optimizer))
    out.push_back({"sync.inner.shard.grads",
                   "zero1 keeps whole (all-reduced) gradients on every rank; gradient shards "
                   "are zero2's (set method: zero2, or remove the key)"});
  if (inner.method == InnerMethod::Zero2 && level(s.grads) > level(s.optimizer))
    out.push_back({"sync.inner.shard.grads",
                   "gradients split over '" + s.grads + "' are coarser than the optimizer's '" +
                       s.optimizer +
                       "': each optimizer shard needs its gradients; use the optimizer's tier "
                       "or one inside it"});
  if (!s.secondary_params.empty())
    out.push_back({"sync.inner.shard.secondary_params",
                   "zero1/zero2 keep whole parameters on every rank, so there is no parameter "
                   "partition to mirror inside a tier (ZeRO++ hpZ serves ZeRO-3); remove the "
                   "key"});
}

// The optimizer shards' cut.
void shardLayout(const InnerConfig& inner, LayoutFields& out) {
  out.emplace_back("shards", "optimizer " + inner.shard.optimizer + ", grads " + inner.shard.grads);
}

}  // namespace

extern const InnerMethodSpec kZero1Method{InnerMethod::Zero1, true, shardDefaults, shardChecks,
                                          shardLayout};
extern const InnerMethodSpec kZero2Method{InnerMethod::Zero2, true, shardDefaults, shardChecks,
                                          shardLayout};

}  // namespace lowband::schedules
