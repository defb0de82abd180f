#include "runtime/device.h"

#include "lowband_build.h"
#include "runtime/error.h"
#if LB_WITH_CUDA
#include "runtime/cuda/backend.h"
#endif

namespace lowband::runtime {

std::string Device::str() const {
  return isCuda() ? "cuda:" + std::to_string(index) : std::string("cpu");
}

bool builtWithCuda() { return LB_WITH_CUDA; }

const CudaProbe& probeCuda() {
  static const CudaProbe probe = [] {
#if LB_WITH_CUDA
    return cuda::probe();
#else
    return CudaProbe{0, -1, "this build has no CUDA backend (nvcc was not found at build time)"};
#endif
  }();
  return probe;
}

DeviceSelection selectDevice(DeviceMode mode, const CudaProbe& probe, int local_rank) {
  if (mode == DeviceMode::Cpu) return {Device::cpu(), "device: cpu requested"};
  if (probe.count > 0) {
    Device d = Device::cuda(local_rank % probe.count);
    return {d, "using " + d.str() + " (" + std::to_string(probe.count) + " CUDA device" +
                   (probe.count > 1 ? "s" : "") + " visible)"};
  }
  if (mode == DeviceMode::Cuda) {
    LB_THROW(DeviceError, "device: cuda requested but no GPU is usable: " + probe.message +
                              ". HINT: set `device: auto` or `device: cpu` to train on the CPU");
  }
  return {Device::cpu(), "using cpu: no usable GPU (" + probe.message + ")"};
}

DeviceSelection selectDevice(DeviceMode mode, int local_rank) {
  // Do not touch the driver at all when the CPU was asked for.
  if (mode == DeviceMode::Cpu) return selectDevice(mode, CudaProbe{}, local_rank);
  return selectDevice(mode, probeCuda(), local_rank);
}

}  // namespace lowband::runtime
