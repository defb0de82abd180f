// Watchdog probe for tests/comm_watchdog.sh: under mpiexec -n 2 with a 2 s timeout, rank 1
// skips the all-reduce that rank 0 issues. Rank 0's watchdog must abort the whole job with a
// message; a job that exits 0 or hangs fails the test.
#include <chrono>
#include <cstdio>
#include <thread>

#include "comm/mpi_communicator.h"
#include "comm/mpi_runtime.h"

int main() {
  using namespace lowband::comm;
  MpiRuntime& mpi = MpiRuntime::instance();
  MpiCommunicator world(MPI_COMM_WORLD, "world", std::chrono::seconds(2));
  float x = 1;
  if (mpi.rank() == 0) {
    world.allReduce(&x, 1);  // never matched: rank 1 does not call it
  } else {
    std::this_thread::sleep_for(std::chrono::seconds(60));  // a hung peer
  }
  std::printf("rank %d finished, which the watchdog should have prevented\n", mpi.rank());
  return 0;
}
