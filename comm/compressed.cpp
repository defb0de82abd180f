#include "comm/compressed.h"

#include <algorithm>

namespace lowband::comm {

using runtime::CodecSpec;

CompressedAllReduce::CompressedAllReduce(Communicator& comm, CodecSpec spec, bool error_feedback)
    : comm_(comm), spec_(spec), error_feedback_(error_feedback) {}

int64_t CompressedAllReduce::shardSize(int64_t n) const {
  const int64_t p = comm_.size(), per = (n + p - 1) / p;
  return (per + spec_.block - 1) / spec_.block * spec_.block;  // whole blocks per shard
}

int64_t CompressedAllReduce::slotBytes(int64_t n) const {
  // One encoded shard, padded to 16 bytes so every slot's f32 scales stay aligned.
  return (static_cast<int64_t>(runtime::encodedBytes(spec_, shardSize(n))) + 15) / 16 * 16;
}

int64_t CompressedAllReduce::wireBytesPerRank(int64_t n) const {
  return 2 * (comm_.size() - 1) * slotBytes(n);
}

std::shared_ptr<Work> CompressedAllReduce::allReduceAsync(float* data, int64_t n, ReduceOp op,
                                                          int slot) {
  if (error_feedback_) residuals_[slot];  // the map changes only on the caller's thread
  return worker_.submit([=, this] { run(data, n, op, slot); });
}

void CompressedAllReduce::run(float* data, int64_t n, ReduceOp op, int slot) {
  const int64_t p = comm_.size(), shard = shardSize(n);
  const int64_t bytes = static_cast<int64_t>(runtime::encodedBytes(spec_, shard));
  const int64_t enc = slotBytes(n);
  const runtime::Stream host;
  // Buffers are kept between calls (only the worker thread uses them): fresh ones cost a page
  // fault per 4 KiB, which showed in the emulated-link benchmark.
  std::vector<float>& x = x_;
  x.resize(p * shard);
  std::copy_n(data, n, x.begin());
  std::fill(x.begin() + n, x.end(), 0.0f);
  std::vector<float>* residual = nullptr;
  if (error_feedback_) {
    residual = &residuals_.find(slot)->second;
    if (residual->empty()) residual->assign(n, 0.0f);
    if (static_cast<int64_t>(residual->size()) != n)
      LB_THROW(CommError, "error feedback needs the same tensor size on every call of a slot (" +
                              std::to_string(residual->size()) + " then " + std::to_string(n) +
                              ")");
    for (int64_t i = 0; i < n; ++i) x[i] += (*residual)[i];
  }
  std::vector<uint8_t>& send = send_;
  std::vector<uint8_t>& recv = recv_;
  send.resize(p * enc);
  recv.resize(p * enc);
  for (int64_t j = 0; j < p; ++j)
    runtime::encode(host, spec_, x.data() + j * shard, shard, send.data() + j * enc);
  if (error_feedback_) {
    std::vector<float>& sent = reduced_;  // free until the reduction below
    sent.resize(p * shard);
    for (int64_t j = 0; j < p; ++j)
      runtime::decode(host, spec_, send.data() + j * enc, shard, sent.data() + j * shard);
    for (int64_t i = 0; i < n; ++i) (*residual)[i] = x[i] - sent[i];
  }
  comm_.allToAllBytesAsync(send.data(), recv.data(), enc)->wait();
  std::vector<float>& reduced = reduced_;
  reduced.assign(shard, 0.0f);
  for (int64_t r = 0; r < p; ++r) {
    runtime::checkHeader(recv.data() + r * enc, bytes, spec_, shard);
    runtime::decode(host, spec_, recv.data() + r * enc, shard, reduced.data(), true);
  }
  if (op == ReduceOp::Avg)
    for (float& v : reduced) v /= static_cast<float>(p);
  runtime::encode(host, spec_, reduced.data(), shard, send.data());  // send is free again
  comm_.allGatherBytesAsync(send.data(), recv.data(), enc)->wait();
  for (int64_t r = 0; r < p; ++r) {
    runtime::checkHeader(recv.data() + r * enc, bytes, spec_, shard);
    runtime::decode(host, spec_, recv.data() + r * enc, shard, x.data() + r * shard);
  }
  std::copy_n(x.begin(), n, data);
}

}  // namespace lowband::comm
