// Multi-layer perceptron classifier: h_0 = x; h_i = act(h_{i-1} W_i^T + b_i) for the hidden
// layers; logits = h_{k-1} W_k^T + b_k; loss = mean softmax cross-entropy. Parameters fc{i}.w
// ([out, in]) and fc{i}.b, layer i in group i.
#pragma once

#include <memory>
#include <vector>

#include "nn/arena.h"
#include "nn/model.h"

namespace lowband::nn {

enum class MlpActivation { Relu, Gelu };

struct MlpShape {
  int64_t input = 784;
  std::vector<int64_t> hidden = {256, 256};
  int64_t classes = 10;
  MlpActivation activation = MlpActivation::Relu;
};

class Mlp : public Model {
 public:
  // tf32: CUDA GEMMs on TF32 tensor cores (model.precision tf32; the MLP has no bf16 path).
  Mlp(const MlpShape& shape, runtime::Device device, int64_t pad_multiple = ParamStore::kAlign,
      bool tf32 = false);
  ParamStore& params() override { return params_; }
  float forward(const runtime::Stream& stream, const Batch& batch) override;
  void backward(const runtime::Stream& stream) override;
  std::vector<float> logits(const runtime::Stream& stream) override;
  double flopsPerPosition() const override;
  std::string describe() const override;
  int64_t activationBytes() const override { return act_ ? act_->bytes() : 0; }

 private:
  int64_t width(std::size_t i) const;  // width of h_i (0: input)
  void ensureActivations(int64_t N, const runtime::Stream& stream);

  MlpShape shape_;
  bool tf32_ = false;
  struct LayerOffsets {
    int64_t w, b;  // in the flat buffers
  };
  std::vector<LayerOffsets> layers_;
  ParamStore params_;
  int64_t N_ = 0;
  bool has_targets_ = false;
  std::unique_ptr<Arena> act_;
  std::unique_ptr<runtime::Storage> targets_;
  std::vector<int> pre_, post_;  // per layer: pre-activation and output buffers
  int input_ = 0, losses_ = 0, lse_ = 0, dcur_ = 0, dnext_ = 0;
};

}  // namespace lowband::nn
