#include "comm/hierarchical.h"

#include <algorithm>

namespace lowband::comm {

HierarchicalCommunicator::HierarchicalCommunicator(std::vector<Communicator*> levels,
                                                   Communicator* flat, std::string name)
    : levels_(std::move(levels)), flat_(flat), name_(std::move(name)) {
  int64_t product = 1;
  for (Communicator* c : levels_) product *= c->size();
  if (levels_.empty() || product != flat_->size())
    LB_THROW(CommError, name_ + ": level sizes multiply to " + std::to_string(product) +
                            " but the flat communicator has " + std::to_string(flat_->size()) +
                            " ranks");
  scratch_.resize(2 * levels_.size());
}

std::shared_ptr<Work> HierarchicalCommunicator::submit(std::function<void()> task) {
  return worker_.submit(std::move(task));
}

std::vector<float>& HierarchicalCommunicator::scratch(std::size_t slot) {
  return scratch_.at(slot);  // sized once in the constructor: references stay valid
}

int64_t HierarchicalCommunicator::groupSize(std::size_t level) const {
  int64_t n = 1;
  for (std::size_t i = level; i < levels_.size(); ++i) n *= levels_[i]->size();
  return n;
}

void HierarchicalCommunicator::allReduceLevel(std::size_t level, float* data, int64_t n) {
  Communicator& c = *levels_[level];
  const int64_t k = c.size();
  if (level + 1 == levels_.size()) return c.allReduce(data, n, ReduceOp::Sum);
  if (k == 1) return allReduceLevel(level + 1, data, n);
  // Pad to a multiple of k so every rank owns an equal shard. Buffers are kept between calls
  // (only the worker thread uses them): fresh ones cost a page fault per 4 KiB.
  const int64_t shard = (n + k - 1) / k;
  std::vector<float>& padded = scratch(2 * level);
  std::vector<float>& part = scratch(2 * level + 1);
  float* full = data;
  if (shard * k != n) {
    if (static_cast<int64_t>(padded.size()) < shard * k) padded.resize(shard * k);
    std::copy_n(data, n, padded.begin());
    std::fill(padded.begin() + n, padded.begin() + shard * k, 0.0f);
    full = padded.data();
  }
  if (static_cast<int64_t>(part.size()) < shard) part.resize(shard);
  c.reduceScatter(full, part.data(), shard, ReduceOp::Sum);
  allReduceLevel(level + 1, part.data(), shard);
  c.allGather(part.data(), full, shard);
  if (full != data) std::copy_n(full, n, data);
}

void HierarchicalCommunicator::reduceScatterLevel(std::size_t level, const float* in, float* out,
                                                  int64_t n) {
  Communicator& c = *levels_[level];
  if (level + 1 == levels_.size()) return c.reduceScatter(in, out, n, ReduceOp::Sum);
  const int64_t k = c.size(), rest = groupSize(level + 1);
  // Block q = c + k * r' of the composite order goes to position c * rest + r'.
  std::vector<float> regrouped(k * rest * n), chunk(rest * n);
  for (int64_t ci = 0; ci < k; ++ci)
    for (int64_t r = 0; r < rest; ++r)
      std::copy_n(in + (ci + k * r) * n, n, regrouped.data() + (ci * rest + r) * n);
  c.reduceScatter(regrouped.data(), chunk.data(), rest * n, ReduceOp::Sum);
  reduceScatterLevel(level + 1, chunk.data(), out, n);
}

void HierarchicalCommunicator::allGatherLevel(std::size_t level, const float* in, float* out,
                                              int64_t n) {
  Communicator& c = *levels_[level];
  if (level + 1 == levels_.size()) return c.allGather(in, out, n);
  const int64_t k = c.size(), rest = groupSize(level + 1);
  std::vector<float> chunk(rest * n), gathered(k * rest * n);
  allGatherLevel(level + 1, in, chunk.data(), n);
  c.allGather(chunk.data(), gathered.data(), rest * n);
  for (int64_t ci = 0; ci < k; ++ci)
    for (int64_t r = 0; r < rest; ++r)
      std::copy_n(gathered.data() + (ci * rest + r) * n, n, out + (ci + k * r) * n);
}

std::shared_ptr<Work> HierarchicalCommunicator::allReduceAsync(float* data, int64_t n,
                                                               ReduceOp op) {
  return submit([=, this] {
    allReduceLevel(0, data, n);
    if (op == ReduceOp::Avg) {
      const float inv = 1.0f / static_cast<float>(size());
      for (int64_t i = 0; i < n; ++i) data[i] *= inv;
    }
  });
}

std::shared_ptr<Work> HierarchicalCommunicator::reduceScatterAsync(const float* in, float* out,
                                                                   int64_t n, ReduceOp op) {
  return submit([=, this] {
    std::vector<float> result(n);
    reduceScatterLevel(0, in, result.data(), n);  // `in` may alias `out`
    const float scale = op == ReduceOp::Avg ? 1.0f / static_cast<float>(size()) : 1.0f;
    for (int64_t i = 0; i < n; ++i) out[i] = result[i] * scale;
  });
}

std::shared_ptr<Work> HierarchicalCommunicator::allGatherAsync(const float* in, float* out,
                                                               int64_t n) {
  return submit([=, this] {
    std::vector<float> mine(in, in + n);  // `in` may lie inside `out`
    allGatherLevel(0, mine.data(), out, n);
  });
}

std::shared_ptr<Work> HierarchicalCommunicator::broadcastAsync(float* data, int64_t n, int root) {
  return submit([=, this] { flat_->broadcast(data, n, root); });
}

std::shared_ptr<Work> HierarchicalCommunicator::barrierAsync() {
  return submit([this] { flat_->barrier(); });
}

std::shared_ptr<Work> HierarchicalCommunicator::allToAllBytesAsync(const uint8_t* in, uint8_t* out,
                                                                   int64_t bytes) {
  return submit([=, this] { flat_->allToAllBytesAsync(in, out, bytes)->wait(); });
}

std::shared_ptr<Work> HierarchicalCommunicator::allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                                                    int64_t bytes) {
  return submit([=, this] { flat_->allGatherBytesAsync(in, out, bytes)->wait(); });
}

}  // namespace lowband::comm
