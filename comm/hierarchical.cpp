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
  // Chunks of whole shards: every chunk's reduce-scatter is issued first, so later chunks move
  // while earlier ones are reduced across the outer levels, and each all-gather is issued as
  // soon as its chunk is reduced. Only a last chunk that is not a multiple of k goes through
  // the padded buffer. Buffers are kept between calls (only the worker thread uses them):
  // fresh ones cost a page fault per 4 KiB.
  const int64_t chunks = std::clamp<int64_t>((n + kChunkValues - 1) / kChunkValues, 1, kMaxChunks);
  const int64_t len = ((n + chunks - 1) / chunks + k - 1) / k * k;
  struct Chunk {
    float* full;
    float* part;
    int64_t shard;
    std::shared_ptr<Work> work;
  };
  std::vector<Chunk> plan;
  std::vector<float>& padded = scratch(2 * level);
  std::vector<float>& part = scratch(2 * level + 1);
  const int64_t total_shards = (n + len - 1) / len * (len / k);
  if (static_cast<int64_t>(part.size()) < total_shards) part.resize(total_shards);
  int64_t part_at = 0;
  for (int64_t begin = 0; begin < n; begin += len) {
    const int64_t m = std::min(len, n - begin), shard = (m + k - 1) / k;
    float* full = data + begin;
    if (shard * k != m) {
      if (static_cast<int64_t>(padded.size()) < shard * k) padded.resize(shard * k);
      std::copy_n(full, m, padded.begin());
      std::fill(padded.begin() + m, padded.begin() + shard * k, 0.0f);
      full = padded.data();
    }
    plan.push_back({full, part.data() + part_at, shard, nullptr});
    plan.back().work = c.reduceScatterAsync(full, plan.back().part, shard, ReduceOp::Sum);
    part_at += shard;
  }
  for (Chunk& ch : plan) {
    ch.work->wait();
    allReduceLevel(level + 1, ch.part, ch.shard);
    ch.work = c.allGatherAsync(ch.part, ch.full, ch.shard);
  }
  for (Chunk& ch : plan) ch.work->wait();
  if (plan.back().full == padded.data()) {
    const int64_t begin = (static_cast<int64_t>(plan.size()) - 1) * len;
    std::copy_n(padded.data(), n - begin, data + begin);
  }
}

// Mirrors allReduceLevel's shape (chunks of whole shards, the last one padded) without data.
void HierarchicalCommunicator::allReduceLevelBytes(std::size_t level, int64_t n,
                                                   TierBytes& out) const {
  const Communicator& c = *levels_[level];
  const int64_t k = c.size();
  if (level + 1 == levels_.size()) return addTraffic(out, c.wireBytes(Collective::AllReduce, n));
  if (k == 1) return allReduceLevelBytes(level + 1, n, out);
  const int64_t chunks = std::clamp<int64_t>((n + kChunkValues - 1) / kChunkValues, 1, kMaxChunks);
  const int64_t len = ((n + chunks - 1) / chunks + k - 1) / k * k;
  for (int64_t begin = 0; begin < n; begin += len) {
    const int64_t m = std::min(len, n - begin), shard = (m + k - 1) / k;
    addTraffic(out, c.wireBytes(Collective::ReduceScatter, shard));
    allReduceLevelBytes(level + 1, shard, out);
    addTraffic(out, c.wireBytes(Collective::AllGather, shard));
  }
}

TierBytes HierarchicalCommunicator::wireBytes(Collective op, int64_t n) const {
  TierBytes out;
  switch (op) {
    case Collective::AllReduce:
      allReduceLevelBytes(0, n, out);
      break;
    case Collective::ReduceScatter:
    case Collective::AllGather:
    case Collective::AllGatherBytes:
      for (std::size_t level = 0; level < levels_.size(); ++level) {
        const int64_t rest = groupSize(level + 1);
        const int64_t values = level + 1 == levels_.size() ? n : rest * n;
        addTraffic(out, levels_[level]->wireBytes(op, values));
      }
      break;
    case Collective::AllToAllBytes: {
      int64_t block = n;  // level i exchanges blocks of (ranks outside it) x the blocks below
      for (std::size_t level = 0; level < levels_.size(); ++level) {
        const int64_t rest = groupSize(level + 1);
        addTraffic(
            out, levels_[level]->wireBytes(op, level + 1 == levels_.size() ? block : rest * block));
        block *= levels_[level]->size();
      }
      break;
    }
    default:
      out = flat_->wireBytes(op, n);
      break;
  }
  return out;
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

// One level's all-gather of f32 values or of bytes (the encoded tensors' exchange).
void HierarchicalCommunicator::gatherOn(Communicator& c, const float* in, float* out, int64_t n) {
  c.allGather(in, out, n);
}
void HierarchicalCommunicator::gatherOn(Communicator& c, const uint8_t* in, uint8_t* out,
                                        int64_t n) {
  c.allGatherBytesAsync(in, out, n)->wait();
}

template <class T>
void HierarchicalCommunicator::allGatherLevel(std::size_t level, const T* in, T* out, int64_t n) {
  Communicator& c = *levels_[level];
  if (level + 1 == levels_.size()) return gatherOn(c, in, out, n);
  const int64_t k = c.size(), rest = groupSize(level + 1);
  std::vector<T> chunk(rest * n), gathered(k * rest * n);
  allGatherLevel(level + 1, in, chunk.data(), n);
  gatherOn(c, chunk.data(), gathered.data(), rest * n);
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

// Composite rank q = c + k * r (c: this level's coordinate, r: the outer levels' rank).
//   1. over this level: to peer c' go the blocks for every (c', r'), so peer c' receives from
//      each source c the blocks (c -> (c', r')) for all r';
//   2. over the outer levels, recursively: to r' go, for every source c, the blocks for
//      (my c, r'), and from each r'' come the blocks (c, r'') -> me; unpacked to c + k r''.
void HierarchicalCommunicator::allToAllBytesLevel(std::size_t level, const uint8_t* in,
                                                  uint8_t* out, int64_t b) {
  Communicator& c = *levels_[level];
  if (level + 1 == levels_.size()) return c.allToAllBytesAsync(in, out, b)->wait();
  const int64_t k = c.size(), rest = groupSize(level + 1);
  std::vector<uint8_t> send(k * rest * b), recv(k * rest * b);
  for (int64_t ci = 0; ci < k; ++ci)
    for (int64_t r = 0; r < rest; ++r)
      std::copy_n(in + (ci + k * r) * b, b, send.data() + (ci * rest + r) * b);
  c.allToAllBytesAsync(send.data(), recv.data(), rest * b)->wait();
  for (int64_t src = 0; src < k; ++src)  // recv[(src, r)] -> send[(r, src)]
    for (int64_t r = 0; r < rest; ++r)
      std::copy_n(recv.data() + (src * rest + r) * b, b, send.data() + (r * k + src) * b);
  allToAllBytesLevel(level + 1, send.data(), recv.data(), k * b);
  for (int64_t r = 0; r < rest; ++r)
    for (int64_t src = 0; src < k; ++src)
      std::copy_n(recv.data() + (r * k + src) * b, b, out + (src + k * r) * b);
}

std::shared_ptr<Work> HierarchicalCommunicator::allToAllBytesAsync(const uint8_t* in, uint8_t* out,
                                                                   int64_t bytes) {
  return submit([=, this] { allToAllBytesLevel(0, in, out, bytes); });
}

std::shared_ptr<Work> HierarchicalCommunicator::allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                                                    int64_t bytes) {
  return submit([=, this] {
    std::vector<uint8_t> mine(in, in + bytes);  // `in` may lie inside `out`
    allGatherLevel(0, mine.data(), out, bytes);
  });
}

}  // namespace lowband::comm
