#include "runtime/state_dict.h"

#include <zlib.h>

namespace lowband::runtime {

namespace {

constexpr char kMagic[8] = {'L', 'B', 'S', 'T', 'A', 'T', 'E', '\0'};
constexpr std::size_t kMaxName = 255;

template <class T>
uint8_t* store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
  return p + sizeof v;
}

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

uint32_t crc32(std::span<const uint8_t> bytes, uint32_t start) {
  uLong crc = start;
  // zlib takes uInt lengths: feed large buffers in pieces.
  for (std::size_t at = 0; at < bytes.size();) {
    const std::size_t n = std::min<std::size_t>(bytes.size() - at, 1u << 30);
    crc = ::crc32(crc, bytes.data() + at, static_cast<uInt>(n));
    at += n;
  }
  return static_cast<uint32_t>(crc);
}

void StateDict::put(const std::string& name, const void* data, std::size_t bytes) {
  LB_REQUIRE(
      !name.empty() && name.size() <= kMaxName, StateError,
      "state entry name '" + name + "' must have 1.." + std::to_string(kMaxName) + " characters");
  const auto* p = static_cast<const uint8_t*>(data);
  entries_[name].assign(p, p + bytes);
}

std::span<const uint8_t> StateDict::get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    LB_THROW(StateError, source_ + ": no entry '" + name +
                             "' (written by another method, model or version of lowband?)");
  return it->second;
}

void StateDict::getInto(const std::string& name, void* out, std::size_t bytes) const {
  const std::span<const uint8_t> e = get(name);
  if (e.size() != bytes)
    LB_THROW(StateError, source_ + ": entry '" + name + "' holds " + std::to_string(e.size()) +
                             " bytes, expected " + std::to_string(bytes) +
                             " (a different model, world size or method?)");
  if (bytes) std::memcpy(out, e.data(), bytes);
}

std::vector<uint8_t> StateDict::serialize() const {
  std::size_t payload = 0;
  for (const auto& [name, data] : entries_) payload += 4 + name.size() + 8 + data.size();
  std::vector<uint8_t> out(kHeaderBytes + payload);
  uint8_t* p = out.data() + kHeaderBytes;
  for (const auto& [name, data] : entries_) {
    p = store(p, static_cast<uint32_t>(name.size()));
    std::memcpy(p, name.data(), name.size());
    p = store(p + name.size(), static_cast<uint64_t>(data.size()));
    if (!data.empty()) std::memcpy(p, data.data(), data.size());
    p += data.size();
  }
  p = out.data();
  std::memcpy(p, kMagic, sizeof kMagic);
  p = store(p + sizeof kMagic, kVersion);
  p = store(p, static_cast<uint32_t>(entries_.size()));
  p = store(p, static_cast<uint64_t>(payload));
  p = store(p, crc32(std::span<const uint8_t>(out).subspan(kHeaderBytes)));
  store(p, uint32_t{0});
  return out;
}

StateDict StateDict::parse(std::span<const uint8_t> bytes, const std::string& source) {
  auto fail = [&](std::size_t offset, const std::string& what) {
    LB_THROW(StateError, source + ": byte " + std::to_string(offset) + ": " + what);
  };
  if (bytes.size() < kHeaderBytes)
    fail(bytes.size(),
         "file ends inside the " + std::to_string(kHeaderBytes) + "-byte header (truncated?)");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    fail(0, "not a lowband state file (magic is not LBSTATE)");
  const auto version = load<uint32_t>(bytes.data() + 8);
  if (version != kVersion)
    fail(8, "version " + std::to_string(version) + ", this lowband reads version " +
                std::to_string(kVersion));
  const auto entries = load<uint32_t>(bytes.data() + 12);
  const auto payload = load<uint64_t>(bytes.data() + 16);
  if (payload != bytes.size() - kHeaderBytes)
    fail(16, "header says " + std::to_string(payload) + " payload bytes, the file has " +
                 std::to_string(bytes.size() - kHeaderBytes) + " (truncated or appended to)");
  const std::span<const uint8_t> body = bytes.subspan(kHeaderBytes);
  if (load<uint32_t>(bytes.data() + 24) != crc32(body))
    fail(24, "checksum mismatch: the contents are corrupt");
  StateDict d(source);
  std::size_t at = kHeaderBytes;
  auto need = [&](std::size_t n, const char* what) {
    if (bytes.size() - at < n) fail(at, std::string("file ends inside ") + what);
  };
  for (uint32_t e = 0; e < entries; ++e) {
    need(4, "an entry's name length");
    const auto len = load<uint32_t>(bytes.data() + at);
    if (len == 0 || len > kMaxName)
      fail(at,
           "entry name length " + std::to_string(len) + " outside 1.." + std::to_string(kMaxName));
    at += 4;
    need(len, "an entry's name");
    std::string name(reinterpret_cast<const char*>(bytes.data() + at), len);
    at += len;
    need(8, "an entry's size");
    const auto n = load<uint64_t>(bytes.data() + at);
    at += 8;
    if (n > bytes.size() - at) fail(at - 8, "entry '" + name + "' runs past the end of the file");
    if (d.contains(name)) fail(at - 12 - len, "entry '" + name + "' appears twice");
    d.entries_[name].assign(bytes.data() + at, bytes.data() + at + n);
    at += n;
  }
  if (at != bytes.size())
    fail(at, std::to_string(bytes.size() - at) + " bytes after the last of " +
                 std::to_string(entries) + " entries");
  return d;
}

}  // namespace lowband::runtime
