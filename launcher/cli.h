// The `lowband` command line (CLI11). runCli is main() without the process: tests call it with
// their own streams and check the exit status.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace lowband::launcher {

enum ExitCode : int {
  kExitOk = 0,
  kExitBadInput = 1,  // config, CLI or data the user can fix
  kExitRuntime = 2,   // a library call failed (CUDA, MPI, I/O)
  kExitInternal = 3,  // a bug: an exception we did not expect
};

struct CliContext {
  int rank = 0;   // only rank 0 prints results; every rank prints its own errors
  int world = 1;  // MPI world size; > 1 means started by mpiexec/srun
};

int runCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
           const CliContext& context = {});

// Version and build facts: version, CUDA backend, OpenBLAS, MPI, NCCL.
std::string versionText();

}  // namespace lowband::launcher
