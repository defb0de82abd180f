// Collectives composed over nested tiers (innermost first), so a slow outer link carries only
// 1/k of the data per rank and every rank's NIC works in parallel:
//   all-reduce(x):     reduce-scatter over level 0 (pad x to a multiple of k_0) ->
//                      all-reduce of the 1/k_0 shard over levels 1.. (recursively) ->
//                      all-gather over level 0.
//   reduce-scatter:    blocks regrouped by their level-0 coordinate, reduce-scatter over level
//                      0, then recursively over the outer levels on the received chunk.
//   all-gather:        the reverse: outer levels first, then level 0, then blocks regrouped.
//   byte all-gather:   as all-gather.
//   byte all-to-all:   blocks regrouped by their destination's level-0 coordinate and
//                      exchanged over level 0, then recursively over the outer levels with
//                      blocks k_0 times larger, so every block crosses each tier at most once.
// Results equal the flat collective over the composite group (rank order c_0 + k_0 (c_1 + ..))
// up to float summation order. Broadcast and barrier use the flat communicator.
// Async ops run in issue order on one worker thread per communicator, which calls the levels'
// blocking collectives (their progress threads move the data).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/serial_worker.h"

namespace lowband::comm {

class HierarchicalCommunicator : public Communicator {
 public:
  // All-reduces above kChunkValues values are pipelined in up to kMaxChunks chunks.
  static constexpr int64_t kChunkValues = 1 << 22, kMaxChunks = 8;
  // `levels` innermost first; `flat` spans the same ranks in composite order. Not owned.
  HierarchicalCommunicator(std::vector<Communicator*> levels, Communicator* flat, std::string name);

  int rank() const override { return flat_->rank(); }
  int size() const override { return flat_->size(); }
  std::string name() const override { return name_; }

  std::shared_ptr<Work> allReduceAsync(float* data, int64_t n, ReduceOp op) override;
  std::shared_ptr<Work> reduceScatterAsync(const float* in, float* out, int64_t n,
                                           ReduceOp op) override;
  std::shared_ptr<Work> allGatherAsync(const float* in, float* out, int64_t n) override;
  std::shared_ptr<Work> broadcastAsync(float* data, int64_t n, int root) override;
  std::shared_ptr<Work> barrierAsync() override;
  std::shared_ptr<Work> allToAllBytesAsync(const uint8_t* in, uint8_t* out, int64_t bytes) override;
  std::shared_ptr<Work> allGatherBytesAsync(const uint8_t* in, uint8_t* out,
                                            int64_t bytes) override;
  // What the levels' counters see: all-reduce as below (chunks and padding included), the
  // other ops level by level; broadcast (over `flat`) is not counted.
  TierBytes wireBytes(Collective op, int64_t n) const override;

 private:
  void allReduceLevelBytes(std::size_t level, int64_t n, TierBytes& out) const;
  std::shared_ptr<Work> submit(std::function<void()> task);
  void allReduceLevel(std::size_t level, float* data, int64_t n);
  void reduceScatterLevel(std::size_t level, const float* in, float* out, int64_t n);
  // f32 values or bytes (T = float or uint8_t), through gatherOn.
  template <class T>
  void allGatherLevel(std::size_t level, const T* in, T* out, int64_t n);
  static void gatherOn(Communicator& c, const float* in, float* out, int64_t n);
  static void gatherOn(Communicator& c, const uint8_t* in, uint8_t* out, int64_t n);
  void allToAllBytesLevel(std::size_t level, const uint8_t* in, uint8_t* out, int64_t b);
  int64_t groupSize(std::size_t level) const;     // ranks in levels [level, end)
  std::vector<float>& scratch(std::size_t slot);  // reused buffers of the worker thread

  std::vector<Communicator*> levels_;
  Communicator* flat_;
  std::string name_;
  std::vector<std::vector<float>> scratch_;

  SerialWorker worker_;
};

}  // namespace lowband::comm
