#include <gtest/gtest.h>

#include "launcher/units.h"

namespace lowband::launcher {
namespace {

TEST(Units, BandwidthInBitsAndBytes) {
  EXPECT_DOUBLE_EQ(parseBandwidth("100Mbit").bytes_per_s, 100e6 / 8);
  EXPECT_DOUBLE_EQ(parseBandwidth("1Gbit/s").bytes_per_s, 1e9 / 8);
  EXPECT_DOUBLE_EQ(parseBandwidth("10 Gbps").bytes_per_s, 10e9 / 8);
  EXPECT_DOUBLE_EQ(parseBandwidth("25GB/s").bytes_per_s, 25e9);
  EXPECT_DOUBLE_EQ(parseBandwidth("2GiB/s").bytes_per_s, 2.0 * 1073741824);
  EXPECT_DOUBLE_EQ(parseBandwidth("100MBps").bytes_per_s, 100e6);
  EXPECT_DOUBLE_EQ(parseBandwidth("1.5e9").bytes_per_s, 1.5e9 / 8);  // plain: bits/s
  EXPECT_DOUBLE_EQ(parseBandwidth("400Gbit").bits(), 400e9);
}

TEST(Units, BandwidthErrorsSayWhatWasExpected) {
  EXPECT_THROW(parseBandwidth("fast"), UnitError);
  EXPECT_THROW(parseBandwidth("10 furlongs"), UnitError);
  EXPECT_THROW(parseBandwidth("-1Gbit"), UnitError);
  try {
    parseBandwidth("1Mb");
    FAIL() << "1Mb must be refused as ambiguous";
  } catch (const UnitError& e) {
    EXPECT_NE(std::string(e.what()).find("Mbit"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("MB"), std::string::npos) << e.what();
  }
  try {
    parseBandwidth("5 Mbitz");
    FAIL();
  } catch (const UnitError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown unit 'Mbitz'"), std::string::npos) << e.what();
  }
}

TEST(Units, Sizes) {
  EXPECT_EQ(parseByteSize("25MB").bytes, 25'000'000u);
  EXPECT_EQ(parseByteSize("64KiB").bytes, 65536u);
  EXPECT_EQ(parseByteSize("1048576").bytes, 1048576u);
  EXPECT_EQ(parseByteSize("1.5KB").bytes, 1500u);
  EXPECT_EQ(parseByteSize("2 GiB").bytes, 2147483648u);
  EXPECT_THROW(parseByteSize("0.5B"), UnitError);
  EXPECT_THROW(parseByteSize("25MB/s"), UnitError);
  EXPECT_THROW(parseByteSize("MB"), UnitError);
}

TEST(Units, Durations) {
  EXPECT_DOUBLE_EQ(parseDuration("10ms").seconds, 0.01);
  EXPECT_DOUBLE_EQ(parseDuration("5us").seconds, 5e-6);
  EXPECT_DOUBLE_EQ(parseDuration("5min").seconds, 300);
  EXPECT_DOUBLE_EQ(parseDuration("2h").seconds, 7200);
  EXPECT_DOUBLE_EQ(parseDuration("1.5").seconds, 1.5);
  EXPECT_DOUBLE_EQ(parseDuration("250ns").seconds, 250e-9);
  EXPECT_THROW(parseDuration("10 parsecs"), UnitError);
  EXPECT_THROW(parseDuration(""), UnitError);
}

TEST(Units, FormatRoundTrips) {
  for (const char* text : {"100Mbit", "1Gbit/s", "25GB/s", "1.5e9", "123.456Kbit", "3Tbit"}) {
    Bandwidth b = parseBandwidth(text);
    EXPECT_EQ(parseBandwidth(format(b)), b) << text << " -> " << format(b);
  }
  EXPECT_EQ(format(parseBandwidth("100Mbit")), "100Mbit/s");
  EXPECT_EQ(format(parseBandwidth("1Gbit")), "1Gbit/s");
  for (const char* text : {"25MB", "64KiB", "1", "1000001", "3GiB"}) {
    ByteSize s = parseByteSize(text);
    EXPECT_EQ(parseByteSize(format(s)), s) << text << " -> " << format(s);
  }
  EXPECT_EQ(format(parseByteSize("25MB")), "25MB");
  EXPECT_EQ(format(parseByteSize("64KiB")), "64KiB");
  for (const char* text : {"10ms", "5us", "5min", "0.123456789", "90s", "7ns"}) {
    Duration d = parseDuration(text);
    EXPECT_EQ(parseDuration(format(d)), d) << text << " -> " << format(d);
  }
  EXPECT_EQ(format(parseDuration("20ms")), "20ms");
  EXPECT_EQ(format(parseDuration("300s")), "5min");
}

TEST(Units, FormatNumberIsShortestExact) {
  EXPECT_EQ(formatNumber(100), "100");
  EXPECT_EQ(formatNumber(3e-4), "0.0003");
  EXPECT_EQ(formatNumber(0.1), "0.1");
  EXPECT_EQ(std::stod(formatNumber(1.0 / 3)), 1.0 / 3);
}

TEST(Units, ApproximateBytesForPeople) {
  EXPECT_EQ(formatApprox(ByteSize{0}), "0B");
  EXPECT_EQ(formatApprox(ByteSize{995}), "995B");
  EXPECT_EQ(formatApprox(ByteSize{716352}), "716KB");
  EXPECT_EQ(formatApprox(ByteSize{5814000}), "5.81MB");
  EXPECT_EQ(formatApprox(ByteSize{999600}), "1MB");
  EXPECT_EQ(formatApprox(ByteSize{3032985600}), "3.03GB");
}

}  // namespace
}  // namespace lowband::launcher
