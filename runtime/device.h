// Devices and the `device: auto|cpu|cuda` choice.
#pragma once

#include <string>

namespace lowband::runtime {

enum class DeviceKind { Cpu, Cuda };

struct Device {
  DeviceKind kind = DeviceKind::Cpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int index) { return {DeviceKind::Cuda, index}; }
  bool isCuda() const { return kind == DeviceKind::Cuda; }
  std::string str() const;  // "cpu", "cuda:0"
  bool operator==(const Device&) const = default;
};

enum class DeviceMode { Auto, Cpu, Cuda };

// What cudaGetDeviceCount said. `count` is 0 when CUDA is unusable; `error` is the CUDA error
// code (35 = no driver, 100 = no device, -1 = this build has no CUDA backend).
struct CudaProbe {
  int count = 0;
  int error = 0;
  std::string message;
};

// Probes once per process and caches the answer.
const CudaProbe& probeCuda();

struct DeviceSelection {
  Device device;
  std::string reason;  // one human line: which device and why
};

// `auto` takes CUDA device (local_rank % count) when one is usable, else the CPU; `cuda` without
// a usable GPU throws DeviceError with the probe's message; `cpu` always succeeds.
DeviceSelection selectDevice(DeviceMode mode, int local_rank = 0);

// Same decision from an explicit probe (testable without touching the driver).
DeviceSelection selectDevice(DeviceMode mode, const CudaProbe& probe, int local_rank);

bool builtWithCuda();

}  // namespace lowband::runtime
