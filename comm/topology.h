// The world as nested NIC tiers, innermost first (e.g. node = ranks on one host over shared
// memory/NVLink, rack = hosts on one switch, wan = sites). Rank r has one coordinate per tier:
//   c_i = (r / (k_0 * ... * k_{i-1})) % k_i      (k_i = size of tier i; the last may be `rest`)
// and Topology builds, collectively on every rank, the communicators the methods need:
//   level(i):  ranks that differ only in c_i (the peers across tier i's links), counted per
//              tier and, with `emulate`, slowed to the tier's bandwidth and latency,
//   inner(t):  ranks that share c_t .. c_{L-1} (a replica when the outer tier is t),
//   outer(t):  ranks that share c_0 .. c_{t-1} (the same position in every replica),
//   span(a, b): ranks that differ only in c_a .. c_{b-1} (inner(t) = span(0, t), outer(t) =
//              span(t, L)); made on request, e.g. for ZeRO shards placed below the replica.
// A group's rank order is always the composite order c_a + k_a * (c_{a+1} + ...).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/link.h"
#include "comm/mpi_communicator.h"

namespace lowband::comm {

struct TierSpec {
  std::string name;
  int64_t size = 0;      // ranks per group at this tier; 0 = the rest of the world
  double bandwidth = 0;  // bytes per second per rank (for emulation and the planner)
  double latency = 0;    // seconds
};

class Topology {
 public:
  // Collective over `world`; throws CommError when the tier sizes do not fit its size.
  Topology(const MpiCommunicator& world, std::vector<TierSpec> tiers, int ranks_per_host = 0,
           bool emulate = false);
  // The same layout for `world_size` ranks as rank `rank` would see it, without MPI (for
  // `lowband plan`): its communicators have the real sizes and ranks and plan the real wire
  // bytes, but run nothing (comm::PlannedCommunicator). Hosts: blocks of ranks_per_host ranks,
  // else of the innermost tier.
  static std::unique_ptr<Topology> planned(int64_t world_size, int rank,
                                           std::vector<TierSpec> tiers, int ranks_per_host = 0);

  int levels() const { return static_cast<int>(tiers_.size()); }
  const TierSpec& tier(int i) const { return tiers_[i]; }
  int64_t tierSize(int i) const { return sizes_[i]; }
  int tierIndex(const std::string& name) const;  // -1 when unknown
  int coordinate(int i) const { return coords_[i]; }
  int host() const { return host_; }
  int hosts() const { return hosts_; }

  LinkCommunicator& level(int i) { return *links_[i]; }
  // Traffic of each tier's level communicator, by tier name.
  std::map<std::string, OpTraffic> tierTraffic() const;
  Communicator& inner(int t) { return *inner_[t]; }  // t in [1, levels]
  Communicator& outer(int t) { return *outer_[t]; }  // t in [0, levels)
  // A new flat communicator over levels [begin, end) (0 <= begin < end <= levels), ranked in
  // composite order. Collective over the world on every call (all ranks ask for the same
  // spans in the same order); the world given to the constructor must still exist.
  std::unique_ptr<Communicator> span(int begin, int end, const std::string& name) const;

 private:
  Topology(std::vector<TierSpec> tiers, int64_t world_size, int rank);  // sizes and coordinates
  void blockHosts(int64_t per_host, int64_t world_size, int rank);      // consecutive blocks
  void makeInnerOuter();                    // collective: inner(1..L), then outer(0..L-1)
  const MpiCommunicator* world_ = nullptr;  // null for a planned topology
  int64_t world_size_ = 1;
  int rank_ = 0;
  std::vector<int64_t> strides_;
  std::vector<TierSpec> tiers_;
  std::vector<int64_t> sizes_;
  std::vector<int> coords_;
  int host_ = 0, hosts_ = 1;
  std::vector<std::unique_ptr<Communicator>> levels_, inner_, outer_;
  std::vector<std::unique_ptr<LinkCommunicator>> links_;  // over levels_
};

}  // namespace lowband::comm
