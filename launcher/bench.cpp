#include "launcher/bench.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "nn/optimizer.h"
#include "runtime/kernels.h"

namespace lowband::launcher {

bool trainBenchPreset(const std::string& name, TrainBenchOptions& o) {
  if (name == "small") {
    o.shape = {6, 256, 8, 256, 256};
    o.batch = 8;
  } else if (name == "gpt2") {
    o.shape = {12, 768, 12, 64, 50257};
    o.batch = 4;
  } else {
    return false;
  }
  o.name = name;
  return true;
}

TrainBenchResult benchTrain(const TrainBenchOptions& o) {
  const runtime::Device device = runtime::selectDevice(o.device).device;
  runtime::Stream s(device);
  nn::Gpt gpt(o.shape, device);
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
  std::vector<double> times;
  for (int step = 0; step < o.steps + 2; ++step) {
    const auto start = std::chrono::steady_clock::now();
    runtime::fill(s, gpt.params().grads(), 0.0f);
    gpt.forward(s, batch);
    gpt.backward(s);
    optimizer.step(s, step);
    s.synchronize();
    if (step >= 2)
      times.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  TrainBenchResult r;
  r.step_s = times[times.size() / 2];
  r.tokens_per_s = static_cast<double>(n) / r.step_s;
  r.gemm_peak_gflops = runtime::measureGemmPeak(s);
  r.mfu = gpt.flopsPerPosition() * r.tokens_per_s / (r.gemm_peak_gflops * 1e9);
  return r;
}

}  // namespace lowband::launcher
