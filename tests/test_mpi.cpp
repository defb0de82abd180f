// Runs under `mpiexec -n N` (registered for N = 2 and 4) with the MPI gtest main of
// tests/mpi_test_main.cpp.
#include <gtest/gtest.h>

#include <numeric>
#include <thread>
#include <vector>

#include "comm/mpi_runtime.h"
#include "tests/mpi_test_main.h"

namespace lowband::comm {
namespace {

class Mpi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::mpiAvailable()) GTEST_SKIP() << "MPI could not be initialised";
  }
};

TEST_F(Mpi, ThreadMultipleAndWorldSize) {
  MpiRuntime& mpi = MpiRuntime::instance();
  EXPECT_EQ(mpi.threadLevel(), MPI_THREAD_MULTIPLE);
  const char* expected = std::getenv("LOWBAND_EXPECT_WORLD");
  if (expected) {
    EXPECT_EQ(mpi.size(), std::atoi(expected));
  }
  EXPECT_GE(mpi.rank(), 0);
  EXPECT_LT(mpi.rank(), mpi.size());
}

TEST_F(Mpi, AllreduceSumsRanks) {
  MpiRuntime& mpi = MpiRuntime::instance();
  int mine = mpi.rank() + 1, total = 0;
  LB_MPI_CHECK(MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
  EXPECT_EQ(total, mpi.size() * (mpi.size() + 1) / 2);
}

TEST_F(Mpi, TwoThreadsCallMpiAtOnce) {
  // What MPI_THREAD_MULTIPLE buys: a communication thread beside the main thread.
  MpiRuntime& mpi = MpiRuntime::instance();
  MPI_Comm side;
  LB_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &side));
  std::vector<double> a(1 << 16, mpi.rank()), b(1 << 16, 1.0), ra(a.size()), rb(b.size());
  std::thread t([&] {
    LB_MPI_CHECK(
        MPI_Allreduce(b.data(), rb.data(), static_cast<int>(b.size()), MPI_DOUBLE, MPI_SUM, side));
  });
  LB_MPI_CHECK(MPI_Allreduce(a.data(), ra.data(), static_cast<int>(a.size()), MPI_DOUBLE, MPI_SUM,
                             MPI_COMM_WORLD));
  t.join();
  LB_MPI_CHECK(MPI_Comm_free(&side));
  EXPECT_DOUBLE_EQ(ra[0], mpi.size() * (mpi.size() - 1) / 2.0);
  EXPECT_DOUBLE_EQ(rb.back(), mpi.size());
}

TEST_F(Mpi, FailedCallsThrowWithTheMpiMessage) {
  int bad = 0;
  // An invalid root returns an error code because lowband sets MPI_ERRORS_RETURN.
  try {
    LB_MPI_CHECK(MPI_Bcast(&bad, 1, MPI_INT, 1 << 20, MPI_COMM_WORLD));
    FAIL() << "MPI_Bcast with an invalid root must fail";
  } catch (const MpiError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("MPI_Bcast"), std::string::npos) << what;
    EXPECT_NE(what.find("tests/test_mpi.cpp:"), std::string::npos) << what;
    EXPECT_NE(what.find("root"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace lowband::comm
