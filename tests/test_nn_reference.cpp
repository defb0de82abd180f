// The models against PyTorch: tests/fixtures/*.bin were written by
// scripts/reference/make_fixtures.py (Debian's python3-torch 1.13) and hold weights, inputs,
// logits, loss, every gradient and the losses of 5 AdamW steps with grad clipping. The tests
// load the weights into lowband's ParamStore and compare tensor by tensor.
// Tolerance: max |lowband - torch| <= 1e-5 * max(1, max |torch|) per tensor (f32 arithmetic in
// a different order on both sides), 1e-4 relative for the losses after 5 AdamW steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "nn/gpt.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"
#include "runtime/kernels.h"
#include "tests/test_support.h"

namespace lowband::nn {
namespace {

struct FixtureTensor {
  std::vector<int64_t> dims;
  std::vector<float> f32;
  std::vector<int32_t> i32;
};
using Fixture = std::map<std::string, FixtureTensor>;

Fixture loadFixture(const std::string& name) {
  const std::string path = test::sourceDir() + "/tests/fixtures/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  auto u32 = [&] {
    uint32_t v = 0;
    in.read(reinterpret_cast<char*>(&v), 4);
    return v;
  };
  char magic[4];
  in.read(magic, 4);
  if (std::memcmp(magic, "LBFX", 4) != 0 || u32() != 1)
    throw std::runtime_error(path + ": not a v1 fixture");
  Fixture f;
  for (uint32_t n = u32(); n > 0; --n) {
    std::string key(u32(), '\0');
    in.read(key.data(), key.size());
    const uint32_t dtype = u32(), ndim = u32();
    FixtureTensor t;
    t.dims.resize(ndim);
    in.read(reinterpret_cast<char*>(t.dims.data()), ndim * 8);
    int64_t count = 1;
    for (int64_t d : t.dims) count *= d;
    if (dtype == 0) {
      t.f32.resize(count);
      in.read(reinterpret_cast<char*>(t.f32.data()), count * 4);
    } else {
      t.i32.resize(count);
      in.read(reinterpret_cast<char*>(t.i32.data()), count * 4);
    }
    if (!in) throw std::runtime_error(path + ": truncated at " + key);
    f[key] = std::move(t);
  }
  return f;
}

void expectTensorClose(const float* got, const std::vector<float>& want, const std::string& what,
                       double tol = 1e-5) {
  double scale = 1, worst = 0;
  for (float w : want) scale = std::max(scale, static_cast<double>(std::fabs(w)));
  for (std::size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]));
  EXPECT_LE(worst, tol * scale) << what << ": max abs difference " << worst;
}

// Copies every "param.NAME" into the store; rows beyond the fixture's (padded vocab) stay 0.
void loadWeights(ParamStore& store, const Fixture& f) {
  runtime::Stream s;
  runtime::fill(s, store.params(), 0.0f);
  runtime::fill(s, store.grads(), 0.0f);
  int loaded = 0;
  for (const ParamInfo& p : store.infos()) {
    const FixtureTensor& t = f.at("param." + p.name);
    ASSERT_LE(static_cast<int64_t>(t.f32.size()), p.numel) << p.name;
    std::copy(t.f32.begin(), t.f32.end(), store.param(p.name));
    ++loaded;
  }
  EXPECT_EQ(loaded, static_cast<int>(store.infos().size()));
}

void checkGradsAndTraining(Model& model, const Fixture& f, const Batch& batch) {
  runtime::Stream s;
  const float loss = model.forward(s, batch);
  EXPECT_NEAR(loss, f.at("loss").f32[0], 1e-5 * std::max(1.0f, std::fabs(f.at("loss").f32[0])));
  expectTensorClose(model.logits(s).data(), f.at("logits").f32, "logits");
  model.backward(s);
  for (const ParamInfo& p : model.params().infos())
    expectTensorClose(model.params().grad(p.name), f.at("grad." + p.name).f32, "grad." + p.name);

  OptimizerSettings o;
  o.lr = 1e-2f;
  o.warmup = 0;
  o.schedule = Schedule::Constant;
  o.grad_clip = 1.0f;
  Optimizer opt(model.params(), o);
  const std::vector<float>& want = f.at("adamw_losses").f32;
  for (std::size_t step = 0; step < want.size(); ++step) {
    opt.step(s, static_cast<int64_t>(step));
    runtime::fill(s, model.params().grads(), 0.0f);
    const float l = model.forward(s, batch);
    model.backward(s);
    EXPECT_NEAR(l, want[step], 1e-4 * std::fabs(want[step])) << "after AdamW step " << step + 1;
  }
}

TEST(PyTorchReference, TinyGpt) {
  const Fixture f = loadFixture("gpt_tiny.bin");
  GptShape shape{2, 32, 4, 16, 61};
  Gpt gpt(shape, runtime::Device::cpu());
  loadWeights(gpt.params(), f);
  const FixtureTensor& tokens = f.at("tokens");
  Batch batch{tokens.i32.data(), nullptr, f.at("targets").i32.data(), tokens.dims[0],
              tokens.dims[1]};
  checkGradsAndTraining(gpt, f, batch);
}

TEST(PyTorchReference, TinyMlp) {
  const Fixture f = loadFixture("mlp_tiny.bin");
  MlpShape shape{20, {16, 12}, 7, MlpActivation::Relu};
  Mlp mlp(shape, runtime::Device::cpu());
  loadWeights(mlp.params(), f);
  const FixtureTensor& x = f.at("features");
  Batch batch{nullptr, x.f32.data(), f.at("targets").i32.data(), x.dims[0], 1};
  checkGradsAndTraining(mlp, f, batch);
}

}  // namespace
}  // namespace lowband::nn
