// lowband entry point: MPI start-up, then the CLI; every exception becomes an exit status.
#include <exception>
#include <iostream>

#include "comm/mpi_runtime.h"
#include "launcher/cli.h"

int main(int argc, char** argv) {
  using namespace lowband;
  launcher::CliContext context;
  try {
    comm::MpiRuntime& mpi = comm::MpiRuntime::instance();
    context.rank = mpi.rank();
    context.world = mpi.size();
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return launcher::kExitRuntime;
  }
  try {
    return launcher::runCli({argv + 1, argv + argc}, std::cout, std::cerr, context);
  } catch (const std::exception& e) {
    std::cerr << "[rank " << context.rank << "] internal error: " << e.what() << "\n";
    return launcher::kExitInternal;
  }
}
