#include "nn/mlp.h"

#include <algorithm>
#include <cmath>

#include "runtime/error.h"
#include "runtime/kernels.h"
#include "runtime/nn_ops.h"

namespace lowband::nn {

using namespace lowband::runtime;

namespace {
std::string layerName(std::size_t i, const char* what) {
  return "fc" + std::to_string(i) + "." + what;
}
}  // namespace

Mlp::Mlp(const MlpShape& shape, Device device, int64_t pad_multiple, bool tf32)
    : shape_(shape), tf32_(tf32) {
  for (std::size_t i = 0; i + 1 <= shape_.hidden.size(); ++i) {
    const int64_t in = width(i), out = width(i + 1);
    // He initialisation for the ReLU/GELU layers, 1/sqrt(in) for the output layer.
    params_.add(layerName(i, "w"), {out, in}, static_cast<int>(i), true, Init::Normal,
                std::sqrt(2.0f / static_cast<float>(in)));
    params_.add(layerName(i, "b"), {out}, static_cast<int>(i), false, Init::Zeros);
  }
  const std::size_t last = shape_.hidden.size();
  params_.add(layerName(last, "w"), {shape_.classes, width(last)}, static_cast<int>(last), true,
              Init::Normal, 1.0f / std::sqrt(static_cast<float>(width(last))));
  params_.add(layerName(last, "b"), {shape_.classes}, static_cast<int>(last), false, Init::Zeros);
  params_.finalize(device, pad_multiple);
  for (std::size_t i = 0; i <= last; ++i)  // resolved once: a step does no name lookups
    layers_.push_back(
        {params_.info(layerName(i, "w")).offset, params_.info(layerName(i, "b")).offset});
}

int64_t Mlp::width(std::size_t i) const {
  if (i == 0) return shape_.input;
  if (i <= shape_.hidden.size()) return shape_.hidden[i - 1];
  return shape_.classes;
}

void Mlp::ensureActivations(int64_t N, const Stream& stream) {
  if (N == N_) return;
  const std::size_t layers = shape_.hidden.size() + 1;
  auto arena = std::make_unique<Arena>();
  int64_t widest = shape_.input;
  input_ = arena->reserve(N * shape_.input);
  pre_.clear();
  post_.clear();
  for (std::size_t i = 0; i < layers; ++i) {
    pre_.push_back(arena->reserve(N * width(i + 1)));
    post_.push_back(arena->reserve(N * width(i + 1)));
    widest = std::max(widest, width(i + 1));
  }
  losses_ = arena->reserve(N);
  lse_ = arena->reserve(N);
  dcur_ = arena->reserve(N * widest);
  dnext_ = arena->reserve(N * widest);
  arena->allocate(params_.device(), stream.handle());
  act_ = std::move(arena);
  targets_ = std::make_unique<Storage>(params_.device(), N * sizeof(int32_t), stream.handle());
  N_ = N;
}

float Mlp::forward(const Stream& s, const Batch& batch) {
  const int64_t N = batch.rows;
  LB_REQUIRE(batch.features && N >= 1, ShapeError, "mlp forward needs features");
  ensureActivations(N, s);
  const Arena& a = *act_;
  const Device dev = params_.device();
  copyBytes(s, a[input_], dev, batch.features, Device::cpu(), N * shape_.input * sizeof(float));
  has_targets_ = batch.targets != nullptr;
  int32_t* targets = static_cast<int32_t*>(targets_->data());
  if (has_targets_) copyBytes(s, targets, dev, batch.targets, Device::cpu(), N * sizeof(int32_t));
  const std::size_t layers = pre_.size();
  const float* h = a[input_];
  for (std::size_t i = 0; i < layers; ++i) {
    paramsNeeded(static_cast<int>(i));
    float* p = params_.params().data<float>();
    linearForward(s, a[pre_[i]], h, p + layers_[i].w, p + layers_[i].b, N, width(i), width(i + 1),
                  tf32_);
    if (i + 1 < layers) {
      if (shape_.activation == MlpActivation::Relu)
        reluForward(s, a[post_[i]], a[pre_[i]], N * width(i + 1));
      else
        geluForward(s, a[post_[i]], a[pre_[i]], N * width(i + 1));
      h = a[post_[i]];
    }
  }
  if (!has_targets_) return 0.0f;
  const int64_t K = shape_.classes;
  crossEntropyForward(s, a[losses_], a[lse_], a[pre_.back()], targets, N, K, K);
  return static_cast<float>(meanOnHost(s, a[losses_], N));
}

void Mlp::backward(const Stream& s) {
  LB_REQUIRE(act_ && has_targets_, ShapeError, "backward() without a forward() with targets");
  const Arena& a = *act_;
  const int64_t N = N_, K = shape_.classes;
  const int32_t* targets = static_cast<const int32_t*>(targets_->data());
  // The logits buffer becomes d loss / d logits.
  crossEntropyBackward(s, a[pre_.back()], a[pre_.back()], a[lse_], targets, N, K, K,
                       1.0f / static_cast<float>(N));
  const float* dout = a[pre_.back()];
  float* const dcur = a[dcur_];
  float* const dnext = a[dnext_];
  for (std::size_t i = pre_.size(); i-- > 0;) {
    const float* in = i == 0 ? a[input_] : a[post_[i - 1]];
    float* din = i == 0 ? nullptr : dcur;  // no gradient for the input images
    float* p = params_.params().data<float>();
    float* g = params_.grads().data<float>();
    linearBackward(s, din, g + layers_[i].w, g + layers_[i].b, dout, in, p + layers_[i].w, N,
                   width(i), width(i + 1), false, tf32_);
    gradsReady(static_cast<int>(i));
    if (i == 0) break;
    if (shape_.activation == MlpActivation::Relu)
      reluBackward(s, dnext, a[pre_[i - 1]], dcur, N * width(i));
    else
      geluBackward(s, dnext, a[pre_[i - 1]], dcur, N * width(i));
    dout = dnext;  // dcur is free again for the next layer's input gradient
  }
}

std::vector<float> Mlp::logits(const Stream& s) {
  LB_REQUIRE(act_ != nullptr, ShapeError, "logits() before forward()");
  std::vector<float> out(N_ * shape_.classes);
  copyBytes(s, out.data(), Device::cpu(), (*act_)[pre_.back()], params_.device(),
            out.size() * sizeof(float));
  s.synchronize();
  return out;
}

double Mlp::flopsPerPosition() const {
  double weights = 0;
  for (std::size_t i = 0; i <= shape_.hidden.size(); ++i)
    weights += static_cast<double>(width(i)) * static_cast<double>(width(i + 1));
  return 6 * weights;
}

std::string Mlp::describe() const {
  // Widths joined by '-', built with += (GCC 12 warns falsely on chained temporaries here).
  std::string s = "mlp ";
  for (std::size_t i = 0; i <= shape_.hidden.size() + 1; ++i) {
    if (i) s += '-';
    s += std::to_string(width(i));
  }
  s += " (";
  s += std::to_string(params_.numParameters());
  s += " parameters)";
  return s;
}

}  // namespace lowband::nn
