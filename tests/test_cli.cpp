#include <gtest/gtest.h>

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

}  // namespace
}  // namespace lowband::launcher
