// The method registry: one descriptor per synchronisation method, holding everything the rest
// of lowband knows about it: the sync keys it reads, its defaults and cross-key checks (the
// config asks), when it exchanges and when an exchange must have landed (the schedule that
// `lowband plan` and `lowband simulate` both time, sim/simulator.h), the fields a checkpoint
// must match to resume (compared field by field), and its strategy. Adding a method is its
// source file (strategy and descriptor) plus one line in outerMethods() or innerMethods()
// (methods.cpp). Free of comm/ and MPI (forward declarations only).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "schedules/settings.h"

namespace lowband::nn {
class ParamStore;
}

namespace lowband::schedules {

class Strategy;
class ReplicaGroups;

// The sync.outer keys a method reads (bits of OuterMethodSpec::keys).
enum OuterKey : uint32_t {
  kKeyTier = 1u << 0,            // tier
  kKeyH = 1u << 1,               // H
  kKeyFragments = 1u << 2,       // fragments, pattern, embeddings
  kKeyOverlap = 1u << 3,         // overlap, overlap_per_replica
  kKeyAlpha = 1u << 4,           // alpha
  kKeyCodec = 1u << 5,           // codec (and codec_block, topk_ratio by codec), error_feedback
  kKeyOuterOptimizer = 1u << 6,  // optimizer
  kKeyPenalty = 1u << 7,         // penalty (and its divisor or eps by penalty)
  kKeyClip = 1u << 8,            // clip
};

// A cross-key check's finding: the key it is about (a path under sync.outer/sync.inner) and
// what is wrong.
struct MethodProblem {
  std::string key;
  std::string what;
};

// When a method exchanges, for a model of `layers` blocks over steps t = 0, 1, ...
struct OuterSchedule {
  // Every step, each block's gradients after its backward, awaited by its next forward (ddp).
  bool every_step = false;
  // Otherwise fragment f (blocks [first, last)) is exchanged after each step t with
  // (t + 1 - offset) mod period == 0, and lands before the forward of step t + 1 + delay.
  struct Fragment {
    int64_t offset = 0, first = 0, last = 0;
  };
  int64_t period = 0;  // 0: never (replicas train alone)
  int64_t delay = 0;
  std::vector<Fragment> fragments;
};

// Named fields a checkpoint records and a resuming run must match ("outer", "diloco").
using LayoutFields = std::vector<std::pair<std::string, std::string>>;

struct OuterMethodSpec {
  OuterMethod id;
  uint32_t keys;  // OuterKey bits
  // Defaults that differ from OuterConfig's, for the keys (under sync.outer) the config did not
  // set.
  void (*defaults)(OuterConfig& outer, const std::function<bool(const std::string&)>& is_set);
  // Cross-key checks for a model of `layers` blocks.
  void (*check)(const OuterConfig& outer, int64_t layers, std::vector<MethodProblem>& out);
  // `overlap`: the delay of this replica (overlap_per_replica may differ from outer.overlap).
  OuterSchedule (*schedule)(const OuterConfig& outer, int64_t layers, int64_t overlap);
  // Fields beyond those every method records (outerLayout()).
  void (*layout)(const OuterConfig& outer, int64_t layers, LayoutFields& out);
  std::unique_ptr<Strategy> (*make)(const SyncSettings& settings, nn::ParamStore& params,
                                    ReplicaGroups& groups);
  const char* name() const { return kOuterMethodNames[static_cast<int>(id)]; }
  bool reads(uint32_t key) const { return (keys & key) != 0; }
};

struct InnerMethodSpec {
  InnerMethod id;
  bool shards;  // reads sync.inner.shard (zero1, zero2)
  // Defaults for the keys (under sync.inner) the config did not set.
  void (*defaults)(InnerConfig& inner, const std::function<bool(const std::string&)>& is_set);
  // Cross-key checks of the shard placement: `level(tier)` is a tier's index (the gradient
  // group's outermost level for `replica`).
  void (*check)(const InnerConfig& inner, const std::function<int(const std::string&)>& level,
                std::vector<MethodProblem>& out);
  // Fields beyond those every method records (innerLayout()).
  void (*layout)(const InnerConfig& inner, LayoutFields& out);
  const char* name() const { return kInnerMethodNames[static_cast<int>(id)]; }
};

// Every method, in enum order.
const std::vector<const OuterMethodSpec*>& outerMethods();
const std::vector<const InnerMethodSpec*>& innerMethods();
const OuterMethodSpec& outerMethod(OuterMethod id);
const InnerMethodSpec& innerMethod(InnerMethod id);
// "sync.outer.method is diloco, streaming_diloco or co2" for the methods that read `key`
// ("... is not none" when all but none do); the text lives as long as the program.
const char* methodsReading(uint32_t key);

// What a checkpoint records of the sync settings: the method's name, its codecs, and its
// descriptor's own fields.
LayoutFields outerLayout(const OuterConfig& outer, int64_t layers);
LayoutFields innerLayout(const InnerConfig& inner);

// Contiguous runs of about layers / fragments blocks (the simulator's and plan's fragments).
std::vector<OuterSchedule::Fragment> contiguousFragments(int64_t layers, int64_t fragments,
                                                         int64_t period);

}  // namespace lowband::schedules
