#include "launcher/units.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <utility>
#include <vector>

namespace lowband::launcher {

namespace {

struct Unit {
  std::string name;
  double factor;
};

// Splits "1.5 Gbit/s" into 1.5 and "Gbit/s"; throws when no number leads.
std::pair<double, std::string> splitNumber(const std::string& text, const char* expected) {
  const char* begin = text.c_str();
  char* end = nullptr;
  double value = std::strtod(begin, &end);
  if (end == begin || !std::isfinite(value))
    throw UnitError("expected " + std::string(expected) + ", got '" + text + "'");
  std::string unit(end);
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  while (!unit.empty() && unit.back() == ' ') unit.pop_back();
  if (value < 0) throw UnitError("expected a non-negative value, got '" + text + "'");
  return {value, unit};
}

// `accepted` lists the units for the error message.
double applyUnit(const std::string& text, const std::vector<Unit>& units, const char* expected,
                 const char* accepted) {
  auto [value, unit] = splitNumber(text, expected);
  for (const Unit& u : units)
    if (unit == u.name) return value * u.factor;
  throw UnitError("unknown unit '" + unit + "' in '" + text + "' (expected " + expected +
                  "; units: " + accepted + ")");
}

// Byte units, shared by sizes, byte rates and formatting.
const std::vector<Unit> kByteUnits = {
    {"B", 1},     {"KB", 1e3},    {"kB", 1e3},       {"MB", 1e6},          {"GB", 1e9},
    {"TB", 1e12}, {"KiB", 1024.}, {"MiB", 1048576.}, {"GiB", 1073741824.}, {"TiB", 1099511627776.}};

const std::vector<Unit>& rateUnits() {
  static const std::vector<Unit> units = [] {
    std::vector<Unit> u = {{"", 1.0 / 8}};
    const std::pair<const char*, double> bits[] = {{"bit", 1},    {"Kbit", 1e3}, {"kbit", 1e3},
                                                   {"Mbit", 1e6}, {"Gbit", 1e9}, {"Tbit", 1e12}};
    for (auto [n, f] : bits) {
      u.push_back({n, f / 8});
      u.push_back({std::string(n) + "/s", f / 8});
      // "Mbit" -> "Mbps"
      u.push_back({std::string(n).substr(0, std::string(n).size() - 3) + "bps", f / 8});
    }
    for (const Unit& b : kByteUnits)
      for (const char* suffix : {"/s", "ps"}) u.push_back({b.name + suffix, b.factor});
    return u;
  }();
  return units;
}

const std::vector<Unit>& sizeUnits() {
  static const std::vector<Unit> units = [] {
    std::vector<Unit> u = {{"", 1}};
    u.insert(u.end(), kByteUnits.begin(), kByteUnits.end());
    return u;
  }();
  return units;
}

const std::vector<Unit> kDurationUnits = {{"", 1},      {"ns", 1e-9}, {"us", 1e-6}, {"µs", 1e-6},
                                          {"ms", 1e-3}, {"s", 1},     {"min", 60},  {"h", 3600}};

// The largest unit giving a value >= 1, printed with the fewest digits that round-trip.
template <class Parse>
std::string formatWith(double value, const std::vector<Unit>& candidates, Parse parse) {
  const Unit* best = &candidates.front();
  for (const Unit& u : candidates)
    if (value >= u.factor && u.factor >= best->factor) best = &u;
  // The scaled number may need more digits than formatNumber gives to survive the unit factor.
  std::string text;
  for (int precision = 1; precision <= 17; ++precision) {
    text = formatNumber(value / best->factor, precision) + best->name;
    if (parse(text.c_str()) == value) break;
  }
  return text;
}

}  // namespace

std::string formatNumber(double v, int min_precision) {
  char buf[48];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int p = min_precision; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

Bandwidth parseBandwidth(const std::string& text) {
  static const std::set<std::string> ambiguous = {"b", "Kb", "kb", "Mb", "Gb", "Tb"};
  const std::string unit = splitNumber(text, "a rate such as 100Mbit, 1Gbit/s or 25GB/s").second;
  if (ambiguous.count(unit))
    throw UnitError("ambiguous unit '" + unit + "' in '" + text + "': write " + unit +
                    "it for bits or " + unit.substr(0, unit.size() - 1) + "B for bytes");
  return {applyUnit(text, rateUnits(), "a rate such as 100Mbit, 1Gbit/s or 25GB/s",
                    "bit Kbit Mbit Gbit Tbit [/s], bps Kbps Mbps Gbps Tbps, "
                    "B KB MB GB TB KiB MiB GiB TiB followed by /s")};
}

ByteSize parseByteSize(const std::string& text) {
  double bytes = applyUnit(text, sizeUnits(), "a size such as 25MB, 64KiB or 1048576",
                           "B KB MB GB TB KiB MiB GiB TiB");
  if (bytes != std::floor(bytes))
    throw UnitError("expected a whole number of bytes, got '" + text + "'");
  return {static_cast<uint64_t>(bytes)};
}

Duration parseDuration(const std::string& text) {
  return {
      applyUnit(text, kDurationUnits, "a duration such as 10ms, 5us or 5min", "ns us ms s min h")};
}

std::string format(Bandwidth b) {
  static const std::vector<Unit> out = {{"bit/s", 1.0 / 8},
                                        {"Kbit/s", 1e3 / 8},
                                        {"Mbit/s", 1e6 / 8},
                                        {"Gbit/s", 1e9 / 8},
                                        {"Tbit/s", 1e12 / 8}};
  if (b.bytes_per_s == 0) return "0bit/s";
  return formatWith(b.bytes_per_s, out,
                    [](const char* s) { return parseBandwidth(s).bytes_per_s; });
}

std::string format(ByteSize s) {
  if (s.bytes == 0) return "0B";
  // The largest unit that divides exactly: "64KiB", "25MB", "1MiB".
  const Unit* best = &kByteUnits.front();
  for (const Unit& u : kByteUnits)
    if (s.bytes / u.factor == std::floor(s.bytes / u.factor) && u.factor > best->factor) best = &u;
  return std::to_string(static_cast<uint64_t>(s.bytes / best->factor)) + best->name;
}

std::string formatApprox(ByteSize s) {
  static const char* const names[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(s.bytes);
  int unit = 0;
  while (v >= 999.5 && unit < 4) {
    v /= 1000;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.3g%s", v, names[unit]);
  return text;
}

std::string format(Duration d) {
  static const std::vector<Unit> out = {{"ns", 1e-9}, {"us", 1e-6}, {"ms", 1e-3},
                                        {"s", 1},     {"min", 60},  {"h", 3600}};
  if (d.seconds == 0) return "0s";
  return formatWith(d.seconds, out, [](const char* s) { return parseDuration(s).seconds; });
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace lowband::launcher
