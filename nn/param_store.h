// All parameters of a model in ONE flat f32 buffer and all gradients in another (llm.c style),
// with a named view per tensor and a contiguous range per layer. Fragments (Streaming DiLoCo)
// and shards (ZeRO) are ranges of these buffers, so every collective is one call.
// Each tensor starts on a 64-byte boundary; the total is padded to a multiple of `pad_multiple`
// elements so it splits evenly into aligned shards.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace lowband::nn {

// Group of a parameter: a transformer block index >= 0, or one of these.
constexpr int kEmbeddingGroup = -1;  // token/position embeddings and the final LayerNorm

enum class Init { Normal, Ones, Zeros };

struct ParamInfo {
  std::string name;
  runtime::Shape shape;
  int64_t offset = 0;  // in elements
  int64_t numel = 0;
  int group = kEmbeddingGroup;
  bool decay = false;  // AdamW weight decay applies
  Init init = Init::Zeros;
  float std = 0;           // for Init::Normal
  int64_t init_rows = -1;  // rows initialised (padded vocab rows stay 0); -1 = all
};

class ParamStore {
 public:
  static constexpr int64_t kAlign = 16;  // elements: 64 bytes of f32

  // Declares a tensor; must be called before finalize(), group by group.
  void add(const std::string& name, runtime::Shape shape, int group, bool decay, Init init,
           float std = 0, int64_t init_rows = -1);
  // Allocates the parameter and gradient buffers (gradients zeroed).
  void finalize(runtime::Device device, int64_t pad_multiple = kAlign);
  // Fills the parameters deterministically from `seed` (same values on every device).
  void initialize(uint64_t seed, const runtime::Stream& stream);

  bool finalized() const { return params_ != nullptr; }
  int64_t size() const { return size_; }  // padded element count
  int64_t numParameters() const;          // without padding
  const std::vector<ParamInfo>& infos() const { return infos_; }
  const ParamInfo& info(const std::string& name) const;

  float* param(const std::string& name) const;
  float* grad(const std::string& name) const;
  runtime::Tensor params() const;  // the whole flat buffer
  runtime::Tensor grads() const;
  // [begin, end) in elements covering all tensors of a group.
  std::pair<int64_t, int64_t> groupRange(int group) const;
  runtime::Device device() const { return device_; }

 private:
  std::vector<ParamInfo> infos_;
  int64_t size_ = 0;
  runtime::Device device_;
  std::unique_ptr<runtime::Storage> params_, grads_;
};

}  // namespace lowband::nn
