// StateDict entries of tensors on any device (kept apart from state_dict.cpp so the checkpoint
// format builds without the kernels, e.g. in the fuzzers).
#include "runtime/kernels.h"
#include "runtime/state_dict.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace lowband::runtime {

void putTensor(StateDict& state, const std::string& name, const Stream& stream,
               const Tensor& tensor) {
  std::vector<uint8_t> host(tensor.nbytes());
  copyBytes(stream, host.data(), Device::cpu(), tensor.raw(), tensor.device(), host.size());
  stream.synchronize();
  state.put(name, host.data(), host.size());
}

void getTensor(const StateDict& state, const std::string& name, const Stream& stream,
               const Tensor& tensor) {
  std::vector<uint8_t> host(tensor.nbytes());
  state.getInto(name, host.data(), host.size());
  copyBytes(stream, tensor.raw(), tensor.device(), host.data(), Device::cpu(), host.size());
  stream.synchronize();
}

}  // namespace lowband::runtime
