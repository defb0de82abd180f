// gtest main for tests run under `mpiexec -n N`: initialises MPI with MPI_THREAD_MULTIPLE through
// comm::MpiRuntime, like lowband itself, lets only rank 0 print, and fails the job when any rank
// failed. Without a working MPI the tests skip (they check mpiAvailable()).
#include "tests/mpi_test_main.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "comm/mpi_runtime.h"

namespace lowband::test {
namespace {
bool g_mpi_ok = false;
}
bool mpiAvailable() { return g_mpi_ok; }
}  // namespace lowband::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  try {
    lowband::comm::MpiRuntime::instance();
    lowband::test::g_mpi_ok = true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "MPI unavailable, skipping: %s\n", e.what());
  }
  if (lowband::test::g_mpi_ok && lowband::comm::MpiRuntime::instance().rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int status = RUN_ALL_TESTS();
  if (lowband::test::g_mpi_ok) {
    int worst = 0;
    MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    status = worst;
  }
  return status;
}
