#include "nn/param_store.h"

#include <cmath>
#include <random>

#include "runtime/error.h"
#include "runtime/kernels.h"

namespace lowband::nn {

using runtime::DType;
using runtime::ShapeError;

namespace {
int64_t roundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Reproducible N(0, std) from a 64-bit engine: Box-Muller on our own uniform draws, so the
// values do not depend on the standard library's distribution implementation.
class Normal {
 public:
  explicit Normal(uint64_t seed) : rng_(seed) {}
  float operator()(float std) {
    if (has_spare_) {
      has_spare_ = false;
      return static_cast<float>(spare_ * std);
    }
    double u1 = uniform(), u2 = uniform();
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2 * M_PI * u2);
    has_spare_ = true;
    return static_cast<float>(r * std::cos(2 * M_PI * u2) * std);
  }

 private:
  double uniform() { return (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
  std::mt19937_64 rng_;
  double spare_ = 0;
  bool has_spare_ = false;
};

uint64_t hashName(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}
}  // namespace

void ParamStore::add(const std::string& name, runtime::Shape shape, int group, bool decay,
                     Init init, float std, int64_t init_rows) {
  LB_REQUIRE(!finalized(), ShapeError, "parameter '" + name + "' added after finalize()");
  LB_REQUIRE(infos_.empty() || group >= infos_.back().group || group == kEmbeddingGroup, ShapeError,
             "parameters must be added group by group");
  ParamInfo p{name, shape,    roundUp(size_, kAlign), shape.numel(), group, decay, init,
              std,  init_rows};
  size_ = p.offset + p.numel;
  infos_.push_back(p);
}

void ParamStore::finalize(runtime::Device device, int64_t pad_multiple) {
  LB_REQUIRE(pad_multiple > 0 && pad_multiple % kAlign == 0, ShapeError,
             "pad multiple must be a positive multiple of " + std::to_string(kAlign));
  size_ = roundUp(size_, pad_multiple);
  device_ = device;
  params_ = std::make_unique<runtime::Storage>(device, size_ * sizeof(float));
  grads_ = std::make_unique<runtime::Storage>(device, size_ * sizeof(float));
}

void ParamStore::initialize(uint64_t seed, const runtime::Stream& stream) {
  LB_REQUIRE(finalized(), ShapeError, "initialize() before finalize()");
  std::vector<float> host(size_, 0.0f);
  for (const ParamInfo& p : infos_) {
    float* dst = host.data() + p.offset;
    const int64_t row = p.shape.ndim() > 1 ? p.numel / p.shape[0] : p.numel;
    const int64_t n = p.init_rows < 0 ? p.numel : p.init_rows * row;
    if (p.init == Init::Ones) {
      std::fill(dst, dst + n, 1.0f);
    } else if (p.init == Init::Normal) {
      Normal normal(seed ^ hashName(p.name));
      for (int64_t i = 0; i < n; ++i) dst[i] = normal(p.std);
    }
  }
  runtime::Storage staging(runtime::Device::cpu(), size_ * sizeof(float));
  std::copy(host.begin(), host.end(), static_cast<float*>(staging.data()));
  runtime::copy(stream, runtime::Tensor(staging, DType::F32, {size_}), params());
  runtime::fill(stream, grads(), 0.0f);
  stream.synchronize();
}

int64_t ParamStore::numParameters() const {
  int64_t n = 0;
  for (const ParamInfo& p : infos_) n += p.numel;
  return n;
}

const ParamInfo& ParamStore::info(const std::string& name) const {
  for (const ParamInfo& p : infos_)
    if (p.name == name) return p;
  LB_THROW(ShapeError, "no parameter named '" + name + "'");
}

float* ParamStore::param(const std::string& name) const {
  return static_cast<float*>(params_->data()) + info(name).offset;
}

float* ParamStore::grad(const std::string& name) const {
  return static_cast<float*>(grads_->data()) + info(name).offset;
}

runtime::Tensor ParamStore::params() const {
  return runtime::Tensor(*params_, DType::F32, {size_});
}
runtime::Tensor ParamStore::grads() const { return runtime::Tensor(*grads_, DType::F32, {size_}); }

std::pair<int64_t, int64_t> ParamStore::groupRange(int group) const {
  int64_t begin = -1, end = -1;
  for (const ParamInfo& p : infos_) {
    if (p.group != group) continue;
    if (begin < 0) begin = p.offset;
    LB_REQUIRE(end < 0 || p.offset - end < kAlign, ShapeError,
               "group " + std::to_string(group) + " is not contiguous");
    end = p.offset + p.numel;
  }
  LB_REQUIRE(begin >= 0, ShapeError, "no parameters in group " + std::to_string(group));
  return {begin, end};
}

}  // namespace lowband::nn
