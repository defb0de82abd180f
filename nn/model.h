// What the trainer sees of a model: its parameters, forward with loss, backward.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nn/param_store.h"
#include "runtime/stream.h"

namespace lowband::nn {

// One batch in host memory. Token models read `tokens` ([rows, seq]); image models read
// `features` ([rows, inputs]). `targets` has one class per predicted position.
struct Batch {
  const int32_t* tokens = nullptr;
  const float* features = nullptr;
  const int32_t* targets = nullptr;
  int64_t rows = 0;  // sequences or images
  int64_t seq = 1;   // tokens per sequence (1 for images)
};

class Model {
 public:
  virtual ~Model() = default;
  virtual ParamStore& params() = 0;
  // Runs the forward pass, keeps what backward needs, and returns the mean loss (waits for
  // the stream). With targets == nullptr only logits are computed and 0 is returned.
  // Calls the params-needed hook once per parameter group, in the order forward first reads
  // the groups, just before issuing that group's first kernel: a caller can finish writing a
  // group's parameters (a deferred outer update) while the earlier layers compute.
  virtual float forward(const runtime::Stream& stream, const Batch& batch) = 0;
  // grads += d(mean loss)/d(params) of the last forward. Calls the gradients-ready hook once
  // per parameter group (ParamStore groups) as soon as backward has finished writing that
  // group's gradients (its kernels are issued on `stream`), so a caller can start reducing
  // them while the earlier layers' backward still runs.
  virtual void backward(const runtime::Stream& stream) = 0;
  void setGradsReadyHook(std::function<void(int group)> hook) { grads_ready_ = std::move(hook); }
  void setParamsNeededHook(std::function<void(int group)> hook) {
    params_needed_ = std::move(hook);
  }
  // Logits of the last forward on the host: [rows * seq, classes] (for tests and evaluation).
  virtual std::vector<float> logits(const runtime::Stream& stream) = 0;
  // Floating-point operations of one forward + backward per predicted position (for MFU).
  virtual double flopsPerPosition() const = 0;
  virtual std::string describe() const = 0;
  // Bytes of the activation arena of the last forward (0 before the first).
  virtual int64_t activationBytes() const = 0;

 protected:
  void gradsReady(int group) const {
    if (grads_ready_) grads_ready_(group);
  }
  void paramsNeeded(int group) const {
    if (params_needed_) params_needed_(group);
  }

 private:
  std::function<void(int group)> grads_ready_, params_needed_;
};

}  // namespace lowband::nn
