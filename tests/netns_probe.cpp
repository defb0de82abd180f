// Probe for tests/netns_smoke.sh: an all-reduce of MIB mebibytes across the ranks of the job
// (hosts in network namespaces on tc-shaped links); rank 0 prints the seconds the fastest of
// three took and the time bytes / bandwidth predicts for the ring algorithm.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/mpi_runtime.h"

int main(int argc, char** argv) {
  using namespace lowband::comm;
  if (argc != 3) {
    std::fprintf(stderr, "usage: netns_probe MIB BITS_PER_SECOND\n");
    return 2;
  }
  const long mib = std::atol(argv[1]);
  const double bits = std::atof(argv[2]);
  MpiRuntime& mpi = MpiRuntime::instance();
  MpiCommunicator world(MPI_COMM_WORLD, "world");
  std::vector<float> x(mib << 18, 1.0f);
  world.allReduce(x.data(), 1024);  // connections up before timing
  // The fastest of three: a TCP retransmission timeout after a tbf drop can add ~0.5 s to one
  // transfer, which says nothing about the shaped rate.
  double s = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    std::fill(x.begin(), x.end(), 1.0f);
    world.barrier();
    const auto start = std::chrono::steady_clock::now();
    world.allReduce(x.data(), static_cast<int64_t>(x.size()));
    s = std::min(s,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double p = mpi.size();
  const double predicted = 2 * (p - 1) / p * 4.0 * static_cast<double>(x.size()) * 8 / bits;
  if (mpi.rank() == 0) std::printf("seconds %.3f predicted %.3f\n", s, predicted);
  return x[0] == static_cast<float>(p) ? 0 : 1;  // an all-reduce of ones
}
