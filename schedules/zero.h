// Inner zero1 / zero2 (ZeRO stages 1 and 2) over a gradient group of k ranks (the replica; the
// world for outer ddp). Rank i owns the shard [i S, min((i + 1) S, N)) of the flat buffers,
// S = ceil(N / k) rounded up to 16 floats, and its optimizer holds state for that shard only
// (1/k of the unsharded state). Per step:
//   zero1: g = (1/k) sum_r g_r                 all-reduce in buckets during backward (as ddp)
//   zero2: g[own] = (1/k) sum_r g_r[own]       one reduce-scatter after backward
//   ||g||^2 = sum over ranks of ||g[own]||^2    (a one-float all-reduce) for clipping
//   the optimizer updates theta[own]
//   theta = concatenation of every rank's theta[own]      all-gather
// Over a hierarchical group the reduce-scatter and all-gather run tier by tier, innermost
// first, so a slower tier carries only pieces 1/k_inner the size (comm/hierarchical.h).
#pragma once

#include <vector>

#include "comm/communicator.h"
#include "nn/param_store.h"
#include "schedules/strategy.h"

namespace lowband::schedules {

class ZeroShard {
 public:
  ZeroShard(nn::ParamStore& params, comm::Communicator& group, ExchangeTime& time);
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  int64_t stride() const { return stride_; }  // S
  // zero2: the own shard of the gradients becomes the group's mean.
  void reduceScatterGradients();
  // Every rank's updated shard into every rank's parameters.
  void allGatherParameters();
  // Sum over the group of every rank's `own` (squared gradient norms of the shards).
  double sumOverGroup(double own);
  // Per step: the reduce-scatter (zero2), the all-gather and the norm's all-reduce.
  comm::TierBytes wireBytesPerStep(bool reduce_scatter) const;

 private:
  nn::ParamStore& params_;
  comm::Communicator& group_;
  ExchangeTime& time_;
  int64_t stride_ = 0, begin_ = 0, end_ = 0;
  std::vector<float> padded_, own_;  // k S and S floats, reused every step
};

}  // namespace lowband::schedules
