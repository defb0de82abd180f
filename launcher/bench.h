// `lowband bench train`: throughput of one training step (forward, backward, AdamW) of a GPT
// shape on random tokens, as the median over timed steps, with MFU against the GEMM peak
// measured in the same run. bench/train_vs_pytorch.py runs it beside PyTorch for the ratio.
#pragma once

#include <ostream>
#include <string>

#include "nn/gpt.h"
#include "nn/optimizer.h"
#include "runtime/device.h"
#include "runtime/precision.h"

namespace lowband::launcher {

struct TrainBenchOptions {
  std::string name = "small";
  nn::GptShape shape{6, 256, 8, 256, 256};
  int64_t batch = 8;
  int steps = 10;  // timed steps, after 2 warm-up steps
  runtime::DeviceMode device = runtime::DeviceMode::Auto;
  runtime::Precision precision = runtime::Precision::Fp32;
};

struct TrainBenchResult {
  double tokens_per_s = 0;
  double step_s = 0;  // median
  double mfu = 0;
  double gemm_peak_gflops = 0;  // in the benchmark's precision
  std::string device;           // "cuda:0 (NVIDIA H200)", "cpu"
  std::string precision;        // as the start-up table says it
};

TrainBenchResult benchTrain(const TrainBenchOptions& options);

// Median seconds of `steps` training steps on `batch` (zeroed gradients, forward, backward,
// clipped optimizer step), after `warmup` untimed ones.
double medianStepSeconds(nn::Model& model, nn::Optimizer& optimizer, const nn::Batch& batch,
                         const runtime::Stream& stream, int64_t warmup, int64_t steps);

// Named shapes: "small" (6x256, 8 heads, T 256, batch 8, vocab 256), "gpt2" (GPT-2 small:
// 12x768, 12 heads, T 64, batch 4, vocab 50257) and "gpt2-1024" (GPT-2 small at its full context:
// T 1024, batch 8). Returns false for an unknown name.
bool trainBenchPreset(const std::string& name, TrainBenchOptions& options);

}  // namespace lowband::launcher
