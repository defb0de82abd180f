#include "schedules/strategy.h"

#include "comm/compressed.h"
#include "comm/hierarchical.h"
#include "schedules/co2.h"
#include "schedules/diloco.h"
#include "schedules/gradient_sync.h"
#include "schedules/methods.h"

namespace lowband::schedules {

ReplicaGroups::ReplicaGroups(comm::Topology& topology, comm::Communicator& world, int outer_tier,
                             const std::map<int, runtime::CodecSpec>& codecs,
                             bool codec_error_feedback)
    : topology_(topology),
      codecs_(codecs),
      codec_error_feedback_(codec_error_feedback),
      outer_tier_(outer_tier) {
  const int L = topology.levels(), t = outer_tier;
  if (t < 0 || t >= L)
    LB_THROW(ScheduleError, "outer tier index " + std::to_string(t) + " outside the " +
                                std::to_string(L) + " tiers");
  for (const auto& [tier, spec] : codecs)
    if (tier < 0 || tier >= L)
      LB_THROW(ScheduleError, "a gradient codec on tier index " + std::to_string(tier) +
                                  " outside the " + std::to_string(L) + " tiers");
  replica_ = over(0, t, true, t > 0 ? &topology.inner(t) : nullptr, "replica");
  across_ = over(t, L, false, &topology.outer(t), "across replicas");
  world_ = over(0, L, true, &world, "world");
  for (int i = L - 1; i >= t; --i) {
    replica_index_ =
        replica_index_ * static_cast<int>(topology.tierSize(i)) + topology.coordinate(i);
    replicas_ *= static_cast<int>(topology.tierSize(i));
  }
}

comm::Communicator* ReplicaGroups::level(int i, bool encoded) {
  auto codec = codecs_.find(i);
  if (!encoded || codec == codecs_.end()) return &topology_.level(i);
  auto made = std::make_unique<comm::CodecCommunicator>(topology_.level(i), codec->second,
                                                        codec_error_feedback_);
  codecs_made_.push_back(made.get());
  owned_.push_back(std::move(made));
  return owned_.back().get();
}

comm::Communicator* ReplicaGroups::over(int begin, int end, bool encoded, comm::Communicator* flat,
                                        const std::string& name) {
  if (begin == end) {
    owned_.push_back(std::make_unique<comm::LocalCommunicator>());
  } else if (end - begin == 1) {
    return level(begin, encoded);
  } else {
    std::vector<comm::Communicator*> levels;
    for (int i = begin; i < end; ++i) levels.push_back(level(i, encoded));
    owned_.push_back(std::make_unique<comm::HierarchicalCommunicator>(levels, flat, name));
  }
  return owned_.back().get();
}

comm::Communicator& ReplicaGroups::levels(int begin, int end, const std::string& name,
                                          bool encoded) {
  if (end - begin < 2) return *over(begin, end, encoded, nullptr, name);
  owned_.push_back(topology_.span(begin, end, name));
  comm::Communicator* flat = owned_.back().get();
  return *over(begin, end, encoded, flat, name);
}

namespace {

// outer none (replicas never meet) and ddp (gradients averaged over the whole world).
class DataParallel : public GradientAveraging {
 public:
  DataParallel(const SyncSettings& s, nn::ParamStore& params, ReplicaGroups& groups)
      : GradientAveraging(s, params, groups, s.method == OuterMethod::Ddp),
        world_(s.method == OuterMethod::Ddp) {
    stats_.fragment_steps.assign(1, 0);
  }
  std::string describe() const override {
    return std::string(world_ ? "ddp over all ranks" : "no outer sync (replicas train alone)") +
           ", " + std::to_string(grads_.buckets()) + " gradient buckets";
  }
  void afterOptimizerStep(int64_t) override { finishInnerStep(); }
  void finish() override {}
  void evalParams(float* out) override {
    std::copy_n(params_.params().data<float>(), params_.size(), out);
  }

 private:
  bool world_;
};

}  // namespace

std::unique_ptr<Strategy> makeStrategy(const SyncSettings& settings, nn::ParamStore& params,
                                       ReplicaGroups& groups) {
  if (params.device().isCuda() && groups.world().size() > 1)
    LB_THROW(ScheduleError,
             "the schedules exchange host memory; multi-rank training on a GPU needs the NCCL "
             "path, which this version does not have yet (use device: cpu)");
  const bool outer_state =
      settings.method != OuterMethod::None && settings.method != OuterMethod::Ddp;
  if (params.device().isCuda() && outer_state)
    LB_THROW(ScheduleError,
             "local_sgd, diloco, streaming_diloco and co2 keep their outer state in host memory; "
             "on a GPU this version trains with sync.outer.method none or ddp only (or use "
             "device: cpu)");
  return outerMethod(settings.method).make(settings, params, groups);
}

namespace {

void noDefaults(OuterConfig&, const std::function<bool(const std::string&)>&) {}
void noChecks(const OuterConfig&, int64_t, std::vector<MethodProblem>&) {}
std::unique_ptr<Strategy> makeDataParallel(const SyncSettings& s, nn::ParamStore& params,
                                           ReplicaGroups& groups) {
  return std::make_unique<DataParallel>(s, params, groups);
}
void noLayout(const OuterConfig&, int64_t, LayoutFields&) {}

}  // namespace

// none: replicas never meet (nothing crosses the outer tier).
extern const OuterMethodSpec kNoneMethod{
    OuterMethod::None,
    0,
    noDefaults,
    noChecks,
    [](const OuterConfig&, int64_t, int64_t) { return OuterSchedule{}; },
    noLayout,
    makeDataParallel};

// ddp: gradients averaged over the whole world every step, bucket by bucket as backward
// produces them; the next forward of a block waits for its gradients' average.
extern const OuterMethodSpec kDdpMethod{OuterMethod::Ddp,
                                        kKeyTier | kKeyCodec,
                                        noDefaults,
                                        noChecks,
                                        [](const OuterConfig&, int64_t, int64_t) {
                                          OuterSchedule s;
                                          s.every_step = true;
                                          return s;
                                        },
                                        noLayout,
                                        makeDataParallel};

}  // namespace lowband::schedules
