// Inner zero1 / zero2 (ZeRO stages 1 and 2) over a gradient group (the replica; the world for
// outer ddp) made of nested levels, with a placement that says where each kind of state is
// split (the Frontier/ZeRO++ idea: each kind of traffic on the fastest link that can carry it):
//   G = levels [0, g]   gradients are reduce-scattered over G, parameters all-gathered over G
//   P = levels (g, o]   the optimizer splits a gradient shard further over P (o >= g)
//   M = levels (g, m)   the ranks outside G holding the same gradient shard (m: the group's)
// so optimizer state is 1/(|G| |P|) per rank, replicated over the levels above o. Shards:
// S_o = ceil(N / (|G| |P|)) rounded up to 16 floats, S_g = |P| S_o; the rank at position a in
// G and b in P owns the gradient shard [a S_g, (a + 1) S_g) and the optimizer shard
// [a S_g + b S_o, a S_g + (b + 1) S_o) (both cut at N). Per step:
//   zero1: g = (1/k) sum_r g_r              all-reduce over the group in buckets (as ddp)
//   zero2: g[G shard] = (1/|G|) sum_G g_r     reduce-scatter over G
//          g[G shard] = (1/|M|) sum_M g[..]   all-reduce over M (nothing when M is one rank)
//          ||g||^2 = sum over G of ||g[G shard]||^2   (a one-float all-reduce) for clipping
//   the optimizer updates theta[optimizer shard]
//   theta[G shard] = every P rank's optimizer shard     all-gather over P
//   theta = every G rank's theta[G shard]               all-gather over G
// zero1 uses g = o (no split). The default placement (o = g = m - 1) is plain ZeRO over the
// whole group. Over several levels the reduce-scatter and all-gather run level by level,
// innermost first, so a slower level carries pieces 1/k_inner the size (comm/hierarchical.h).
#pragma once

#include <vector>

#include "comm/communicator.h"
#include "nn/param_store.h"
#include "schedules/strategy.h"

namespace lowband::schedules {

class ZeroShard {
 public:
  // `grads_group` = G, `split` = P, `mirrors` = M (see above); `norm_group`: G's ranks in f32
  // (G's own when its reductions are not encoded); not owned.
  ZeroShard(nn::ParamStore& params, comm::Communicator& grads_group, comm::Communicator& split,
            comm::Communicator& mirrors, comm::Communicator& norm_group, ExchangeTime& time);
  int64_t begin() const { return begin_; }  // the optimizer shard
  int64_t end() const { return end_; }
  int64_t stride() const { return stride_; }  // S_o
  // zero2: the own gradient shard becomes the group's mean.
  void reduceScatterGradients();
  // Every rank's updated shard into every rank's parameters.
  void allGatherParameters();
  // zero2: the squared norm of the group's mean gradient (after reduceScatterGradients).
  double gradientSquares(const runtime::Stream& stream);
  // Per step: the reduce-scatter, all-reduce and norm (zero2), and the all-gathers.
  comm::TierBytes wireBytesPerStep(bool reduce_scatter) const;
  int64_t exchangesPerStep(bool reduce_scatter) const {  // the collectives counted above
    return 1 + (split_.size() > 1) + (reduce_scatter ? 2 + (mirrors_.size() > 1) : 0);
  }

 private:
  nn::ParamStore& params_;
  comm::Communicator &grads_group_, &split_, &mirrors_, &norm_group_;
  ExchangeTime& time_;
  int64_t stride_ = 0, begin_ = 0, end_ = 0;                 // optimizer shard
  int64_t grad_stride_ = 0, grad_begin_ = 0, grad_end_ = 0;  // gradient shard
  std::vector<float> padded_, grad_shard_, own_;             // |G| S_g, S_g and S_o floats, reused
};

}  // namespace lowband::schedules
