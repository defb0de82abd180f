// The synchronisation settings as the config states them (sync.inner, sync.outer) and as a
// rank's strategy runs them (SyncSettings), with the method enums and their names. Free of comm/
// and MPI: the config (and its fuzzer) uses these types directly. What each method reads, its
// defaults, checks, schedule and layout are its descriptor's (schedules/methods.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/codec.h"

namespace lowband::schedules {

enum class InnerMethod { Ddp, Zero1, Zero2 };
enum class OuterMethod { None, Ddp, LocalSgd, Diloco, StreamingDiloco, Co2 };
enum class OuterOptimizer { Nesterov, Sgd, Average };
enum class GapPenalty { Gap, Constant, None };
enum class ClipMode { Off, Value, Norm };
enum class FragmentPattern { Strided, Sequential };
enum class EmbeddingPlacement { First, Own };

// The YAML names, in enum order.
inline constexpr const char* kInnerMethodNames[] = {"ddp", "zero1", "zero2"};
inline constexpr const char* kOuterMethodNames[] = {
    "none", "ddp", "local_sgd", "diloco", "streaming_diloco", "co2"};
inline constexpr const char* kOuterOptimizerNames[] = {"nesterov", "sgd", "average"};
inline constexpr const char* kGapPenaltyNames[] = {"gap", "constant", "none"};
inline constexpr const char* kClipModeNames[] = {"off", "value", "norm"};
inline constexpr const char* kFragmentPatternNames[] = {"strided", "sequential"};
inline constexpr const char* kEmbeddingPlacementNames[] = {"first", "own"};

// `fragments: auto` (0: about 3 transformer blocks per fragment) or a count.
struct FragmentCount {
  int64_t count = 0;
  bool isAuto() const { return count == 0; }
  bool operator==(const FragmentCount&) const = default;
};

// Where zero1/zero2 split their state: a tier name, or `replica` (the gradient group).
struct ShardPlacement {
  std::string optimizer = "replica";
  std::string grads = "replica";
  std::string secondary_params;  // empty: none (ZeRO++ hpZ keeps one inside a tier)
};

// sync.inner
struct InnerConfig {
  InnerMethod method = InnerMethod::Ddp;
  ShardPlacement shard;
  std::map<std::string, runtime::Codec> codec;  // per tier name; missing tiers exchange f32
  bool error_feedback = false;
};

struct OuterOptimizerConfig {
  OuterOptimizer kind = OuterOptimizer::Nesterov;
  double lr = 0.7;
  double momentum = 0.9;  // CO2's beta
};

struct ClipConfig {
  ClipMode mode = ClipMode::Off;
  double threshold = 1.0;
};

// sync.outer
struct OuterConfig {
  OuterMethod method = OuterMethod::Ddp;
  std::string tier;  // default: the outermost tier
  int64_t H = 100;
  FragmentCount fragments;
  FragmentPattern pattern = FragmentPattern::Strided;
  EmbeddingPlacement embeddings = EmbeddingPlacement::First;
  int64_t overlap = 0;  // the method's default when unset (1 for streaming_diloco)
  std::vector<int64_t> overlap_per_replica;
  double alpha = 0.5;
  runtime::Codec codec = runtime::Codec::None;  // the method's default when unset
  int64_t codec_block = 64;
  double topk_ratio = 0.01;
  bool error_feedback = false;
  OuterOptimizerConfig optimizer;
  GapPenalty penalty = GapPenalty::Gap;
  double penalty_divisor = 2.0;
  double penalty_eps = 1e-8;
  ClipConfig clip;

  // Fragments for a model of `layers` blocks (auto: about 3 blocks each).
  int64_t resolvedFragments(int64_t layers) const {
    if (!fragments.isAuto()) return fragments.count;
    return std::max<int64_t>(1, (layers + 2) / 3);
  }
  template <class Model>  // anything with layers(): the config's ModelConfig
  int64_t resolvedFragments(const Model& model) const {
    return resolvedFragments(model.layers());
  }
};

// What one rank's strategy runs: the config's settings resolved for its replica and topology.
struct SyncSettings {
  InnerMethod inner = InnerMethod::Ddp;  // over the gradient group (replica; world for outer ddp)
  // zero1/zero2 placement (schedules/zero.h): the tier index through which the optimizer
  // state and (zero2) the gradients are split; -1 = the gradient group's outermost level.
  int shard_optimizer_tier = -1;
  int shard_grads_tier = -1;
  OuterMethod method = OuterMethod::Ddp;
  int64_t bucket_bytes = 25'000'000;  // inner ddp gradient buckets
  int64_t H = 100;                    // inner steps per outer round
  // streaming_diloco
  int64_t fragments = 1;
  bool strided = true;          // block b in fragment b mod P; else contiguous runs of blocks
  bool embeddings_own = false;  // non-block parameters in their own fragment (else fragment 0)
  int64_t overlap = 0;          // tau of this rank's replica
  // The caller calls onParamsNeeded(group) before forward reads each group (the model's
  // params-needed hook): due exchanges then land there, not at the end of the step, so their
  // wait hides behind the forward of the layers before the fragment (docs/design.md).
  bool land_in_forward = false;
  double alpha = 0.5;
  runtime::CodecSpec codec;  // outer exchange
  bool error_feedback = false;
  // outer optimizer (diloco, streaming_diloco; co2 uses lr and momentum as lr_outer, beta)
  OuterOptimizer optimizer = OuterOptimizer::Nesterov;
  double lr = 0.7;
  double momentum = 0.9;
  // co2
  GapPenalty penalty = GapPenalty::Gap;
  double penalty_divisor = 2.0;
  double penalty_eps = 1e-8;
  ClipMode clip = ClipMode::Off;
  double clip_threshold = 1.0;
};

}  // namespace lowband::schedules
