#include "nn/gpt.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "runtime/error.h"
#include "runtime/kernels.h"
#include "runtime/nn_ops.h"

namespace lowband::nn {

using namespace lowband::runtime;

namespace {
std::string blockName(int64_t l, const char* what) { return "h." + std::to_string(l) + "." + what; }
}  // namespace

Gpt::Gpt(const GptShape& shape, Device device, int64_t pad_multiple, Precision precision)
    : shape_(shape), precision_(precision) {
  const int64_t C = shape.d_model, L = shape.n_layer, Vp = shape.paddedVocab();
  LB_REQUIRE(C % shape.n_head == 0, ShapeError,
             "d_model " + std::to_string(C) + " is not divisible by n_head " +
                 std::to_string(shape.n_head));
  const float std = 0.02f;
  const float proj_std = std / std::sqrt(2.0f * static_cast<float>(L));  // residual projections
  params_.add("wte", {Vp, C}, kEmbeddingGroup, false, Init::Normal, std, shape.vocab);
  params_.add("wpe", {shape.seq_len, C}, kEmbeddingGroup, false, Init::Normal, std);
  params_.add("lnf.w", {C}, kEmbeddingGroup, false, Init::Ones);
  params_.add("lnf.b", {C}, kEmbeddingGroup, false, Init::Zeros);
  for (int64_t l = 0; l < L; ++l) {
    const int grp = static_cast<int>(l);
    params_.add(blockName(l, "ln1.w"), {C}, grp, false, Init::Ones);
    params_.add(blockName(l, "ln1.b"), {C}, grp, false, Init::Zeros);
    params_.add(blockName(l, "attn.w"), {3 * C, C}, grp, true, Init::Normal, std);
    params_.add(blockName(l, "attn.b"), {3 * C}, grp, false, Init::Zeros);
    params_.add(blockName(l, "attn_proj.w"), {C, C}, grp, true, Init::Normal, proj_std);
    params_.add(blockName(l, "attn_proj.b"), {C}, grp, false, Init::Zeros);
    params_.add(blockName(l, "ln2.w"), {C}, grp, false, Init::Ones);
    params_.add(blockName(l, "ln2.b"), {C}, grp, false, Init::Zeros);
    params_.add(blockName(l, "fc.w"), {4 * C, C}, grp, true, Init::Normal, std);
    params_.add(blockName(l, "fc.b"), {4 * C}, grp, false, Init::Zeros);
    params_.add(blockName(l, "fc_proj.w"), {C, 4 * C}, grp, true, Init::Normal, proj_std);
    params_.add(blockName(l, "fc_proj.b"), {C}, grp, false, Init::Zeros);
  }
  params_.finalize(device, pad_multiple);
  auto at = [&](const std::string& name) { return params_.info(name).offset; };
  wte_ = at("wte");
  wpe_ = at("wpe");
  lnf_w_ = at("lnf.w");
  lnf_b_ = at("lnf.b");
  for (int64_t l = 0; l < L; ++l) {
    auto b = [&](const char* what) { return at(blockName(l, what)); };
    blocks_.push_back({b("ln1.w"), b("ln1.b"), b("attn.w"), b("attn.b"), b("attn_proj.w"),
                       b("attn_proj.b"), b("ln2.w"), b("ln2.b"), b("fc.w"), b("fc.b"),
                       b("fc_proj.w"), b("fc_proj.b")});
  }
  if (precision_ == Precision::Bf16)
    params_bf16_ = std::make_unique<Storage>(device, params_.size() * sizeof(Bf16));
}

template <class T>
T* Gpt::pAs(int64_t offset) const {
  if constexpr (std::is_same_v<T, float>) {
    return p(offset);
  } else {
    return static_cast<Bf16*>(params_bf16_->data()) + offset;
  }
}

void Gpt::needParams(const Stream& s, int group) {
  paramsNeeded(group);
  if (precision_ != Precision::Bf16) return;
  const auto [begin, end] = params_.groupRange(group);
  castToBf16(s, static_cast<Bf16*>(params_bf16_->data()) + begin,
             params_.params().data<float>() + begin, end - begin);
}

template <class T>
void Gpt::ensureActivations(int64_t B, int64_t T_, const Stream& stream) {
  if (B == B_ && T_ == T_seen_) return;
  const int64_t C = shape_.d_model, N = B * T_, H = shape_.n_head, Vp = shape_.paddedVocab();
  constexpr DType act = dtypeOf<T>();
  constexpr bool f32 = act == DType::F32;
  auto arena = std::make_unique<Arena>();
  encoded_ = arena->reserve(N * C);
  layers_.clear();
  for (int64_t l = 0; l < shape_.n_layer; ++l) {
    Layer a;
    a.ln1 = arena->reserve(N * C, act);
    a.ln1_mean = arena->reserve(N);
    a.ln1_rstd = arena->reserve(N);
    a.qkv = arena->reserve(N * 3 * C, act);
    a.atty = arena->reserve(N * C, act);
    a.lse = arena->reserve(B * H * T_);
    a.res_att = arena->reserve(N * C);
    a.ln2 = arena->reserve(N * C, act);
    a.ln2_mean = arena->reserve(N);
    a.ln2_rstd = arena->reserve(N);
    a.fch = arena->reserve(N * 4 * C, act);
    a.fch_gelu = arena->reserve(N * 4 * C, act);
    a.res_mlp = arena->reserve(N * C);
    layers_.push_back(a);
  }
  lnf_ = arena->reserve(N * C, act);
  lnf_mean_ = arena->reserve(N);
  lnf_rstd_ = arena->reserve(N);
  logits_ = arena->reserve(N * Vp);
  losses_ = arena->reserve(N);
  ce_lse_ = arena->reserve(N);
  dres_ = arena->reserve(N * C);
  dres_act_ = f32 ? dres_ : arena->reserve(N * C, act);
  dbtc_ = arena->reserve(N * C);
  datty_ = f32 ? dbtc_ : arena->reserve(N * C, act);
  dqkv_ = arena->reserve(N * 3 * C, act);
  dfch_ = arena->reserve(N * 4 * C, act);
  dlogits_ = f32 ? logits_ : arena->reserve(N * Vp, act);
  arena->allocate(params_.device(), stream.handle());
  act_ = std::move(arena);
  tokens_ = std::make_unique<Storage>(params_.device(), N * sizeof(int32_t), stream.handle());
  targets_ = std::make_unique<Storage>(params_.device(), N * sizeof(int32_t), stream.handle());
  B_ = B;
  T_seen_ = T_;
}

float Gpt::forward(const Stream& s, const Batch& batch) {
  return precision_ == Precision::Bf16 ? forwardAs<Bf16>(s, batch) : forwardAs<float>(s, batch);
}

void Gpt::backward(const Stream& s) {
  if (precision_ == Precision::Bf16)
    backwardAs<Bf16>(s);
  else
    backwardAs<float>(s);
}

template <class T>
float Gpt::forwardAs(const Stream& s, const Batch& batch) {
  const int64_t B = batch.rows, T_ = batch.seq, C = shape_.d_model, N = B * T_;
  const int64_t H = shape_.n_head, hd = C / H, V = shape_.vocab, Vp = shape_.paddedVocab();
  const bool tf32 = precision_ == Precision::Tf32;
  LB_REQUIRE(batch.tokens && T_ >= 1 && T_ <= shape_.seq_len && B >= 1, ShapeError,
             "gpt forward needs tokens with 1 <= T <= seq_len " + std::to_string(shape_.seq_len) +
                 ", got T " + std::to_string(T_));
  ensureActivations<T>(B, T_, s);
  const Arena& a = *act_;
  const Device dev = params_.device();
  int32_t* tokens = static_cast<int32_t*>(tokens_->data());
  int32_t* targets = static_cast<int32_t*>(targets_->data());
  copyBytes(s, tokens, dev, batch.tokens, Device::cpu(), N * sizeof(int32_t));
  has_targets_ = batch.targets != nullptr;
  if (has_targets_) {
    copyBytes(s, targets, dev, batch.targets, Device::cpu(), N * sizeof(int32_t));
    token_rows_.build(s, batch.tokens, N);  // for the embedding backward
  }

  needParams(s, kEmbeddingGroup);  // wte and wpe now; lnf and the tied head come last
  embeddingForward(s, a[encoded_], tokens, p(wte_), p(wpe_), B, T_, C);
  const float* x = a[encoded_];
  for (int64_t l = 0; l < shape_.n_layer; ++l) {
    const Layer& y = layers_[l];
    const BlockOffsets& o = blocks_[l];
    needParams(s, static_cast<int>(l));
    layerNormForward(s, a.as<T>(y.ln1), a[y.ln1_mean], a[y.ln1_rstd], x, p(o.ln1_w), p(o.ln1_b), N,
                     C);
    linearForward(s, a.as<T>(y.qkv), a.as<T>(y.ln1), pAs<T>(o.attn_w), pAs<T>(o.attn_b), N, C,
                  3 * C, tf32);
    attentionForward(s, a.as<T>(y.atty), a[y.lse], a.as<T>(y.qkv), B, T_, H, hd, tf32);
    linearForward(s, a[y.res_att], a.as<T>(y.atty), pAs<T>(o.attn_proj_w), p(o.attn_proj_b), N, C,
                  C, tf32);
    accumulate(s, a[y.res_att], x, N * C);
    layerNormForward(s, a.as<T>(y.ln2), a[y.ln2_mean], a[y.ln2_rstd], a[y.res_att], p(o.ln2_w),
                     p(o.ln2_b), N, C);
    linearForward(s, a.as<T>(y.fch), a.as<T>(y.ln2), pAs<T>(o.fc_w), pAs<T>(o.fc_b), N, C, 4 * C,
                  tf32);
    geluForward(s, a.as<T>(y.fch_gelu), a.as<T>(y.fch), N * 4 * C);
    linearForward(s, a[y.res_mlp], a.as<T>(y.fch_gelu), pAs<T>(o.fc_proj_w), p(o.fc_proj_b), N,
                  4 * C, C, tf32);
    accumulate(s, a[y.res_mlp], a[y.res_att], N * C);
    x = a[y.res_mlp];
  }
  layerNormForward(s, a.as<T>(lnf_), a[lnf_mean_], a[lnf_rstd_], x, p(lnf_w_), p(lnf_b_), N, C);
  linearForward(s, a[logits_], a.as<T>(lnf_), pAs<T>(wte_), static_cast<const float*>(nullptr), N,
                C, Vp, tf32);
  if (!has_targets_) return 0.0f;
  crossEntropyForward(s, a[losses_], a[ce_lse_], a[logits_], targets, N, V, Vp);
  return static_cast<float>(meanOnHost(s, a[losses_], N));
}

template <class T>
void Gpt::backwardAs(const Stream& s) {
  LB_REQUIRE(act_ && has_targets_, ShapeError, "backward() without a forward() with targets");
  const int64_t B = B_, T_ = T_seen_, C = shape_.d_model, N = B * T_;
  const int64_t H = shape_.n_head, hd = C / H, V = shape_.vocab, Vp = shape_.paddedVocab();
  const bool tf32 = precision_ == Precision::Tf32;
  const Arena& a = *act_;
  const int32_t* targets = static_cast<const int32_t*>(targets_->data());
  float* dres = a[dres_];
  T* dres_act = a.as<T>(dres_act_);
  float* dbtc = a[dbtc_];
  // The residual gradient as the GEMMs read it (a bf16 copy in bf16; itself in f32).
  auto residualGradAct = [&] {
    if constexpr (!std::is_same_v<T, float>) castToBf16(s, dres_act, dres, N * C);
    return dres_act;
  };

  crossEntropyBackward(s, a.as<T>(dlogits_), a[logits_], a[ce_lse_], targets, N, V, Vp,
                       1.0f / static_cast<float>(N));
  linearBackward(s, dbtc, g(wte_), nullptr, a.as<T>(dlogits_), a.as<T>(lnf_), pAs<T>(wte_), N, C,
                 Vp, false, tf32);
  const float* last = shape_.n_layer > 0 ? a[layers_.back().res_mlp] : a[encoded_];
  zero(s, dres, N * C);
  layerNormBackward(s, dres, g(lnf_w_), g(lnf_b_), dbtc, last, p(lnf_w_), a[lnf_mean_],
                    a[lnf_rstd_], N, C);
  for (int64_t l = shape_.n_layer - 1; l >= 0; --l) {
    const Layer& y = layers_[l];
    const float* x = l == 0 ? a[encoded_] : a[layers_[l - 1].res_mlp];
    const BlockOffsets& o = blocks_[l];
    // x_mlp = res_att + fc_proj(gelu(fc(LN2(res_att))))
    linearBackward(s, a.as<T>(dfch_), g(o.fc_proj_w), g(o.fc_proj_b), residualGradAct(),
                   a.as<T>(y.fch_gelu), pAs<T>(o.fc_proj_w), N, 4 * C, C, false, tf32);
    geluBackward(s, a.as<T>(dfch_), a.as<T>(y.fch), a.as<T>(dfch_), N * 4 * C);
    linearBackward(s, dbtc, g(o.fc_w), g(o.fc_b), a.as<T>(dfch_), a.as<T>(y.ln2), pAs<T>(o.fc_w), N,
                   C, 4 * C, false, tf32);
    layerNormBackward(s, dres, g(o.ln2_w), g(o.ln2_b), dbtc, a[y.res_att], p(o.ln2_w),
                      a[y.ln2_mean], a[y.ln2_rstd], N, C);
    // res_att = x + attn_proj(attention(attn(LN1(x))))
    linearBackward(s, a.as<T>(datty_), g(o.attn_proj_w), g(o.attn_proj_b), residualGradAct(),
                   a.as<T>(y.atty), pAs<T>(o.attn_proj_w), N, C, C, false, tf32);
    attentionBackward(s, a.as<T>(dqkv_), a.as<T>(datty_), a.as<T>(y.qkv), a.as<T>(y.atty), a[y.lse],
                      B, T_, H, hd, tf32);
    linearBackward(s, dbtc, g(o.attn_w), g(o.attn_b), a.as<T>(dqkv_), a.as<T>(y.ln1),
                   pAs<T>(o.attn_w), N, C, 3 * C, false, tf32);
    layerNormBackward(s, dres, g(o.ln1_w), g(o.ln1_b), dbtc, x, p(o.ln1_w), a[y.ln1_mean],
                      a[y.ln1_rstd], N, C);
    gradsReady(static_cast<int>(l));
  }
  embeddingBackward(s, g(wte_), g(wpe_), dres, token_rows_, B, T_, C);
  gradsReady(kEmbeddingGroup);  // wte (tied head), wpe and lnf are complete only now
}

std::vector<float> Gpt::logits(const Stream& s) {
  LB_REQUIRE(act_ != nullptr, ShapeError, "logits() before forward()");
  const int64_t N = B_ * T_seen_, Vp = shape_.paddedVocab(), V = shape_.vocab;
  std::vector<float> padded(N * Vp), out(N * V);
  copyBytes(s, padded.data(), Device::cpu(), (*act_)[logits_], params_.device(),
            padded.size() * sizeof(float));
  s.synchronize();
  for (int64_t i = 0; i < N; ++i) std::copy_n(padded.data() + i * Vp, V, out.data() + i * V);
  return out;
}

double Gpt::flopsPerPosition() const {
  // 6 flops per weight per position (forward 2, backward 4) for every matmul weight, including
  // the tied head, plus attention: QK^T and AV over (on average) T/2 keys, times 3 (fwd + bwd).
  const double C = static_cast<double>(shape_.d_model), L = static_cast<double>(shape_.n_layer);
  const double matmul = L * 12 * C * C + C * static_cast<double>(shape_.paddedVocab());
  const double attention =
      L * 2 * 2 * C * (static_cast<double>(T_seen_ ? T_seen_ : shape_.seq_len) / 2);
  return 6 * matmul + 3 * attention;
}

std::string Gpt::describe() const {
  return "gpt " + std::to_string(shape_.n_layer) + " layers, d_model " +
         std::to_string(shape_.d_model) + ", " + std::to_string(shape_.n_head) + " heads, seq " +
         std::to_string(shape_.seq_len) + ", vocab " + std::to_string(shape_.vocab) + " (" +
         std::to_string(params_.numParameters()) + " parameters)";
}

}  // namespace lowband::nn
