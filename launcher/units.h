// Quantities with units, as written in configs: rates ("100Mbit", "1Gbit/s", "25GB/s",
// "1.5e9"), sizes ("25MB", "64KiB") and durations ("10ms", "5us", "5min").
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace lowband::launcher {

// Thrown with a message that says what was expected; the config reader adds file and key.
struct UnitError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct Bandwidth {
  double bytes_per_s = 0;  // a plain number in a config is bits per second, as links are sold
  double bits() const { return bytes_per_s * 8; }
  bool operator==(const Bandwidth&) const = default;
};

struct ByteSize {
  uint64_t bytes = 0;
  bool operator==(const ByteSize&) const = default;
};

struct Duration {
  double seconds = 0;
  bool operator==(const Duration&) const = default;
};

// Bits: bit Kbit Mbit Gbit Tbit, bps Kbps Mbps Gbps Tbps (decimal). Bytes: B KB MB GB TB
// (decimal) and KiB MiB GiB TiB (binary). Optional "/s" or "ps" suffix after a byte unit.
Bandwidth parseBandwidth(const std::string& text);
// B KB MB GB TB KiB MiB GiB TiB; a plain number is bytes.
ByteSize parseByteSize(const std::string& text);
// ns us ms s min h; a plain number is seconds.
Duration parseDuration(const std::string& text);

// Shortest decimal text that reads back as exactly `v` ("100", "0.0003", "1e-08").
std::string formatNumber(double v, int min_precision = 1);

// Shortest text that parses back to the same value: "100Mbit/s", "25MB", "20ms".
std::string format(Bandwidth b);
std::string format(ByteSize s);
std::string format(Duration d);
// For people, not round trips: three significant digits in decimal units ("716KB", "5.81MB").
std::string formatApprox(ByteSize s);

// `s` as a JSON string literal, quotes included (", \ and control characters escaped).
std::string jsonString(const std::string& s);

}  // namespace lowband::launcher
