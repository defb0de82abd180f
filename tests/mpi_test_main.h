#pragma once

namespace lowband::test {
// True when MPI started; multi-rank tests GTEST_SKIP() otherwise.
bool mpiAvailable();
}  // namespace lowband::test
