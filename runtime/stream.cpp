#include "runtime/stream.h"

#include <utility>

#include "lowband_build.h"
#include "runtime/error.h"
#if LB_WITH_CUDA
#include "runtime/cuda/backend.h"
#endif

namespace lowband::runtime {

namespace {
[[noreturn, maybe_unused]] void noCuda(const char* file, int line) {
  throw DeviceError("a CUDA device was used but this build has no CUDA backend", file, line);
}

// Destructors must not throw; a handle that fails to go is reclaimed with the context at exit.
[[maybe_unused]] void destroyQuietly(void* handle, void (*destroy)(void*)) {
  if (!handle) return;
  try {
    destroy(handle);
  } catch (...) {
  }
}
}  // namespace

#if LB_WITH_CUDA
#define LB_ON_CUDA(stmt) stmt
#else
#define LB_ON_CUDA(stmt) noCuda(__FILE__, __LINE__)
#endif

Stream::Stream(Device device) : device_(device) {
  if (device_.isCuda()) LB_ON_CUDA(handle_ = cuda::streamCreate(device_.index));
}

Stream::~Stream() {
#if LB_WITH_CUDA
  destroyQuietly(handle_, cuda::streamDestroy);
#endif
}

Stream::Stream(Stream&& other) noexcept
    : device_(other.device_), handle_(std::exchange(other.handle_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  std::swap(device_, other.device_);
  std::swap(handle_, other.handle_);
  return *this;
}

void Stream::synchronize() const {
  if (device_.isCuda()) LB_ON_CUDA(cuda::streamSynchronize(handle_));
}

void Stream::waitFor(const Stream& other) const {
  if (!device_.isCuda() && !other.device_.isCuda()) return;  // CPU work is already complete
  Event e(other.device_);
  e.record(other);
  e.block(*this);
}

Event::Event(Device device) : device_(device) {
  if (device_.isCuda()) LB_ON_CUDA(handle_ = cuda::eventCreate(device_.index));
}

Event::~Event() {
#if LB_WITH_CUDA
  destroyQuietly(handle_, cuda::eventDestroy);
#endif
}

void Event::record(const Stream& stream) {
  LB_REQUIRE(stream.device() == device_, DeviceError,
             "event of " + device_.str() + " recorded on a stream of " + stream.device().str());
  recorded_ = true;
  host_time_ = std::chrono::steady_clock::now();
  if (device_.isCuda()) LB_ON_CUDA(cuda::eventRecord(handle_, stream.handle()));
}

void Event::block(const Stream& stream) const {
  if (!device_.isCuda()) return;  // the CPU work before the event has already run
  LB_REQUIRE(stream.device().isCuda(), DeviceError,
             "a CPU stream cannot wait on a CUDA event; synchronize() the event instead");
  LB_ON_CUDA(cuda::streamWaitEvent(stream.handle(), handle_));
}

void Event::synchronize() const {
  if (device_.isCuda()) LB_ON_CUDA(cuda::eventSynchronize(handle_));
}

bool Event::isCompleted() const {
  if (!device_.isCuda()) return recorded_;
#if LB_WITH_CUDA
  return cuda::eventQuery(handle_);
#else
  noCuda(__FILE__, __LINE__);
#endif
}

float Event::elapsedMsTo(const Event& end) const {
  LB_REQUIRE(recorded_ && end.recorded_, DeviceError, "elapsed time of an event never recorded");
  if (device_.isCuda()) {
#if LB_WITH_CUDA
    return cuda::eventElapsedMs(handle_, end.handle_);
#else
    noCuda(__FILE__, __LINE__);
#endif
  }
  return std::chrono::duration<float, std::milli>(end.host_time_ - host_time_).count();
}

}  // namespace lowband::runtime
