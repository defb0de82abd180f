// MPI start-up and checked calls. lowband always initialises MPI with MPI_THREAD_MULTIPLE (the
// communicator's progress thread calls MPI beside the trainer), as a singleton when started
// without mpiexec/srun and as one rank of N under them.
#pragma once

#include <mpi.h>

#include <string>

#include "runtime/error.h"

namespace lowband::comm {

LB_DEFINE_ERROR(MpiError, "MPI");
LB_DEFINE_ERROR(NcclError, "NCCL");

// Throws MpiError with the call text and MPI_Error_string's message.
void checkMpi(int status, const char* call, const char* file, int line);

class MpiRuntime {
 public:
  // Initialises MPI once per process (later calls return the same object); finalises at exit.
  static MpiRuntime& instance();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int threadLevel() const { return thread_level_; }
  // Aborts every rank of the job with `code` (used when one rank fails and others may block).
  [[noreturn]] void abort(int code) const;

 private:
  MpiRuntime();
  ~MpiRuntime();
  int rank_ = 0;
  int size_ = 1;
  int thread_level_ = 0;
  bool owns_init_ = false;
};

std::string mpiLibraryVersion();  // first line of MPI_Get_library_version
std::string ncclVersion();        // "2.28.3", or "" without the CUDA backend

}  // namespace lowband::comm

#define LB_MPI_CHECK(call) ::lowband::comm::checkMpi((call), #call, __FILE__, __LINE__)
