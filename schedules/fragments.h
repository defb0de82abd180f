// Fragments (Streaming DiLoCo) and their shards: views of ParamStore's flat buffer.
//   A parameter group's span is [its first element, the next group's first element) in
//   memory order, so the spans tile the whole buffer (alignment gaps and the padding included).
//   Fragment plan with P block fragments: block b belongs to fragment b mod P (strided) or
//   to fragment floor(b * P / L) (sequential, L blocks); non-block groups belong to fragment 0,
//   or with `embeddings_own` to an extra fragment P. With F fragments in all, fragment p syncs
//   at every step t >= H with (t - t_p) mod H == 0, t_p = round(p * H / F).
//   A fragment's "packed" view is the concatenation of its spans; across the k ranks of a
//   replica, rank i owns packed elements [i * S, min(n, (i + 1) * S)), S = ceil(n / k) rounded
//   up to 16 elements, so each rank exchanges only its shard across replicas.
#pragma once

#include <cstdint>
#include <vector>

#include "comm/communicator.h"
#include "nn/param_store.h"

namespace lowband::schedules {

struct Span {
  int64_t begin = 0, end = 0;
};

struct GroupSpan {
  int group = 0;
  Span span;
};

// All groups of `params` in memory order; their spans tile [0, params.size()).
std::vector<GroupSpan> groupSpans(const nn::ParamStore& params);

struct Fragment {
  std::vector<int> groups;
  std::vector<Span> spans;  // merged, in memory order
  int64_t size = 0;         // packed elements
  int64_t offset = 0;       // t_p
  bool syncsAt(int64_t t, int64_t H) const { return t >= H && (t - offset) % H == 0; }
};

// `fragments` block fragments (1 = the whole model as one fragment, i.e. DiLoCo).
std::vector<Fragment> planFragments(const nn::ParamStore& params, int64_t fragments, bool strided,
                                    bool embeddings_own, int64_t H);

// One rank's shard of a fragment's packed view.
class FragmentShard {
 public:
  FragmentShard(const Fragment& fragment, int rank, int ranks);
  int64_t stride() const { return stride_; }  // S: the all-gather unit (>= own())
  int64_t own() const { return own_end_ - own_begin_; }
  int64_t packedSize() const { return fragment_->size; }
  // out[0, own) = the own shard of the packed view of `flat`.
  void gatherOwn(const float* flat, float* out) const;
  // All-gathers every rank's `own` (stride() floats each, padding ignored) over `replica`
  // into `scratch` (resized to ranks * stride()) and writes it back into the fragment's spans
  // of `flat`: flat = keep * flat + (1 - keep) * gathered (keep = 0: plain copy).
  void allGatherInto(comm::Communicator& replica, const float* own, std::vector<float>& scratch,
                     float* flat, float keep) const;

 private:
  template <class F>
  void forEachPiece(int64_t begin, int64_t end, F&& f) const;  // f(flat_off, packed_off, len)

  const Fragment* fragment_;
  int ranks_;
  int64_t stride_ = 0, own_begin_ = 0, own_end_ = 0;
};

}  // namespace lowband::schedules
