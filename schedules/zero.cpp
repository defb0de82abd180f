#include "schedules/zero.h"

#include <algorithm>

#include "schedules/gradient_sync.h"

namespace lowband::schedules {

ZeroShard::ZeroShard(nn::ParamStore& params, comm::Communicator& group, ExchangeTime& time)
    : params_(params), group_(group), time_(time) {
  const int64_t n = params.size(), k = group.size(), align = nn::ParamStore::kAlign;
  stride_ = ((n + k - 1) / k + align - 1) / align * align;
  begin_ = std::min(n, group.rank() * stride_);
  end_ = std::min(n, begin_ + stride_);
  padded_.assign(static_cast<std::size_t>(k * stride_), 0.0f);
  own_.assign(static_cast<std::size_t>(stride_), 0.0f);
}

void ZeroShard::reduceScatterGradients() {
  const float* g = params_.grads().data<float>();
  std::copy_n(g, params_.size(), padded_.begin());  // the tail beyond N stays 0
  Exchange e = startExchange(
      group_.reduceScatterAsync(padded_.data(), own_.data(), stride_, comm::ReduceOp::Avg));
  land(e, time_);
  std::copy_n(own_.data(), end_ - begin_, params_.grads().data<float>() + begin_);
}

void ZeroShard::allGatherParameters() {
  float* p = params_.params().data<float>();
  std::fill(own_.begin(), own_.end(), 0.0f);
  std::copy_n(p + begin_, end_ - begin_, own_.begin());
  Exchange e = startExchange(group_.allGatherAsync(own_.data(), padded_.data(), stride_));
  land(e, time_);
  std::copy_n(padded_.data(), params_.size(), p);
}

double ZeroShard::sumOverGroup(double own) {
  float v = static_cast<float>(own);
  group_.allReduce(&v, 1);
  return v;
}

comm::TierBytes ZeroShard::wireBytesPerStep(bool reduce_scatter) const {
  comm::TierBytes out = group_.wireBytes(comm::Collective::AllGather, stride_);
  if (reduce_scatter) {
    comm::addTraffic(out, group_.wireBytes(comm::Collective::ReduceScatter, stride_));
    comm::addTraffic(out, group_.wireBytes(comm::Collective::AllReduce, 1));  // the norm
  }
  return out;
}

}  // namespace lowband::schedules
