// Inner optimizers over a ParamStore's flat buffers, with global grad-norm clipping and the
// learning-rate schedule.
//   schedule: step < warmup: lr * (step + 1) / warmup; afterwards, with
//   progress = (step - warmup) / (total - warmup) and floor = lr * min_lr_ratio,
//   cosine: floor + (lr - floor) * (1 + cos(pi * progress)) / 2; linear: lr - (lr - floor) *
//   progress; constant: lr.
//   clipping (PyTorch clip_grad_norm_): g *= min(1, clip / (||g|| + 1e-6)).
//   AdamW: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//          p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)      (PyTorch's order)
//   SGD:   d = g + wd p; buf = mu buf + d (buf = d at the first step); p -= lr (nesterov ?
//          d + mu buf : buf)
// Weight decay applies only to tensors marked `decay` (the matmul weights): not to LayerNorm
// gains and biases, linear biases or the embeddings.
// An optimizer may own only a range [begin, end) of the flat buffers (ZeRO: this rank's shard):
// its state covers that range alone, and it reads and updates nothing outside it; the caller
// then computes the norm of the whole gradient (schedules::ZeroShard) and passes it to apply().
#pragma once

#include <cstdint>
#include <memory>

#include "nn/param_store.h"
#include "runtime/state_dict.h"
#include "runtime/stream.h"

namespace lowband::nn {

enum class OptimizerType { AdamW, Sgd };
enum class Schedule { Cosine, Linear, Constant };

struct OptimizerSettings {
  OptimizerType type = OptimizerType::AdamW;
  float lr = 3e-4f;
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.1f;
  float momentum = 0.9f;
  bool nesterov = false;
  float grad_clip = 1.0f;  // 0: off
  int64_t warmup = 100;
  Schedule schedule = Schedule::Cosine;
  float min_lr_ratio = 0.1f;
  int64_t total_steps = 1000;
};

class Optimizer {
 public:
  // `end` < 0: to the end of the buffers.
  Optimizer(ParamStore& params, const OptimizerSettings& settings, int64_t begin = 0,
            int64_t end = -1);
  float lrAt(int64_t step) const;  // step is 0-based
  // Clips the gradients, applies one update with the lr of `step`, and returns the gradient
  // norm before clipping.
  double step(const runtime::Stream& stream, int64_t step);
  // The two halves of step(), for callers that look at the norm before updating (a NaN/Inf
  // gradient skips the update): the global gradient norm, then clip + update.
  double gradientNorm(const runtime::Stream& stream) const;
  double gradientSquares(const runtime::Stream& stream) const;  // sum of g^2 over the range
  void apply(const runtime::Stream& stream, int64_t step, double norm);
  // State buffers (AdamW: m then v; SGD: momentum), each covering the range.
  runtime::Tensor state() const;
  const OptimizerSettings& settings() const { return settings_; }
  // Checkpoints: the state buffers and the update count (AdamW's bias correction, SGD's first
  // step) as "optimizer.state" and "optimizer.updates".
  void saveState(const runtime::Stream& stream, runtime::StateDict& out) const;
  void loadState(const runtime::Stream& stream, const runtime::StateDict& in);

 private:
  ParamStore& params_;
  OptimizerSettings settings_;
  int64_t begin_ = 0, end_ = 0;
  std::unique_ptr<runtime::Storage> state_;
  int64_t updates_ = 0;
};

}  // namespace lowband::nn
