// gtest main for tests run under `mpiexec -n N`: initialises MPI with MPI_THREAD_MULTIPLE through
// comm::MpiRuntime, like lowband itself, lets rank 0 print the usual report and the other ranks
// only their failures (tagged with the rank), and fails the job when any rank failed. Without a
// working MPI the tests skip (they check mpiAvailable()).
#include "tests/mpi_test_main.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "comm/mpi_runtime.h"

namespace lowband::test {
namespace {
bool g_mpi_ok = false;

// A rank other than 0: its failed assertions, nothing else.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  // The test's name is kept here: gtest holds its lock while it reports a part result.
  void OnTestStart(const ::testing::TestInfo& test) override {
    test_ = std::string(test.test_suite_name()) + "." + test.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s: %s:%d: Failure\n%s\n", rank_, test_.c_str(),
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }

 private:
  int rank_;
  std::string test_;
};
}  // namespace
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
    listeners.Append(
        new lowband::test::FailurePrinter(lowband::comm::MpiRuntime::instance().rank()));
  }
  int status = RUN_ALL_TESTS();
  if (lowband::test::g_mpi_ok) {
    int worst = 0;
    MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    status = worst;
  }
  return status;
}
