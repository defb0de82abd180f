#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "launcher/cli.h"
#include "launcher/config.h"
#include "tests/test_support.h"

namespace lowband::launcher {
namespace {

struct CliRun {
  int status;
  std::string out;
  std::string err;
};

CliRun cli(const std::vector<std::string>& args, CliContext ctx = {}) {
  std::ostringstream out, err;
  int status = runCli(args, out, err, ctx);
  return {status, out.str(), err.str()};
}

std::string config(const std::string& name) { return test::sourceDir() + "/configs/" + name; }

TEST(Cli, VersionNamesTheBuild) {
  CliRun r = cli({"--version"});
  EXPECT_EQ(r.status, kExitOk);
  EXPECT_EQ(r.out.rfind("lowband 0.", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("OpenBLAS"), std::string::npos);
  EXPECT_NE(r.out.find("MPI"), std::string::npos);
  EXPECT_NE(r.out.find("CUDA backend"), std::string::npos);
  EXPECT_NE(r.out.find("device auto: using "), std::string::npos) << r.out;
}

TEST(Cli, HelpListsOnlyWorkingCommands) {
  CliRun r = cli({"--help"});
  EXPECT_EQ(r.status, kExitOk);
  EXPECT_NE(r.out.find("validate"), std::string::npos);
}

TEST(Cli, UnknownCommandSuggests) {
  CliRun r = cli({"validat", "x.yaml"});
  EXPECT_EQ(r.status, kExitBadInput);
  EXPECT_NE(r.err.find("unknown command 'validat' (did you mean 'validate'?)"), std::string::npos)
      << r.err;
}

TEST(Cli, MissingSubcommandAndMissingFileAreUsageErrors) {
  EXPECT_EQ(cli({}).status, kExitBadInput);
  CliRun r = cli({"validate", "/nonexistent/exp.yaml"});
  EXPECT_EQ(r.status, kExitBadInput);
  EXPECT_NE(r.err.find("/nonexistent/exp.yaml"), std::string::npos) << r.err;
}

TEST(Cli, ValidateReportsEachFile) {
  test::TempDir dir;
  std::string bad = dir.write("bad.yaml", "model: {kind: gpt}\ndata: {train: a}\nrun: {stps: 1}\n");
  CliRun r = cli({"validate", config("quickstart.yaml"), bad});
  EXPECT_EQ(r.status, kExitBadInput);
  EXPECT_NE(r.out.find("quickstart.yaml: ok: gpt 6x256"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find(bad + ":3:7: run.stps: unknown key (did you mean 'steps'?)"),
            std::string::npos)
      << r.err;
}

TEST(Cli, PrintEmitsTheResolvedConfig) {
  CliRun r = cli({"validate", "--print", config("streaming_diloco.yaml"), "--set", "run.steps=42"});
  ASSERT_EQ(r.status, kExitOk) << r.err;
  Config back = parseConfig(r.out, "printed");
  EXPECT_EQ(back.run.steps, 42);
  EXPECT_EQ(back.sync.outer.method, OuterMethod::StreamingDiloco);
  EXPECT_NE(r.out.find("bandwidth: 1Gbit/s"), std::string::npos) << r.out;
}

TEST(Cli, WarningsGoToStderr) {
  CliRun r = cli({"validate", config("quickstart.yaml"), "--set", "sync.outer.H=5"});
  EXPECT_EQ(r.status, kExitOk);
  EXPECT_NE(r.err.find("warning: "), std::string::npos);
  EXPECT_NE(r.err.find("sync.outer.H: ignored"), std::string::npos) << r.err;
}

TEST(Cli, WorldSizeComesFromMpiOrTheOption) {
  // ddp.yaml has node tiers of 2 ranks: 3 ranks cannot be split into them.
  EXPECT_EQ(cli({"validate", config("ddp.yaml"), "--world", "3"}).status, kExitBadInput);
  EXPECT_EQ(cli({"validate", config("ddp.yaml"), "--world", "4"}).status, kExitOk);
  EXPECT_EQ(cli({"validate", config("ddp.yaml")}, {0, 3}).status, kExitBadInput);
  EXPECT_EQ(cli({"validate", config("ddp.yaml")}).status, kExitOk);  // singleton: no world check
}

TEST(Cli, OnlyRankZeroPrints) {
  CliRun r = cli({"validate", config("quickstart.yaml")}, {1, 2});
  EXPECT_EQ(r.status, kExitOk);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  test::TempDir dir;
  std::string bad = dir.write("bad.yaml", "model: {kind: gpt}\ndata: {train: a}\nrun: {stps: 1}\n");
  CliRun quiet = cli({"validate", bad}, {1, 2});
  EXPECT_EQ(quiet.status, kExitBadInput);  // every rank fails the same way...
  EXPECT_EQ(quiet.err, "");                // ...and only rank 0 says so
}

// Every rejected option is one `error:` line that names the option and what it expected (CLI11's
// own range checks printed the whole double range and no `error:`).
TEST(Cli, BadOptionValuesAreOneErrorLine) {
  const std::string good = config("ddp.yaml");
  struct Case {
    std::vector<std::string> args;
    std::string message;  // the whole line, or a fragment when `exact` is false
    bool exact = true;
  };
  const std::vector<Case> cases = {
      {{"validate", good, "--world", "0"}, "error: --world: expected a positive integer, got 0"},
      {{"validate", good, "--world", "abc"},
       "error: --world: expected a positive integer, got 'abc'"},
      {{"validate", good, "--world", "-2"}, "error: --world: expected a positive integer, got -2"},
      {{"plan", good, "--world", "0"},
       "error: --world: expected an integer from 1 to 65536, got 0"},
      {{"plan", good, "--world", "4294967296"},
       "error: --world: expected an integer from 1 to 65536, got 4294967296"},
      {{"plan", good, "--step-time", "0"}, "error: --step-time: expected a positive number, got 0"},
      {{"plan", good, "--step-time", "inf"},
       "error: --step-time: expected a positive number, got inf"},
      {{"simulate", "--H", "0"}, "error: --H: expected an integer from 1 to 100000, got 0"},
      {{"simulate", "--bits", "0"}, "error: --bits: expected a number > 0 and <= 64, got 0"},
      {{"simulate", "--bits", "1e400"},
       "error: --bits: expected a number > 0 and <= 64, got 1e400"},
      {{"simulate", "--points", "1000000000"},
       "error: --points: expected an integer from 2 to 10000, got 1000000000"},
      {{"simulate", "--points", "1"},
       "error: --points: expected an integer from 2 to 10000, got 1"},
      {{"simulate", "--layers", "1000000"},
       "error: --layers: expected an integer from 1 to 10000, got 1000000"},
      {{"simulate", "--fragment-layers", "0"},
       "error: --fragment-layers: expected an integer from 1 to 10000, got 0"},
      {{"simulate", "--overlap", "-1"},
       "error: --overlap: expected an integer from 0 to 100000, got -1"},
      {{"simulate", "--replicas", "1"},
       "error: --replicas: expected an integer from 2 to 1073741824, got 1"},
      {{"simulate", "--layers", "4", "--params", "1e9", "--step-time", "nan"},
       "error: --step-time: expected a positive number, got nan"},
      {{"simulate", "--params", "-5"}, "error: --params: expected a positive number, got -5"},
      {{"simulate", "--world", "0"}, "error: --world: expected an integer from 1 to 65536, got 0"},
      {{"simulate", "--preset", "2b"},
       "error: --preset: expected one of 1b, 10b, 100b, got '2b' (did you mean '1b'?)"},
      {{"simulate", "--method", "streamin"},
       "error: --method: expected one of ddp, local_sgd, diloco, streaming_diloco, co2, got "
       "'streamin' (did you mean 'streaming_diloco'?)"},
      {{"simulate", "--format", "markdown"},
       "error: --format: expected one of md, csv, json, got 'markdown'"},
      {{"bench", "train", "--steps", "0"}, "error: --steps: expected a positive integer, got 0"},
      {{"train", good, "--world", "0"}, "error: ", false},  // train has no --world
      {{"validate", good, "--bogus"}, "error: ", false},
      {{"validate"}, "error: ", false},
      {{}, "error: ", false},
      {{"bench"}, "error: ", false},
  };
  for (const Case& c : cases) {
    std::string line;
    for (const std::string& a : c.args) line += a + " ";
    const CliRun r = cli(c.args);
    EXPECT_EQ(r.status, kExitBadInput) << line << r.err;
    EXPECT_EQ(r.out, "") << line;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << line << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << line << "one line: " << r.err;
    if (c.exact)
      EXPECT_EQ(r.err, c.message + "\n") << line;
    else
      EXPECT_NE(r.err.find(c.message), std::string::npos) << line << r.err;
  }
}

// A missing, unreadable or special CONFIG is the loader's one error line naming it.
TEST(Cli, ConfigPathThatIsNotAFileIsOneErrorLine) {
  test::TempDir dir;
  for (const std::string& path : {std::string("/nonexistent/exp.yaml"), dir.path().string()}) {
    for (const char* command : {"validate", "plan", "train"}) {
      const CliRun r = cli({command, path});
      EXPECT_EQ(r.status, kExitBadInput) << command << " " << path;
      EXPECT_EQ(r.err.rfind("error: " + path + ": ", 0), 0u) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
  }
}

// simulate's sweep is bounded: a sweep too large to finish in about a minute, or a streaming
// overlap of H or more (exchanges pile up without bound), is refused before it starts.
TEST(Cli, SimulateRefusesUnboundedSweeps) {
  CliRun big = cli({"simulate", "--layers", "10000", "--params", "1e9", "--step-time", "1", "--H",
                    "100000", "--points", "2", "--method", "diloco"});
  EXPECT_EQ(big.status, kExitBadInput) << big.err;
  EXPECT_EQ(big.err.rfind("error: simulate: ", 0), 0u) << big.err;
  EXPECT_NE(big.err.find("fewer --points"), std::string::npos) << big.err;
  EXPECT_EQ(std::count(big.err.begin(), big.err.end(), '\n'), 1) << big.err;
  CliRun overlap = cli(
      {"simulate", "--preset", "1b", "--method", "streaming_diloco", "--overlap", "100", "--points", "2"});
  EXPECT_EQ(overlap.status, kExitBadInput) << overlap.err;
  EXPECT_EQ(overlap.err,
            "error: simulate: --overlap 100 must be < H 100 (1b): a fragment's exchange must land "
            "before its next one starts\n");
}

}  // namespace
}  // namespace lowband::launcher
