// MPI start-up and checked calls. lowband always initialises MPI with MPI_THREAD_MULTIPLE (the
// communicator's progress thread calls MPI beside the trainer), as a singleton when started
// without mpiexec/srun and as one rank of N under them.
#pragma once

#include <mpi.h>

#include <functional>
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
  // Aborts every rank of the job with `code` (used when one rank fails and others may block),
  // after what this process wrote to stdout and stderr has been read (abortJob).
  [[noreturn]] void abort(int code) const;

 private:
  MpiRuntime();
  ~MpiRuntime();
  int rank_ = 0;
  int size_ = 1;
  int thread_level_ = 0;
  bool owns_init_ = false;
};

// The exit status of a job a watchdog ends: the launcher's "a library call failed" (2), not its
// "internal error" (3), since a hung or dead peer is no bug of lowband.
inline constexpr int kCommFailureExit = 2;

// Ends the whole job with exit status `code`, from any thread, after `line` (a newline is
// added; empty: none) and everything this process wrote before it have been read from its
// stdout and stderr. Under mpiexec the reader is hydra's proxy, which polls a rank's PMI socket
// before its stderr pipe: when both were ready at once it forwarded the abort first, mpiexec
// exited on it, and the rank's message was lost (1 job in 6 with a stopped rank 0). So
// this waits (at most 5 s) until the pipes are empty, then calls MPI_Abort. Only the first
// caller in a process writes and aborts; later ones (another communicator's watchdog, the main
// thread's error) wait for it to end the process. `before_abort` runs once the line is out
// (e.g. ncclCommAbort, which may block).
[[noreturn]] void abortJob(const std::string& line, int code,
                           const std::function<void()>& before_abort = {});

std::string mpiLibraryVersion();  // first line of MPI_Get_library_version
std::string ncclVersion();        // "2.28.3", or "" without the CUDA backend

}  // namespace lowband::comm

#define LB_MPI_CHECK(call) ::lowband::comm::checkMpi((call), #call, __FILE__, __LINE__)
