#include "launcher/bench.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "launcher/config.h"
#include "launcher/setup.h"
#include "nn/optimizer.h"
#include "runtime/kernels.h"
#if LB_WITH_CUDA
#include "runtime/cuda/backend.h"
#endif

namespace lowband::launcher {

using runtime::precisionName;

double medianStepSeconds(nn::Model& model, nn::Optimizer& optimizer, const nn::Batch& batch,
                         const runtime::Stream& s, int64_t warmup, int64_t steps) {
  std::vector<double> times;
  for (int64_t step = 0; step < warmup + steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    runtime::fill(s, model.params().grads(), 0.0f);
    model.forward(s, batch);
    model.backward(s);
    optimizer.step(s, step);
    s.synchronize();
    if (step >= warmup)
      times.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

bool trainBenchPreset(const std::string& name, TrainBenchOptions& o) {
  if (name == "small") {
    o.shape = {6, 256, 8, 256, 256};
    o.batch = 8;
  } else if (name == "gpt2") {
    o.shape = {12, 768, 12, 64, 50257};
    o.batch = 4;
  } else if (name == "gpt2-1024") {
    o.shape = {12, 768, 12, 1024, 50257};
    o.batch = 8;
  } else {
    return false;
  }
  o.name = name;
  return true;
}

TrainBenchResult benchTrain(const TrainBenchOptions& o) {
  const runtime::Device device = runtime::selectDevice(o.device).device;
  TrainBenchResult r;
  const std::string problem = checkPrecision(o.precision, device, &o.shape, o.batch, &r.precision);
  if (!problem.empty())
    throw ConfigError("--precision " + std::string(precisionName(o.precision)) + ": " + problem);
  r.device = device.str();
#if LB_WITH_CUDA
  if (device.isCuda()) r.device += " (" + runtime::cuda::deviceName(device.index) + ")";
#endif
  runtime::Stream s(device);
  nn::Gpt gpt(o.shape, device, nn::ParamStore::kAlign, o.precision);
  gpt.params().initialize(1234, s);
  nn::Optimizer optimizer(gpt.params(), {});
  const int64_t T = o.shape.seq_len, n = o.batch * T;
  std::vector<int32_t> tokens(n), targets(n);
  std::mt19937 rng(1);
  for (int64_t i = 0; i < n; ++i) {
    tokens[i] = static_cast<int32_t>(rng() % o.shape.vocab);
    targets[i] = static_cast<int32_t>(rng() % o.shape.vocab);
  }
  const nn::Batch batch{tokens.data(), nullptr, targets.data(), o.batch, T};
  r.step_s = medianStepSeconds(gpt, optimizer, batch, s, 2, o.steps);
  r.tokens_per_s = static_cast<double>(n) / r.step_s;
  r.gemm_peak_gflops = runtime::measureGemmPeak(s, o.precision);
  r.mfu = gpt.flopsPerPosition() * r.tokens_per_s / (r.gemm_peak_gflops * 1e9);
  return r;
}

}  // namespace lowband::launcher
