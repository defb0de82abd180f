// One GPT training step on any device and precision, for tests that compare devices and
// precisions: forward, backward and an AdamW step with lr 1e-2 and no warm-up (an update that is
// not tiny, so a wrong optimizer shows), returning the loss, gradients and updated parameters.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "nn/gpt.h"
#include "nn/optimizer.h"
#include "runtime/kernels.h"

namespace lowband::test {

struct GptStep {
  float loss = 0;
  std::vector<float> grads, params;
};

inline GptStep gptStep(runtime::Device device, runtime::Precision precision,
                       const nn::GptShape& shape, const nn::Batch& batch, uint64_t seed) {
  runtime::Stream s(device);
  nn::Gpt gpt(shape, device, nn::ParamStore::kAlign, precision);
  gpt.params().initialize(seed, s);
  nn::OptimizerSettings o;
  o.lr = 1e-2f;
  o.warmup = 0;
  nn::Optimizer opt(gpt.params(), o);
  GptStep r;
  r.loss = gpt.forward(s, batch);
  gpt.backward(s);
  const int64_t n = gpt.params().size();
  auto host = [&](const runtime::Tensor& t) {
    std::vector<float> v(n);
    runtime::copyBytes(s, v.data(), runtime::Device::cpu(), t.raw(), device, n * sizeof(float));
    s.synchronize();
    return v;
  };
  r.grads = host(gpt.params().grads());
  opt.step(s, 0);
  r.params = host(gpt.params().params());
  return r;
}

// ||got - want|| / ||want|| over [begin, begin + count).
inline double relativeError(const std::vector<float>& got, const std::vector<float>& want,
                            int64_t begin, int64_t count) {
  double diff = 0, norm = 0;
  for (int64_t i = begin; i < begin + count; ++i) {
    diff += (got[i] - want[i]) * static_cast<double>(got[i] - want[i]);
    norm += want[i] * static_cast<double>(want[i]);
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

}  // namespace lowband::test
