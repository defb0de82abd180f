// Compressed all-reduce (docs/methods.md), and the reduce-scatter half of it alone: every rank
// quantises its own unreduced tensor, the encodings of shard j go to rank j (all-to-all), each rank
// decodes and accumulates its shard in f32 (re-quantising once for the next hop), and the reduced
// shards are all-gathered encoded and decoded everywhere, so all ranks hold identical results. Per
// call and rank the wire carries 2 (P - 1) encodings of n / P values, against 2 (P - 1) / P * 4n
// bytes for f32. Tensors above kChunkValues values are cut into up to kMaxChunks chunks reduced as
// above, all issued before the first is awaited, so chunk c + 1 is encoded (and chunk c reduced)
// while other chunks are on the wire. Error: each element differs from the exact f32 sum by at most
// the codec's bound (codec.h) of each rank's contribution plus that of the reduced value. Error
// feedback (optional; 1-bit Adam's worker and server compensation): the quantisation error of this
// rank's contribution is kept and added to the next call's input with the same `slot`, and the
// error of re-quantising the shard this rank reduces is kept and added to the next call's reduced
// shard, so over many calls the sum of the results tracks the sum of the exact all-reduces (one
// slot per tensor that is reduced repeatedly, e.g. per fragment; same n on every call of a slot).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "comm/serial_worker.h"
#include "runtime/codec.h"

namespace lowband::comm {

class CompressedAllReduce {
 public:
  CompressedAllReduce(Communicator& comm, runtime::CodecSpec spec, bool error_feedback = false);
  // Host memory; runs on this object's worker thread, in call order.
  std::shared_ptr<Work> allReduceAsync(float* data, int64_t n, ReduceOp op = ReduceOp::Sum,
                                       int slot = 0);
  void allReduce(float* data, int64_t n, ReduceOp op = ReduceOp::Sum, int slot = 0) {
    allReduceAsync(data, n, op, slot)->wait();
  }
  // Encoded reduce-scatter (in: size * n values, out: n; `in` may alias `out`): block j of
  // every rank's input goes encoded to rank j (all-to-all), which decodes and accumulates them
  // in f32. Error feedback keeps the encoding error of the whole input (size * n values).
  std::shared_ptr<Work> reduceScatterAsync(const float* in, float* out, int64_t n,
                                           ReduceOp op = ReduceOp::Sum, int slot = 0);
  // Bytes this rank sends per tier for one reduce-scatter of blocks of n values.
  TierBytes reduceScatterWireBytes(int64_t n) const;
  static constexpr int64_t kChunkValues = 1 << 20, kMaxChunks = 8;
  static int64_t chunkCount(int64_t n);
  // Values per shard of a chunk of n values, and encoded bytes one rank sends per call for a
  // tensor of n values (all chunks).
  int64_t shardSize(int64_t n) const;
  int64_t wireBytesPerRank(int64_t n) const;
  int64_t slotBytes(int64_t n) const;  // one encoded shard on the wire, aligned
  // Bytes this rank sends per tier for one call of n values (the counters of its communicator).
  TierBytes wireBytes(int64_t n) const;
  // Error-feedback residual of `slot` (empty before its first call): n values of this rank's
  // contribution, then those of the shards it reduces. Read or set it between calls
  // (checkpoints), never while an op is in flight.
  const std::vector<float>& residual(int slot = 0) { return residuals_[slot]; }
  void setResidual(int slot, std::vector<float> values) { residuals_[slot] = std::move(values); }
  bool errorFeedback() const { return error_feedback_; }
  const std::map<int, std::vector<float>>& residuals() const { return residuals_; }

 private:
  void run(float* data, int64_t n, ReduceOp op, int slot);
  void runReduceScatter(const float* in, float* out, int64_t n, ReduceOp op, int slot);
  // This slot's residual, sized `n` on its first call (CommError when a later call differs).
  std::vector<float>* residualFor(int slot, int64_t n);
  int64_t wholeBlocks(int64_t n) const;        // n rounded up to whole codec blocks
  int64_t alignedBytes(int64_t values) const;  // their encoding on the wire, 16-byte aligned

  Communicator& comm_;
  runtime::CodecSpec spec_;
  bool error_feedback_;
  std::map<int, std::vector<float>> residuals_;
  std::vector<float> x_, reduced_, requantised_;  // buffers of the worker thread, kept
  std::vector<uint8_t> send_, recv_;
  SerialWorker worker_;  // last: stops before the members its tasks use
};

// One tier whose gradient reductions are encoded (a per-tier gradient codec, as ZeRO++'s qgZ
// quantises gradients): all-reduce and reduce-scatter go through a CompressedAllReduce over
// `inner`, every other op straight to `inner` (all-gathers stay f32: under ZeRO they carry the
// parameters, which every rank must hold identically). Error feedback (optional) keys each
// all-reduce by its position in a round - the calls since the last newRound() - because the
// gradient exchange issues the same sequence of tensors every step: call i of every round shares
// residual i.
class CodecCommunicator : public Communicator {
 public:
  CodecCommunicator(Communicator& inner, runtime::CodecSpec spec, bool error_feedback = false)
      : inner_(inner), codec_(inner, spec, error_feedback) {}
  // Starts a round: the next all-reduce is call 0 again. Call it between rounds, when every
  // all-reduce of the round has been issued (e.g. after waiting for them).
  void newRound() { next_slot_ = 0; }
  CompressedAllReduce& codec() { return codec_; }
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string name() const override { return inner_.name(); }
  std::shared_ptr<Work> allReduceAsync(float* data, int64_t n, ReduceOp op) override {
    return codec_.allReduceAsync(data, n, op, next_slot_++);
  }
  std::shared_ptr<Work> reduceScatterAsync(const float* in, float* out, int64_t n,
                                           ReduceOp op) override {
    return codec_.reduceScatterAsync(in, out, n, op, next_slot_++);
  }
  std::shared_ptr<Work> allGatherAsync(const float* in, float* out, int64_t n) override {
    return inner_.allGatherAsync(in, out, n);
  }
  std::shared_ptr<Work> broadcastAsync(float* data, int64_t n, int root) override {
    return inner_.broadcastAsync(data, n, root);
  }
  std::shared_ptr<Work> barrierAsync() override { return inner_.barrierAsync(); }
  std::shared_ptr<Work> allToAllBytesAsync(const uint8_t* in, uint8_t* out,
                                           int64_t bytes) override {
    return inner_.allToAllBytesAsync(in, out, bytes);
  }
  std::shared_ptr<Work> allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                            int64_t bytes) override {
    return inner_.allGatherBytesAsync(in, out, bytes);
  }
  TierBytes wireBytes(Collective op, int64_t n) const override {
    if (op == Collective::AllReduce) return codec_.wireBytes(n);
    if (op == Collective::ReduceScatter) return codec_.reduceScatterWireBytes(n);
    return inner_.wireBytes(op, n);
  }

 private:
  Communicator& inner_;
  CompressedAllReduce codec_;
  // Issued from the training thread or one hierarchical worker; newRound() is called only
  // after the round's ops were waited for, so the two never race.
  std::atomic<int> next_slot_{0};
};

}  // namespace lowband::comm
