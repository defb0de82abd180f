// NIC islands (Holmes): groups of hosts with the same NIC class. Parallel groups that talk every
// step (replicas) stay inside one island; only the outer method crosses between islands. The
// training world is renumbered island by island (islands in order of their first rank), host by
// host, rank by rank, so a replica - a contiguous block of ranks - never spans two islands as
// long as every island holds a multiple of the replica size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowband::comm {

struct Islands {
  std::vector<std::string> classes;  // NIC class of each island, in order
  std::vector<int64_t> ranks;        // ranks per island
  std::vector<int> island_of_rank;   // by original rank
  std::vector<int> position;         // by original rank: its rank in the renumbered world
};

// `class_of_rank` and `host_of_rank` by original rank.
Islands islandsOf(const std::vector<std::string>& class_of_rank,
                  const std::vector<std::string>& host_of_rank);

}  // namespace lowband::comm
