// Decoder-only transformer (GPT-2 layout) with explicit forward and backward:
//   x0 = wte[tokens] + wpe[positions]
//   per block: x = x + proj(attn(LN1(x))),  x = x + fc_proj(gelu(fc(LN2(x))))
//   logits = LN_f(x) wte^T (output head tied to the token embedding), loss = mean CE.
// Parameter layout in the ParamStore: wte, wpe, lnf.w, lnf.b (group kEmbeddingGroup), then
// per block h.L.{ln1.w, ln1.b, attn.w, attn.b, attn_proj.w, attn_proj.b, ln2.w, ln2.b, fc.w,
// fc.b, fc_proj.w, fc_proj.b} (group L). Linear weights are [out, in] as in PyTorch.
// Precision (runtime/precision.h): in bf16 each group's parameters are rounded into a bf16 copy
// just before forward first reads the group, and the activations that feed GEMMs and attention
// (LN outputs, qkv, attention output, fc and GELU outputs, and their gradients) are bf16; the
// residual stream, logits and LayerNorm inputs stay f32. One forward/backward, templated on the
// activation type, serves every precision.
#pragma once

#include <memory>
#include <vector>

#include "nn/arena.h"
#include "nn/model.h"
#include "runtime/nn_ops.h"
#include "runtime/precision.h"

namespace lowband::nn {

struct GptShape {
  int64_t n_layer = 6;
  int64_t d_model = 256;
  int64_t n_head = 8;
  int64_t seq_len = 256;
  int64_t vocab = 256;
  int64_t paddedVocab() const { return (vocab + 63) / 64 * 64; }
};

class Gpt : public Model {
 public:
  // Declares the parameters; `pad_multiple` pads the flat buffer (see ParamStore::finalize).
  Gpt(const GptShape& shape, runtime::Device device, int64_t pad_multiple = ParamStore::kAlign,
      runtime::Precision precision = runtime::Precision::Fp32);
  ParamStore& params() override { return params_; }
  float forward(const runtime::Stream& stream, const Batch& batch) override;
  void backward(const runtime::Stream& stream) override;
  std::vector<float> logits(const runtime::Stream& stream) override;
  double flopsPerPosition() const override;
  std::string describe() const override;
  int64_t activationBytes() const override { return act_ ? act_->bytes() : 0; }
  const GptShape& shape() const { return shape_; }
  runtime::Precision precision() const { return precision_; }

 private:
  // Where each tensor of a block starts in the flat buffers (params, grads and the bf16 copy
  // share the layout): resolved once at construction, so a step does no name lookups.
  struct BlockOffsets {
    int64_t ln1_w, ln1_b, attn_w, attn_b, attn_proj_w, attn_proj_b, ln2_w, ln2_b, fc_w, fc_b,
        fc_proj_w, fc_proj_b;
  };
  struct Layer {
    int ln1, ln1_mean, ln1_rstd, qkv, atty, lse, res_att, ln2, ln2_mean, ln2_rstd, fch, fch_gelu,
        res_mlp;
  };
  template <class T>
  float forwardAs(const runtime::Stream& stream, const Batch& batch);
  template <class T>
  void backwardAs(const runtime::Stream& stream);
  template <class T>
  void ensureActivations(int64_t B, int64_t T_, const runtime::Stream& stream);
  // Signals the params-needed hook, then (bf16) rounds the group into the bf16 copy.
  void needParams(const runtime::Stream& stream, int group);
  float* p(int64_t offset) const { return params_.params().data<float>() + offset; }
  float* g(int64_t offset) const { return params_.grads().data<float>() + offset; }
  // A parameter as the GEMMs read it: the f32 master, or its bf16 copy.
  template <class T>
  T* pAs(int64_t offset) const;

  GptShape shape_;
  runtime::Precision precision_;
  ParamStore params_;
  std::unique_ptr<runtime::Storage> params_bf16_;  // bf16 copy of the flat parameters
  int64_t B_ = 0, T_seen_ = 0;
  bool has_targets_ = false;
  std::unique_ptr<Arena> act_;
  std::unique_ptr<runtime::Storage> tokens_, targets_;
  runtime::TokenRows token_rows_;
  int encoded_ = 0, lnf_ = 0, lnf_mean_ = 0, lnf_rstd_ = 0, logits_ = 0, losses_ = 0, ce_lse_ = 0;
  // Gradient buffers; in f32 the *_act ones are the same buffers as their f32 twins.
  int dres_ = 0, dres_act_ = 0, dbtc_ = 0, datty_ = 0, dqkv_ = 0, dfch_ = 0, dlogits_ = 0;
  std::vector<Layer> layers_;
  std::vector<BlockOffsets> blocks_;
  int64_t wte_ = 0, wpe_ = 0, lnf_w_ = 0, lnf_b_ = 0;
};

}  // namespace lowband::nn
