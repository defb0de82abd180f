#include "comm/mpi_runtime.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

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

void MpiRuntime::abort(int code) const { abortJob("", code); }

namespace {

using Clock = std::chrono::steady_clock;

// Waits until the reader of `fd` has taken what was written to it, or until `deadline`. Pipes:
// FIONREAD (on either end) counts the bytes still in the pipe; sockets: SIOCOUTQ those the
// peer has not taken. Terminals and files hold what was written at once.
void drainOutput(int fd, Clock::time_point deadline) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return;
  unsigned long request = 0;
  if (S_ISFIFO(st.st_mode)) request = FIONREAD;
  if (S_ISSOCK(st.st_mode)) request = SIOCOUTQ;
  if (request == 0) return;
  int left = 0;
  while (ioctl(fd, request, &left) == 0 && left > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void writeAll(int fd, const std::string& text) {
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n > 0)
      done += static_cast<std::size_t>(n);
    else if (n < 0 && errno != EINTR)
      return;
  }
}

}  // namespace

void abortJob(const std::string& line, int code, const std::function<void()>& before_abort) {
  static std::atomic<bool> ending{false};
  if (ending.exchange(true))  // another thread is ending the process
    while (true) std::this_thread::sleep_for(std::chrono::hours(1));
  std::fflush(nullptr);  // std::cout/cerr write through to these (sync_with_stdio)
  // One write of the whole line: a pipe keeps it in one piece beside other ranks' output.
  if (!line.empty()) writeAll(STDERR_FILENO, line + "\n");
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  drainOutput(STDOUT_FILENO, deadline);
  drainOutput(STDERR_FILENO, deadline);
  if (before_abort) before_abort();
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; without MPI, end here
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
