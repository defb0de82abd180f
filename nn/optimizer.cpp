#include "nn/optimizer.h"

#include <algorithm>
#include <cmath>

#include "runtime/error.h"
#include "runtime/kernels.h"
#include "runtime/nn_ops.h"

namespace lowband::nn {

using runtime::DType;

Optimizer::Optimizer(ParamStore& params, const OptimizerSettings& settings, int64_t begin,
                     int64_t end)
    : params_(params), settings_(settings), begin_(begin), end_(end < 0 ? params.size() : end) {
  LB_REQUIRE(0 <= begin_ && begin_ <= end_ && end_ <= params.size(), runtime::ShapeError,
             "optimizer range [" + std::to_string(begin_) + ", " + std::to_string(end_) +
                 ") outside the " + std::to_string(params.size()) + " parameters");
  const int64_t buffers = settings.type == OptimizerType::AdamW ? 2 : 1;
  // At least one element, so a rank whose shard is empty still has a valid buffer.
  state_ = std::make_unique<runtime::Storage>(
      params.device(), buffers * std::max<int64_t>(1, end_ - begin_) * sizeof(float));
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
  return std::sqrt(gradientSquares(s));
}

double Optimizer::gradientSquares(const runtime::Stream& s) const {
  return runtime::sumSquares(s, params_.grads().data<float>() + begin_, end_ - begin_);
}

void Optimizer::apply(const runtime::Stream& s, int64_t step, double norm) {
  const runtime::Tensor grads = params_.grads().range(begin_, end_ - begin_);
  if (settings_.grad_clip > 0 && norm > settings_.grad_clip && end_ > begin_)
    runtime::scale(s, grads, static_cast<float>(settings_.grad_clip / (norm + 1e-6)));
  ++updates_;
  const float lr = lrAt(step);
  float* p = params_.params().data<float>();
  float* g = params_.grads().data<float>();
  // State element i belongs to parameter begin_ + i.
  float* m = this->state().data<float>();
  float* v = m + std::max<int64_t>(1, end_ - begin_);
  // One launch per run of consecutive tensors with the same decay setting, cut to the range
  // (padding included: its gradients are zero, so it stays zero).
  const auto& infos = params_.infos();
  for (std::size_t i = 0; i < infos.size();) {
    std::size_t j = i + 1;
    while (j < infos.size() && infos[j].decay == infos[i].decay) ++j;
    const int64_t begin = std::max(begin_, infos[i].offset);
    const int64_t end = std::min(end_, j < infos.size() ? infos[j].offset : params_.size());
    const float wd = infos[i].decay ? settings_.weight_decay : 0.0f;
    if (begin < end) {
      if (settings_.type == OptimizerType::AdamW) {
        runtime::adamwStep(s, p + begin, g + begin, m + (begin - begin_), v + (begin - begin_),
                           end - begin,
                           {lr, settings_.beta1, settings_.beta2, settings_.eps, wd, updates_});
      } else {
        runtime::sgdStep(s, p + begin, g + begin, m + (begin - begin_), end - begin,
                         {lr, settings_.momentum, wd, settings_.nesterov, updates_ == 1});
      }
    }
    i = j;
  }
}

}  // namespace lowband::nn
