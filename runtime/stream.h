// Streams order work on a device; events mark points in a stream. On the CPU every op runs to
// completion on the calling thread, so a CPU stream is a tag and a CPU event a host timestamp.
// On CUDA they wrap cudaStream_t / cudaEvent_t. `Stream::waitFor` (flashlight's relativeSync)
// orders two streams with an event record + wait, never a host synchronisation.
#pragma once

#include <chrono>

#include "runtime/device.h"

namespace lowband::runtime {

class Stream {
 public:
  explicit Stream(Device device = Device::cpu());
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;

  Device device() const { return device_; }
  void* handle() const { return handle_; }  // cudaStream_t on CUDA, nullptr on the CPU
  void synchronize() const;
  // Work submitted to this stream after the call starts only after all work already submitted
  // to `other` has finished.
  void waitFor(const Stream& other) const;

 private:
  Device device_;
  void* handle_ = nullptr;
};

class Event {
 public:
  explicit Event(Device device = Device::cpu());
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record(const Stream& stream);
  void block(const Stream& stream) const;  // make `stream` wait for this event
  void synchronize() const;                // host waits
  bool isCompleted() const;
  // Milliseconds from this event to `end`; both must have been recorded.
  float elapsedMsTo(const Event& end) const;

 private:
  Device device_;
  void* handle_ = nullptr;
  std::chrono::steady_clock::time_point host_time_{};
  bool recorded_ = false;
};

}  // namespace lowband::runtime
