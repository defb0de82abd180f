// `lowband bench comm`: collectives on the ranks of this job (run it under mpiexec), each row
// against a baseline measured in the same run:
//   allreduce: hierarchical (tiers node = 2 ranks, rest) vs MPI_Allreduce, median of reps;
//   codec: encode + decode throughput of f32 data on one core, and the max relative error;
//   allreduce_emulated: compressed all-reduce through a 100 Mbit/s emulated link vs f32, and
//   against the wire-rate bound 2 (P-1)/P * wire bytes / bandwidth.
#pragma once

#include <ostream>

namespace lowband::launcher {

struct CommBenchOptions {
  bool quick = false;  // smaller tensors and fewer repetitions
  bool json = false;   // one JSON object per line
};

void benchComm(const CommBenchOptions& options, std::ostream& out);

}  // namespace lowband::launcher
