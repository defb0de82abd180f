#include "comm/mpi_runtime.h"

#include "lowband_build.h"
#if LB_WITH_CUDA
#include <nccl.h>
#endif

namespace lowband::comm {

void checkMpi(int status, const char* call, const char* file, int line) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(status, text, &len) != MPI_SUCCESS) len = 0;
  throw MpiError(std::string(call) + " failed: " + std::string(text, len) + " (code " +
                     std::to_string(status) + ")",
                 file, line);
}

MpiRuntime& MpiRuntime::instance() {
  static MpiRuntime runtime;
  return runtime;
}

MpiRuntime::MpiRuntime() {
  int initialized = 0;
  LB_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    LB_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &thread_level_));
    owns_init_ = true;
    // Errors come back as codes we turn into exceptions, instead of MPI aborting on its own.
    LB_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  } else {
    LB_MPI_CHECK(MPI_Query_thread(&thread_level_));
  }
  if (thread_level_ < MPI_THREAD_MULTIPLE) {
    throw MpiError("the MPI library provides thread level " + std::to_string(thread_level_) +
                       ", lowband needs MPI_THREAD_MULTIPLE. HINT: use an MPICH built with "
                       "thread support (Debian's mpich is)",
                   __FILE__, __LINE__);
  }
  LB_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  LB_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_init_ && !finalized) MPI_Finalize();
}

void MpiRuntime::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

std::string mpiLibraryVersion() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  LB_MPI_CHECK(MPI_Get_library_version(text, &len));
  std::string s(text, len);
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

std::string ncclVersion() {
#if LB_WITH_CUDA
  int v = 0;
  ncclResult_t r = ncclGetVersion(&v);
  if (r != ncclSuccess)
    throw NcclError(std::string("ncclGetVersion failed: ") + ncclGetErrorString(r), __FILE__,
                    __LINE__);
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." +
         std::to_string(v % 100);
#else
  return "";
#endif
}

}  // namespace lowband::comm
