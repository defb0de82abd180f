#include "comm/compressed.h"

#include <algorithm>

namespace lowband::comm {

using runtime::CodecSpec;

CompressedAllReduce::CompressedAllReduce(Communicator& comm, CodecSpec spec, bool error_feedback)
    : comm_(comm), spec_(spec), error_feedback_(error_feedback) {}

int64_t CompressedAllReduce::chunkCount(int64_t n) {
  return std::clamp<int64_t>((n + kChunkValues - 1) / kChunkValues, 1, kMaxChunks);
}

int64_t CompressedAllReduce::wholeBlocks(int64_t n) const {
  return (n + spec_.block - 1) / spec_.block * spec_.block;
}

int64_t CompressedAllReduce::alignedBytes(int64_t values) const {
  // Padded to 16 bytes so every slot's f32 scales stay aligned.
  return (static_cast<int64_t>(runtime::encodedBytes(spec_, values)) + 15) / 16 * 16;
}

int64_t CompressedAllReduce::shardSize(int64_t n) const {
  const int64_t p = comm_.size();
  return wholeBlocks((n + p - 1) / p);  // whole blocks per shard
}

int64_t CompressedAllReduce::slotBytes(int64_t n) const { return alignedBytes(shardSize(n)); }

int64_t CompressedAllReduce::wireBytesPerRank(int64_t n) const {
  int64_t total = 0;
  const int64_t chunks = chunkCount(n), len = (n + chunks - 1) / chunks;
  for (int64_t begin = 0; begin < n; begin += len)
    total += 2 * (comm_.size() - 1) * slotBytes(std::min(len, n - begin));
  return total;
}

TierBytes CompressedAllReduce::wireBytes(int64_t n) const {
  TierBytes out;
  const int64_t chunks = chunkCount(n), len = (n + chunks - 1) / chunks;
  for (int64_t begin = 0; begin < n; begin += len) {
    const int64_t slot = slotBytes(std::min(len, n - begin));
    addTraffic(out, comm_.wireBytes(Collective::AllToAllBytes, slot));
    addTraffic(out, comm_.wireBytes(Collective::AllGatherBytes, slot));
  }
  return out;
}

std::shared_ptr<Work> CompressedAllReduce::allReduceAsync(float* data, int64_t n, ReduceOp op,
                                                          int slot) {
  if (error_feedback_) residuals_[slot];  // the map changes only on the caller's thread
  return worker_.submit([=, this] { run(data, n, op, slot); });
}

std::vector<float>* CompressedAllReduce::residualFor(int slot, int64_t n) {
  if (!error_feedback_) return nullptr;
  std::vector<float>* residual = &residuals_.find(slot)->second;
  if (residual->empty()) residual->assign(n, 0.0f);
  if (static_cast<int64_t>(residual->size()) != n)
    LB_THROW(CommError, "error feedback needs the same tensor size on every call of a slot (" +
                            std::to_string(residual->size()) + " then " + std::to_string(n) +
                            " residual values)");
  return residual;
}

TierBytes CompressedAllReduce::reduceScatterWireBytes(int64_t n) const {
  return comm_.wireBytes(Collective::AllToAllBytes, alignedBytes(wholeBlocks(n)));
}

std::shared_ptr<Work> CompressedAllReduce::reduceScatterAsync(const float* in, float* out,
                                                              int64_t n, ReduceOp op, int slot) {
  if (error_feedback_) residuals_[slot];  // the map changes only on the caller's thread
  return worker_.submit([=, this] { runReduceScatter(in, out, n, op, slot); });
}

void CompressedAllReduce::runReduceScatter(const float* in, float* out, int64_t n, ReduceOp op,
                                           int slot) {
  const int64_t p = comm_.size();
  const runtime::Stream host;
  const int64_t padded = wholeBlocks(n), enc = alignedBytes(padded);
  const auto bytes = static_cast<int64_t>(runtime::encodedBytes(spec_, padded));
  std::vector<float>* residual = residualFor(slot, p * n);
  x_.assign(padded, 0.0f);
  send_.resize(p * enc);
  recv_.resize(p * enc);
  for (int64_t j = 0; j < p; ++j) {  // block j, plus what its last encoding dropped
    std::copy_n(in + j * n, n, x_.begin());
    if (residual)
      for (int64_t i = 0; i < n; ++i) x_[i] += (*residual)[j * n + i];
    uint8_t* wire = send_.data() + j * enc;
    runtime::encode(host, spec_, x_.data(), padded, wire);
    if (residual) {
      reduced_.resize(padded);
      runtime::decode(host, spec_, wire, padded, reduced_.data());
      for (int64_t i = 0; i < n; ++i) (*residual)[j * n + i] = x_[i] - reduced_[i];
    }
  }
  comm_.allToAllBytesAsync(send_.data(), recv_.data(), enc)->wait();
  reduced_.assign(padded, 0.0f);
  for (int64_t r = 0; r < p; ++r) {
    runtime::checkHeader(recv_.data() + r * enc, bytes, spec_, padded);
    runtime::decode(host, spec_, recv_.data() + r * enc, padded, reduced_.data(), true);
  }
  const float scale = op == ReduceOp::Avg ? 1.0f / static_cast<float>(p) : 1.0f;
  for (int64_t i = 0; i < n; ++i) out[i] = reduced_[i] * scale;
}

void CompressedAllReduce::run(float* data, int64_t n, ReduceOp op, int slot) {
  const int64_t p = comm_.size();
  const runtime::Stream host;
  // Chunks, each laid out in the kept buffers (only the worker thread uses them; fresh ones
  // cost a page fault per 4 KiB, which showed in the emulated-link benchmark).
  struct Chunk {
    int64_t begin, n, shard, bytes, enc, x_at, wire_at, owned_at;
    std::shared_ptr<Work> work;
  };
  std::vector<Chunk> chunks;
  const int64_t count = chunkCount(n), len = (n + count - 1) / count;
  int64_t x_size = 0, wire_size = 0, owned = 0;
  for (int64_t begin = 0; begin < n || chunks.empty(); begin += len) {
    const int64_t m = std::min(len, n - begin), shard = shardSize(m);
    chunks.push_back({begin, m, shard, static_cast<int64_t>(runtime::encodedBytes(spec_, shard)),
                      slotBytes(m), x_size, wire_size, n + owned, nullptr});
    x_size += p * shard;
    wire_size += p * slotBytes(m);
    owned += shard;
  }
  // Residual of a slot: n values for this rank's contribution, then one per value of the
  // shards it reduces (the error of re-quantising them).
  std::vector<float>* residual = residualFor(slot, n + owned);
  x_.resize(x_size);
  send_.resize(wire_size);
  recv_.resize(wire_size);
  // 1. Quantise each chunk's shards and send them to their owners; chunk c + 1 is encoded
  //    while chunk c is on the wire.
  for (Chunk& c : chunks) {
    float* x = x_.data() + c.x_at;
    std::copy_n(data + c.begin, c.n, x);
    std::fill(x + c.n, x + p * c.shard, 0.0f);
    if (residual)
      for (int64_t i = 0; i < c.n; ++i) x[i] += (*residual)[c.begin + i];
    uint8_t* send = send_.data() + c.wire_at;
    for (int64_t j = 0; j < p; ++j)
      runtime::encode(host, spec_, x + j * c.shard, c.shard, send + j * c.enc);
    if (residual) {
      std::vector<float>& sent = reduced_;
      sent.resize(p * c.shard);
      for (int64_t j = 0; j < p; ++j)
        runtime::decode(host, spec_, send + j * c.enc, c.shard, sent.data() + j * c.shard);
      for (int64_t i = 0; i < c.n; ++i) (*residual)[c.begin + i] = x[i] - sent[i];
    }
    c.work = comm_.allToAllBytesAsync(send, recv_.data() + c.wire_at, c.enc);
  }
  // 2. Accumulate the own shard in f32, re-quantise once, all-gather the reduced shards.
  for (Chunk& c : chunks) {
    c.work->wait();
    const uint8_t* recv = recv_.data() + c.wire_at;
    std::vector<float>& reduced = reduced_;
    reduced.assign(c.shard, 0.0f);
    for (int64_t r = 0; r < p; ++r) {
      runtime::checkHeader(recv + r * c.enc, c.bytes, spec_, c.shard);
      runtime::decode(host, spec_, recv + r * c.enc, c.shard, reduced.data(), true);
    }
    if (op == ReduceOp::Avg)
      for (float& v : reduced) v /= static_cast<float>(p);
    uint8_t* send = send_.data() + c.wire_at;  // free again: its all-to-all is done
    float* kept = residual ? residual->data() + c.owned_at : nullptr;
    if (kept)
      for (int64_t i = 0; i < c.shard; ++i) reduced[i] += kept[i];
    runtime::encode(host, spec_, reduced.data(), c.shard, send);
    if (kept) {  // what the re-quantisation dropped goes into the next call's reduced shard
      requantised_.resize(c.shard);
      runtime::decode(host, spec_, send, c.shard, requantised_.data());
      for (int64_t i = 0; i < c.shard; ++i) kept[i] = reduced[i] - requantised_[i];
    }
    c.work = comm_.allGatherBytesAsync(send, recv_.data() + c.wire_at, c.enc);
  }
  // 3. Decode every rank's reduced shard.
  for (Chunk& c : chunks) {
    c.work->wait();
    const uint8_t* recv = recv_.data() + c.wire_at;
    float* x = x_.data() + c.x_at;
    for (int64_t r = 0; r < p; ++r) {
      runtime::checkHeader(recv + r * c.enc, c.bytes, spec_, c.shard);
      runtime::decode(host, spec_, recv + r * c.enc, c.shard, x + r * c.shard);
    }
    std::copy_n(x, c.n, data + c.begin);
  }
}

}  // namespace lowband::comm
