#include "schedules/fragments.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "schedules/strategy.h"

namespace lowband::schedules {

std::vector<GroupSpan> groupSpans(const nn::ParamStore& params) {
  std::map<int64_t, int> first;  // first element -> group
  std::set<int> seen;
  for (const nn::ParamInfo& p : params.infos())  // groupRange also checks it is contiguous
    if (seen.insert(p.group).second) first[params.groupRange(p.group).first] = p.group;
  std::vector<GroupSpan> spans;
  for (auto it = first.begin(); it != first.end(); ++it) {
    const auto next = std::next(it);
    spans.push_back(
        {it->second,
         {spans.empty() ? 0 : it->first, next == first.end() ? params.size() : next->first}});
  }
  return spans;
}

std::vector<Fragment> planFragments(const nn::ParamStore& params, int64_t fragments, bool strided,
                                    bool embeddings_own, int64_t H) {
  const std::vector<GroupSpan> spans = groupSpans(params);
  int64_t blocks = 0;
  for (const GroupSpan& g : spans) blocks = std::max<int64_t>(blocks, g.group + 1);
  if (fragments < 1 || (blocks > 0 && fragments > blocks))
    LB_THROW(ScheduleError, std::to_string(fragments) + " fragments for a model of " +
                                std::to_string(blocks) + " blocks");
  const int64_t total = fragments + (embeddings_own ? 1 : 0);
  std::vector<Fragment> plan(total);
  for (const GroupSpan& g : spans) {
    int64_t f = 0;
    if (g.group < 0)
      f = embeddings_own ? fragments : 0;
    else
      f = strided ? g.group % fragments : g.group * fragments / blocks;
    Fragment& frag = plan[f];
    frag.groups.push_back(g.group);
    if (!frag.spans.empty() && frag.spans.back().end == g.span.begin)
      frag.spans.back().end = g.span.end;
    else
      frag.spans.push_back(g.span);
    frag.size += g.span.end - g.span.begin;
  }
  for (int64_t p = 0; p < total; ++p) {
    if (plan[p].size == 0)
      LB_THROW(ScheduleError, "fragment " + std::to_string(p) + " of " + std::to_string(total) +
                                  " holds no parameters");
    plan[p].offset =
        std::llround(static_cast<double>(p) * static_cast<double>(H) / static_cast<double>(total));
  }
  return plan;
}

FragmentShard::FragmentShard(const Fragment& fragment, int rank, int ranks)
    : fragment_(&fragment), ranks_(ranks) {
  const int64_t n = fragment.size;
  stride_ = ((n + ranks - 1) / ranks + 15) / 16 * 16;
  own_begin_ = std::min(n, rank * stride_);
  own_end_ = std::min(n, (rank + 1) * stride_);
}

template <class F>
void FragmentShard::forEachPiece(int64_t begin, int64_t end, F&& f) const {
  int64_t packed = 0;
  for (const Span& s : fragment_->spans) {
    const int64_t len = s.end - s.begin;
    const int64_t lo = std::max(begin, packed), hi = std::min(end, packed + len);
    if (lo < hi) f(s.begin + (lo - packed), lo, hi - lo);
    packed += len;
    if (packed >= end) break;
  }
}

void FragmentShard::gatherOwn(const float* flat, float* out) const {
  forEachPiece(own_begin_, own_end_, [&](int64_t at, int64_t packed, int64_t len) {
    std::copy_n(flat + at, len, out + (packed - own_begin_));
  });
}

void FragmentShard::allGatherInto(comm::Communicator& replica, const float* own,
                                  std::vector<float>& scratch, float* flat, float keep) const {
  scratch.resize(static_cast<std::size_t>(ranks_ * stride_));
  // Rank i's piece starts at i * stride in both the gathered and the packed order.
  replica.allGather(own, scratch.data(), stride_);
  forEachPiece(0, fragment_->size, [&](int64_t at, int64_t packed, int64_t len) {
    const float* src = scratch.data() + packed;
    float* dst = flat + at;
    if (keep == 0.0f) {
      std::copy_n(src, len, dst);
    } else {
      for (int64_t i = 0; i < len; ++i) dst[i] = keep * dst[i] + (1.0f - keep) * src[i];
    }
  });
}

}  // namespace lowband::schedules
