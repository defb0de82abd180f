// Named binary state for checkpoints: each component (optimizer, schedules, data loaders, the
// trainer) puts its entries under its own prefix, and one file per rank carries them all.
// File form (little-endian), version 1:
//   "LBSTATE\0" | u32 version | u32 entries | u64 payload bytes | u32 crc32(payload) | u32 0
//   payload: entries in name order, each u32 name length (1..255) | name | u64 bytes | bytes
// parse() checks the magic, version, exact size, checksum and every length, and names the
// source and byte offset of whatever is wrong.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "runtime/error.h"

namespace lowband::runtime {

LB_DEFINE_ERROR(StateError, "checkpoint");

class StateDict {
 public:
  static constexpr uint32_t kVersion = 1;
  static constexpr std::size_t kHeaderBytes = 32;

  explicit StateDict(std::string source = "state") : source_(std::move(source)) {}

  void put(const std::string& name, const void* data, std::size_t bytes);
  void putFloats(const std::string& name, const float* data, int64_t n) {
    put(name, data, static_cast<std::size_t>(n) * sizeof(float));
  }
  template <class T>
  void putValue(const std::string& name, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    put(name, &value, sizeof value);
  }

  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  // StateError naming the source and the entry when it is missing.
  std::span<const uint8_t> get(const std::string& name) const;
  // Copies the entry into `out`; StateError unless it holds exactly `bytes`.
  void getInto(const std::string& name, void* out, std::size_t bytes) const;
  void getFloats(const std::string& name, float* out, int64_t n) const {
    getInto(name, out, static_cast<std::size_t>(n) * sizeof(float));
  }
  // The entry as floats, however many it holds.
  std::vector<float> floats(const std::string& name) const {
    std::vector<float> v(get(name).size() / sizeof(float));
    getFloats(name, v.data(), static_cast<int64_t>(v.size()));
    return v;
  }
  template <class T>
  T value(const std::string& name) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    getInto(name, &v, sizeof v);
    return v;
  }
  std::size_t size() const { return entries_.size(); }
  const std::string& source() const { return source_; }

  std::vector<uint8_t> serialize() const;
  // StateError "SOURCE: byte N: what" for anything but an intact version-1 state.
  static StateDict parse(std::span<const uint8_t> bytes, const std::string& source);

 private:
  std::map<std::string, std::vector<uint8_t>> entries_;
  std::string source_;
};

// CRC-32 (zlib's) of `bytes`; `start`, the CRC of the bytes before them, continues a running one.
uint32_t crc32(std::span<const uint8_t> bytes, uint32_t start = 0);

class Stream;
class Tensor;
// A tensor's elements (on any device) as one entry, and back (exact size checked).
void putTensor(StateDict& state, const std::string& name, const Stream& stream,
               const Tensor& tensor);
void getTensor(const StateDict& state, const std::string& name, const Stream& stream,
               const Tensor& tensor);

}  // namespace lowband::runtime
