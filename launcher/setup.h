// The pieces of a run both `lowband train` and `lowband plan` build from a config: the model,
// the inner optimizer's settings, the schedules' settings, the tier specs, the check for
// settings that cannot run yet, and the traffic a run will count.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comm/islands.h"
#include "comm/topology.h"
#include "launcher/config.h"
#include "nn/gpt.h"
#include "nn/model.h"
#include "nn/optimizer.h"
#include "schedules/strategy.h"

namespace lowband::launcher {

std::unique_ptr<nn::Model> buildModel(const Config& c, runtime::Device device);
// A precision on `device`, for the start-up table ("bf16 (bf16 GEMMs on tensor cores, ...)"),
// in *description; returns why the device cannot run it ("" when it can): bf16 and tf32 need
// the tensor cores of sm_80 or newer. `gpt` (may be null) and `batch` name the attention shape.
std::string checkPrecision(runtime::Precision precision, runtime::Device device,
                           const nn::GptShape* gpt, int64_t batch, std::string* description);
// The same for a config; ConfigError naming model.precision when the device cannot run it.
std::string describePrecision(const Config& c, runtime::Device device);
nn::OptimizerSettings optimizerSettings(const Config& c);
// The schedules' settings for a rank of replica `replica` (per-replica overlap).
schedules::SyncSettings syncSettings(const Config& c, int replica);
// The tiers as rank `rank` of the (renumbered) world sees them: a tier with per-class links
// (`classes`) runs, for each group of ranks over it, at its slowest member's class link (the
// tier's own numbers for a class it does not list). `class_of_rank` by renumbered rank; empty:
// no islands, every tier's own numbers.
std::vector<comm::TierSpec> tierSpecs(const Config& c,
                                      const std::vector<std::string>& class_of_rank = {},
                                      int64_t rank = 0);
// Per tier, the slowest group's link over all ranks (the planner's view: a synchronous step
// waits for it).
std::vector<comm::TierSpec> slowestTierSpecs(const Config& c,
                                             const std::vector<std::string>& class_of_rank);
// The NIC class of each rank of the renumbered world.
std::vector<std::string> classOfRank(const comm::Islands& islands);
// This machine's host name.
std::string machineName();
// "host<N>": the name of a rank's host when hosts are blocks of `ranks_per_host` ranks.
std::string blockHostName(int64_t rank, int64_t ranks_per_host);
// Each rank's host name as the topology.hosts rules see it: host<N> for blocks of
// topology.ranks_per_host ranks when that is set (one machine standing in for several), else
// the machine's own name. Collective over `world`.
std::vector<std::string> hostNames(const Config& c, comm::Communicator& world);
// NIC islands by the topology.hosts rules (the first rule whose glob matches a host name gives
// its class). ConfigError naming the host no rule matches, or an island whose rank count is not
// a multiple of the replica size (a replica would span two islands).
comm::Islands islandsFor(const Config& c, const std::vector<std::string>& host_of_rank);
// "infiniband: ranks 0,2 | ethernet: ranks 1,3" (original ranks).
std::string describeIslands(const comm::Islands& islands);

// The gradient codecs of sync.inner.codec by tier index (block size as the outer codec's).
std::map<int, runtime::CodecSpec> innerCodecs(const Config& c);

// ConfigError (by key) for values this version accepts but cannot run yet.
void checkSupported(const Config& c);
// Bytes per tier one rank will send over the whole run: training (the strategy's plan) plus
// one theta_global gather per evaluation and per checkpoint.
comm::TierBytes plannedRunTraffic(const Config& c, const schedules::Strategy& strategy,
                                  bool has_validation, bool cuda);

}  // namespace lowband::launcher
