// `lowband simulate`'s model (sim/simulator.h) against cases whose answer is known in closed
// form, and the CLI's output formats.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "launcher/cli.h"
#include "sim/simulator.h"

namespace lowband::sim {
namespace {

// A model whose numbers are easy to check by hand.
ModelShape shape(int64_t layers = 12, int64_t fragment_layers = 3) {
  return {"test", layers, 1.2e8, 0.2, 10, fragment_layers};
}

// Wire seconds of an all-reduce of `params` at `bits` over M replicas and B bits/s.
double wireSeconds(double params, double bits, int64_t M, double B) {
  return 2.0 * static_cast<double>(M - 1) / static_cast<double>(M) * params * bits / B;
}

TEST(Simulate, DilocoBlocksForItsWholeExchange) {
  const ModelShape m = shape();
  for (const int64_t M : {2, 8})
    for (const double B : {1e8, 1e9, 1e10}) {
      const double lat = 0.02, ex = lat + wireSeconds(m.params, 16, M, B);
      const double want = m.H * m.step_s / (m.H * m.step_s + ex);
      EXPECT_NEAR(utilization(m, {Method::Diloco, 0, 16, M}, {B, lat}), want, 1e-9)
          << "M " << M << ", B " << B;
    }
}

TEST(Simulate, StreamingWithOneFragmentIsDiloco) {
  const ModelShape one = shape(12, 12);
  for (const double B : {1e7, 1e9})
    EXPECT_NEAR(utilization(one, {Method::StreamingDiloco, 0, 8, 4}, {B, 0.01}),
                utilization(one, {Method::Diloco, 0, 8, 4}, {B, 0.01}), 1e-12);
}

TEST(Simulate, StreamingOverlapHidesAFragmentThatLandsWithinTau) {
  const ModelShape m = shape();  // 4 fragments of 3 layers: 3e7 parameters each
  const double lat = 0.01;
  // A fragment's exchange takes 0.15 s + 10 ms < one step (0.2 s): overlap 1 hides it all.
  const double B = 2.0 * 0.5 * 3e7 * 16 / 0.15;
  EXPECT_NEAR(utilization(m, {Method::StreamingDiloco, 1, 16, 2}, {B, lat}), 1.0, 1e-12);
  EXPECT_LT(utilization(m, {Method::StreamingDiloco, 0, 16, 2}, {B, lat}), 1.0);  // blocking shows
}

// CO2 applies round k's exchange at the start of round k + 2: no stall while it lands within
// a round; once the link itself is the bottleneck, a round lasts one exchange.
TEST(Simulate, Co2IsHiddenUntilTheLinkIsTheBottleneck) {
  const ModelShape m = shape();
  const double round = m.H * m.step_s, lat = 0.05;
  const double fits = 2.0 * 0.5 * m.params * 16 / (round - lat - 0.1);  // exchange < a round
  EXPECT_NEAR(utilization(m, {Method::Co2, 0, 16, 2}, {fits, lat}), 1.0, 1e-12);
  const double slow = 1e8, bw = wireSeconds(m.params, 16, 2, slow);  // 19.2 s > round + lat
  ASSERT_GT(bw, round + lat);
  EXPECT_NEAR(utilization(m, {Method::Co2, 0, 16, 2}, {slow, lat}), round / bw, 1e-9);
}

TEST(Simulate, DpReachesFullUtilisationOnlyWithAFreeLink) {
  const ModelShape m = shape();
  EXPECT_NEAR(utilization(m, {Method::Ddp, 0, 16, 2}, {1e18, 0}), 1.0, 1e-9);
  double last = 0;
  for (double B = 1e7; B <= 1e13; B *= 10) {
    const double u = utilization(m, {Method::Ddp, 0, 16, 2}, {B, 1e-3});
    EXPECT_GE(u, last) << B;  // more bandwidth never hurts
    last = u;
  }
}

TEST(Simulate, NeededBandwidthInvertsTheDilocoFormula) {
  const ModelShape m = shape();
  const double lat = 0.05, target = 0.9;
  // u = HT / (HT + lat + w/B)  =>  B = w / (HT (1/u - 1) - lat), w in bits.
  const double w = 2.0 * 0.5 * m.params * 16;
  const double want = w / (m.H * m.step_s * (1 / target - 1) - lat);
  const auto got = neededBandwidth(m, {Method::Diloco, 0, 16, 2}, lat, target);
  ASSERT_TRUE(got.has_value());
  EXPECT_NEAR(*got / want, 1.0, 2e-3);
  // Latency alone over the round's budget: no bandwidth is enough.
  EXPECT_FALSE(neededBandwidth(m, {Method::Diloco, 0, 16, 2}, 1.0, target).has_value());
}

// The ordering the Streaming DiLoCo paper reports, at 100 Mbit/s on the 1b preset.
TEST(Simulate, OrderingAtOneHundredMegabit) {
  const ModelShape& m = *findPreset("1b");
  const LinkSpec link{1e8, 0.01};
  const double dp = utilization(m, {Method::Ddp, 0, 16, 2}, link);
  const double diloco = utilization(m, {Method::Diloco, 0, 16, 2}, link);
  const double streaming = utilization(m, {Method::StreamingDiloco, 0, 16, 2}, link);
  const double overlapped = utilization(m, {Method::StreamingDiloco, 1, 16, 2}, link);
  const double fp4 = utilization(m, {Method::StreamingDiloco, 1, 4, 2}, link);
  EXPECT_LT(dp, diloco);
  EXPECT_LT(diloco, streaming);
  EXPECT_LT(streaming, overlapped);
  EXPECT_LE(overlapped, fp4);
}

TEST(Simulate, BadInputIsAClearError) {
  EXPECT_THROW(utilization(shape(), {Method::Ddp, 0, 16, 1}, {1e9, 0}), SimError);
  EXPECT_THROW(utilization(shape(), {Method::Ddp, 0, 0, 2}, {1e9, 0}), SimError);
  EXPECT_THROW(utilization(shape(), {Method::Ddp, 0, 16, 2}, {0, 0}), SimError);
}

}  // namespace
}  // namespace lowband::sim

namespace lowband::launcher {
namespace {

struct CliRun {
  int status;
  std::string out, err;
};
CliRun cli(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int status = runCli(args, out, err, {});
  return {status, out.str(), err.str()};
}

TEST(SimulateCli, JsonHasOneObjectPerRowWithTheNeededBandwidths) {
  const CliRun r = cli({"simulate", "--preset", "1b", "--format", "json", "--points", "5"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int rows = 0;
  while (std::getline(lines, line)) {
    ++rows;
    for (const char* key :
         {"\"preset\":\"1b\"", "\"method\":", "\"overlap\":", "\"bits\":", "\"replicas\":2",
          "\"needed_gbps\":{\"0.5\":", "\"0.99\":", "\"curve\":[{\"gbps\":"})
      EXPECT_NE(line.find(key), std::string::npos) << key << " in " << line;
  }
  EXPECT_EQ(rows, 5);  // ddp, diloco, streaming_diloco, its overlap 1, the same at 4 bits
}

TEST(SimulateCli, MarkdownAndCsvTablesAndCustomModels) {
  const CliRun md =
      cli({"simulate", "--layers", "12", "--params", "1.2e8", "--step-time", "0.2", "--H", "10",
           "--method", "streaming_diloco", "--overlap", "1", "--points", "3"});
  ASSERT_EQ(md.status, 0) << md.err;
  EXPECT_NE(md.out.find("### custom: 12 layers"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("| streaming_diloco overlap 1 16b |"), std::string::npos) << md.out;
  const CliRun csv = cli(
      {"simulate", "--preset", "10b", "--format", "csv", "--points", "3", "--method", "diloco"});
  ASSERT_EQ(csv.status, 0) << csv.err;
  EXPECT_EQ(
      csv.out.rfind("preset,method,overlap,bits,replicas,latency_s,kind,gbps,utilization\n", 0),
      0u);
  EXPECT_NE(csv.out.find("10b,diloco,0,16,2,0.01,curve,"), std::string::npos) << csv.out;
}

// --config: the config's outer method, replicas, codec (fp4 with its block scales: 4.5 bits)
// and outer latency; a step of the given compute plus the exchanges inside a replica.
TEST(SimulateCli, ConfigGivesTheOuterExchangeOfARealLayout) {
  const std::string config =
      std::string(std::getenv("LOWBAND_SOURCE_DIR")) + "/configs/streaming_diloco.yaml";
  const CliRun r = cli({"simulate", "--config", config, "--world", "4", "--step-time", "0.05",
                        "--format", "json", "--points", "3"});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* key : {"\"method\":\"streaming_diloco\"", "\"overlap\":1", "\"bits\":4.5",
                          "\"replicas\":2", "\"latency_s\":0.02"})
    EXPECT_NE(r.out.find(key), std::string::npos) << key << " in " << r.out;
  for (const auto& [option, value] :  // the config says those
       {std::pair<const char*, const char*>{"--preset", "1b"}, {"--bits", "4"}}) {
    const CliRun both = cli({"simulate", "--config", config, option, value});
    EXPECT_EQ(both.status, 1) << option;
    EXPECT_NE(both.err.find("takes the model, method, codec and replicas from the config"),
              std::string::npos)
        << both.err;
  }
  // Outer ddp: the outermost tier's latency (20 ms) too, not the --latency default.
  const CliRun ddp = cli({"simulate", "--config", config, "--world", "4", "--step-time", "0.05",
                          "--set", "sync.outer.method=ddp", "--format", "json", "--points", "2"});
  ASSERT_EQ(ddp.status, 0) << ddp.err;
  EXPECT_NE(ddp.out.find("\"method\":\"ddp\""), std::string::npos) << ddp.out;
  EXPECT_NE(ddp.out.find("\"latency_s\":0.02"), std::string::npos) << ddp.out;
}

TEST(SimulateCli, BadOptionsAreOneClearError) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"simulate", "--layers", "4"},
        {"simulate", "--latency", "fast"},
        {"simulate", "--min", "1Gbit", "--max", "1Mbit"},
        {"simulate", "--overlap", "1"},
        {"simulate", "--preset", "7b"}}) {
    const CliRun r = cli(args);
    EXPECT_EQ(r.status, 1) << args[1];
    EXPECT_NE(r.err.find(args[1]), std::string::npos) << r.err;  // names the option
  }
}

}  // namespace
}  // namespace lowband::launcher
