#include "nn/optimizer.h"

#include <cmath>

#include "runtime/error.h"
#include "runtime/kernels.h"
#include "runtime/nn_ops.h"

namespace lowband::nn {

using runtime::DType;

Optimizer::Optimizer(ParamStore& params, const OptimizerSettings& settings)
    : params_(params), settings_(settings) {
  const int64_t buffers = settings.type == OptimizerType::AdamW ? 2 : 1;
  state_ =
      std::make_unique<runtime::Storage>(params.device(), buffers * params.size() * sizeof(float));
  runtime::Stream s(params.device());
  runtime::fill(s, state(), 0.0f);
  s.synchronize();
}

runtime::Tensor Optimizer::state() const {
  const int64_t n = static_cast<int64_t>(state_->bytes() / sizeof(float));
  return runtime::Tensor(*state_, DType::F32, {n});
}

void Optimizer::saveState(const runtime::Stream& stream, runtime::StateDict& out) const {
  runtime::putTensor(out, "optimizer.state", stream, state());
  out.putValue("optimizer.updates", updates_);
}

void Optimizer::loadState(const runtime::Stream& stream, const runtime::StateDict& in) {
  runtime::getTensor(in, "optimizer.state", stream, state());
  updates_ = in.value<int64_t>("optimizer.updates");
}

float Optimizer::lrAt(int64_t step) const {
  const OptimizerSettings& o = settings_;
  if (step < o.warmup) return o.lr * static_cast<float>(step + 1) / static_cast<float>(o.warmup);
  if (o.schedule == Schedule::Constant || o.total_steps <= o.warmup) return o.lr;
  const double progress = std::min(
      1.0, static_cast<double>(step - o.warmup) / static_cast<double>(o.total_steps - o.warmup));
  const double floor = o.lr * o.min_lr_ratio;
  if (o.schedule == Schedule::Linear) return static_cast<float>(o.lr - (o.lr - floor) * progress);
  return static_cast<float>(floor + (o.lr - floor) * 0.5 * (1 + std::cos(M_PI * progress)));
}

double Optimizer::step(const runtime::Stream& s, int64_t step) {
  const double norm = gradientNorm(s);
  apply(s, step, norm);
  return norm;
}

double Optimizer::gradientNorm(const runtime::Stream& s) const {
  runtime::Tensor grads = params_.grads();
  return std::sqrt(runtime::sumSquares(s, grads.data<float>(), grads.numel()));
}

void Optimizer::apply(const runtime::Stream& s, int64_t step, double norm) {
  runtime::Tensor grads = params_.grads();
  if (settings_.grad_clip > 0 && norm > settings_.grad_clip)
    runtime::scale(s, grads, static_cast<float>(settings_.grad_clip / (norm + 1e-6)));
  ++updates_;
  const float lr = lrAt(step);
  float* p = params_.params().data<float>();
  float* g = grads.data<float>();
  float* state = this->state().data<float>();
  // One launch per run of consecutive tensors with the same decay setting (padding included:
  // its gradients are zero, so it stays zero).
  const auto& infos = params_.infos();
  for (std::size_t i = 0; i < infos.size();) {
    std::size_t j = i + 1;
    while (j < infos.size() && infos[j].decay == infos[i].decay) ++j;
    const int64_t begin = infos[i].offset;
    const int64_t end = j < infos.size() ? infos[j].offset : params_.size();
    const float wd = infos[i].decay ? settings_.weight_decay : 0.0f;
    if (settings_.type == OptimizerType::AdamW) {
      runtime::adamwStep(s, p + begin, g + begin, state + begin, state + params_.size() + begin,
                         end - begin,
                         {lr, settings_.beta1, settings_.beta2, settings_.eps, wd, updates_});
    } else {
      runtime::sgdStep(s, p + begin, g + begin, state + begin, end - begin,
                       {lr, settings_.momentum, wd, settings_.nesterov, updates_ == 1});
    }
    i = j;
  }
}

}  // namespace lowband::nn
