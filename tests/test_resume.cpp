// Checkpoint and resume under `mpiexec -n 4` (2 replicas of 2 ranks over two emulated tiers):
// for every method, a run resumed from a checkpoint taken while an outer exchange is in flight
// ends with the same bytes (theta_global, every rank's full state) and the same logged losses
// as the uninterrupted run; --resume auto passes over incomplete and corrupt checkpoints;
// checkpoints of another layout are refused.
#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "launcher/checkpoint.h"
#include "launcher/config.h"
#include "launcher/plan.h"
#include "launcher/trainer.h"
#include "nn/data.h"
#include "tests/mpi_test_main.h"

namespace lowband::launcher {
namespace {

namespace fs = std::filesystem;

int worldSize() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

int worldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// A directory every rank sees, with byte shards of the project's own text; removed at exit.
class SharedDir {
 public:
  SharedDir() {
    char path[256] = {};
    if (worldRank() == 0) {
      std::string tmpl = (fs::temp_directory_path() / "lowband_resume_XXXXXX").string();
      if (!mkdtemp(tmpl.data())) std::abort();
      std::snprintf(path, sizeof path, "%s", tmpl.c_str());
      std::string text;
      for (const char* f : {"README.md", "launcher/config.cpp", "launcher/trainer.cpp"}) {
        std::ifstream in(std::string(std::getenv("LOWBAND_SOURCE_DIR")) + "/" + f);
        text.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      }
      std::vector<uint16_t> tokens(text.begin(), text.end());
      for (uint16_t& t : tokens) t &= 0xff;
      const std::size_t split = tokens.size() * 9 / 10;
      nn::writeTokenShard(std::string(path) + "/train.bin", {tokens.data(), split});
      nn::writeTokenShard(std::string(path) + "/val.bin",
                          {tokens.data() + split, tokens.size() - split});
    }
    MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
    path_ = path;
  }
  ~SharedDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (worldRank() == 0) fs::remove_all(path_);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

const SharedDir& shared() {
  static SharedDir dir;
  return dir;
}

// 20 steps, a checkpoint every 3, over a node tier of 2 and an emulated (fast) wan tier.
std::string configText(const std::string& sync, const std::string& out_dir) {
  const std::string d = shared().path().string();
  return "run: {name: resume, seed: 5, steps: 20, out_dir: " + out_dir +
         ", log_every: 2, eval_every: 10, eval_batches: 2, checkpoint_every: 3, keep_last: "
         "10}\n"
         "device: cpu\n"
         "model: {kind: gpt, n_layer: 2, d_model: 32, n_head: 2, seq_len: 32, vocab: 256}\n"
         "data: {train: " +
         d + "/train.bin, val: " + d +
         "/val.bin, batch_size: 4}\n"
         "optimizer: {kind: adamw, lr: 2e-3, warmup: 3}\n"
         "topology:\n  emulate: true\n  tiers:\n"
         "    - {name: node, size: 2, bandwidth: 10Gbit, latency: 10us}\n"
         "    - {name: wan, bandwidth: 10Gbit, latency: 100us}\n"
         "sync: " +
         sync + "\n";
}

TrainResult run(const std::string& sync, const std::string& out_dir, const std::string& resume,
                std::string* log = nullptr) {
  Config c = parseConfig(configText(sync, out_dir), "resume.yaml", {.world = 4});
  TrainOptions o;
  o.resume = resume;
  o.overwrite = resume.empty();
  std::ostringstream out;
  TrainResult r = train(c, o, out);
  if (log) *log = out.str();
  return r;
}

std::string fileText(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The metrics lines of steps after `step` without their timing fields.
std::vector<std::string> lossesAfter(const fs::path& metrics, int64_t step) {
  std::vector<std::string> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    long long s = 0;
    if (std::sscanf(line.c_str(), "{\"step\":%lld", &s) != 1 || s <= step) continue;
    if (line.find("\"checkpoint\"") != std::string::npos) continue;
    const std::size_t cut = line.find(",\"tokens_per_s\"");
    out.push_back(line.substr(0, cut));  // step, loss, lr, grad norm (or the val loss line)
  }
  return out;
}

// Every rank's state file and rank 0's model of the final checkpoints are identical.
void expectSameFinal(const fs::path& a, const fs::path& b) {
  const fs::path fa = a / "checkpoints" / checkpointName(20),
                 fb = b / "checkpoints" / checkpointName(20);
  const std::string own = rankStateName(worldRank());
  ASSERT_TRUE(fs::exists(fb / own)) << fb;
  EXPECT_TRUE(fileText(fa / own) == fileText(fb / own)) << own << " differs";
  if (worldRank() == 0) {
    EXPECT_TRUE(fileText(fa / "model.safetensors") == fileText(fb / "model.safetensors"));
    const std::vector<std::string> la = lossesAfter(a / "metrics.jsonl", 9),
                                   lb = lossesAfter(b / "metrics.jsonl", 9);
    EXPECT_EQ(la.size(), 8u);  // steps 10..20 every 2, and the evals at 10 and 20
    EXPECT_EQ(la, lb);
  }
}

// Every tier's bytes counted on this rank during the run equal the strategy's plan (to
// rounding: both are sums of the same doubles, in another order).
void expectPlannedTraffic(const TrainResult& r) {
  std::map<std::string, double> tiers = r.planned_tier_bytes;
  for (const auto& [tier, bytes] : r.tier_bytes) tiers[tier] += 0;
  for (const auto& [tier, unused] : tiers) {
    const double counted = r.tier_bytes.count(tier) ? r.tier_bytes.at(tier) : 0;
    const double planned = r.planned_tier_bytes.count(tier) ? r.planned_tier_bytes.at(tier) : 0;
    EXPECT_NEAR(counted, planned, 1e-9 * std::max(1.0, planned))
        << "tier " << tier << " on rank " << worldRank();
  }
  EXPECT_GT(r.tier_bytes.at("node"), 0);
}

struct Method {
  const char* name;
  const char* sync;
};

class ResumeExact : public testing::TestWithParam<Method> {};

TEST_P(ResumeExact, ResumedRunEqualsUninterruptedOne) {
  if (!test::mpiAvailable() || worldSize() != 4) GTEST_SKIP() << "run under mpiexec -n 4";
  const Method m = GetParam();
  const fs::path a = shared().path() / (std::string(m.name) + "_a"),
                 b = shared().path() / (std::string(m.name) + "_b");
  const TrainResult full = run(m.sync, a.string(), "");
  EXPECT_EQ(full.steps, 20);
  expectPlannedTraffic(full);
  if (worldRank() == 0) {
    // `lowband plan` (no MPI, rank 0's view of a planned topology) predicts the same bytes.
    PlanOptions o;
    o.world = 4;
    o.step_time = 0.01;
    const Plan plan =
        makePlan(parseConfig(configText(m.sync, a.string()), "resume.yaml", {.world = 4}), o);
    for (const TierPlan& t : plan.tiers)
      EXPECT_NEAR(t.bytes_per_step * 20, full.tier_bytes.at(t.name),
                  1e-6 * std::max(1.0, t.bytes_per_step))
          << "plan of tier " << t.name;
    EXPECT_EQ(plan.replicas, 2);
    EXPECT_EQ(plan.memory.optimizer, static_cast<int64_t>(full.optimizer_state_bytes));
  }
  // Step 9: streaming (H 8, 2 fragments, overlap 2) has fragment 0's exchange of step 8 in
  // flight; co2 (H 6) has the exchange of step 6 in flight.
  const TrainResult resumed =
      run(m.sync, b.string(), (a / "checkpoints" / checkpointName(9)).string());
  EXPECT_EQ(resumed.resumed_from, 9);
  EXPECT_EQ(resumed.outer_steps, full.outer_steps);
  expectSameFinal(a, b);
}

INSTANTIATE_TEST_SUITE_P(
    Methods, ResumeExact,
    testing::Values(
        Method{"ddp", "{outer: {method: ddp}}"}, Method{"none", "{outer: {method: none}}"},
        Method{"local_sgd", "{outer: {method: local_sgd, H: 6}}"},
        Method{"diloco", "{outer: {method: diloco, H: 6}}"},
        Method{"streaming",
               "{outer: {method: streaming_diloco, H: 8, fragments: 2, overlap: 2, codec: fp4, "
               "error_feedback: true}}"},
        Method{"co2",
               "{outer: {method: co2, H: 6, penalty: gap, clip: {mode: value, threshold: 0.5}}}"},
        Method{"zero1_ddp", "{inner: {method: zero1}, outer: {method: ddp}}"},
        Method{"zero2_diloco", "{inner: {method: zero2}, outer: {method: diloco, H: 6}}"},
        // int8 gradients on the wan with error feedback: residuals carried through the resume.
        Method{"ddp_int8_ef",
               "{inner: {codec: {wan: int8}, error_feedback: true}, outer: {method: ddp}}"},
        Method{"zero2_int8_ef",
               "{inner: {method: zero2, codec: {wan: int8}, error_feedback: true}, outer: "
               "{method: ddp}}"},
        Method{"zero2_node_int8_ef",
               "{inner: {method: zero2, shard: {optimizer: node}, codec: {wan: int8}, "
               "error_feedback: true}, outer: {method: ddp}}"}),
    [](const testing::TestParamInfo<Method>& i) { return std::string(i.param.name); });

TEST(Resume, AutoPassesOverIncompleteAndCorruptCheckpoints) {
  if (!test::mpiAvailable() || worldSize() != 4) GTEST_SKIP() << "run under mpiexec -n 4";
  const std::string sync = "{outer: {method: diloco, H: 4}}";
  const fs::path a = shared().path() / "auto_a", b = shared().path() / "auto_b";
  run(sync, a.string(), "");
  run(sync, b.string(), "");  // b: the run that will be damaged and resumed
  const fs::path ck = b / "checkpoints";
  if (worldRank() == 0) {
    fs::remove(ck / checkpointName(20) / "COMPLETE");  // a job killed while writing it
    // One flipped byte in rank 2's state of step 18, one truncated file of step 15.
    std::fstream f(ck / checkpointName(18) / rankStateName(2),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
    f.close();
    fs::resize_file(ck / checkpointName(15) / rankStateName(1), 1000);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  std::string log;
  const TrainResult r = run(sync, b.string(), "auto", &log);
  EXPECT_EQ(r.resumed_from, 12);
  if (worldRank() == 0) {
    EXPECT_NE(log.find("skipping " + (ck / checkpointName(20)).string() + ": incomplete"),
              std::string::npos)
        << log;
    // Every rank's reason reaches rank 0, which names the rank and the file.
    EXPECT_NE(log.find("skipping " + (ck / checkpointName(18)).string() + ": rank 2: " +
                       rankStateName(2) + " fails its CRC-32 (corrupt)"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("skipping " + (ck / checkpointName(15)).string() + ": rank 1: " +
                       rankStateName(1) + " has 1000 bytes, the marker says"),
              std::string::npos)
        << log;
  }
  expectSameFinal(a, b);
  // keep_last 10 of the steps up to 20 (3, 6, ... 18, 20): all still there.
  if (worldRank() == 0) {
    EXPECT_TRUE(fs::exists(ck / checkpointName(3) / "COMPLETE"));
  }
}

TEST(Resume, RefusesCheckpointsOfAnotherLayoutOrDamagedOnes) {
  if (!test::mpiAvailable() || worldSize() != 4) GTEST_SKIP() << "run under mpiexec -n 4";
  const fs::path a = shared().path() / "layout_a";
  run("{outer: {method: local_sgd, H: 4}}", a.string(), "");
  const std::string step9 = (a / "checkpoints" / checkpointName(9)).string();
  try {
    run("{outer: {method: diloco, H: 4}}", (shared().path() / "layout_b").string(), step9);
    ADD_FAILURE() << "a diloco run resumed from a local_sgd checkpoint";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("another layout"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("outer local_sgd"), std::string::npos) << e.what();
  }
  if (worldRank() == 0) fs::resize_file(fs::path(step9) / "model.safetensors", 10);
  MPI_Barrier(MPI_COMM_WORLD);
  try {
    run("{outer: {method: local_sgd, H: 4}}", (shared().path() / "layout_c").string(), step9);
    ADD_FAILURE() << "resumed from a truncated checkpoint";
  } catch (const ConfigError& e) {
    if (worldRank() == 0) {
      EXPECT_NE(std::string(e.what()).find("model.safetensors has 10 bytes"), std::string::npos)
          << e.what();
    }
  }
}

// Two NIC islands of 2 ranks (hosts 0 and 2 on InfiniBand, 1 and 3 on Ethernet): replicas of 2
// ranks form inside each island, and only the outer method crosses between them; islands that
// would split a replica are refused.
TEST(Islands, ReplicasFormInsideNicIslands) {
  if (!test::mpiAvailable() || worldSize() != 4) GTEST_SKIP() << "run under mpiexec -n 4";
  std::string text =
      configText("{outer: {method: diloco, H: 4}}", (shared().path() / "islands").string());
  const std::string hosts =
      "  ranks_per_host: 1\n  hosts: [{match: \"host[02]\", nic: infiniband}, "
      "{match: \"*\", nic: ethernet}]\n";
  text.insert(text.find("  tiers:"), hosts);
  Config c = parseConfig(text, "islands.yaml", {.world = 4});
  c.run.steps = 4;
  std::ostringstream out;
  TrainOptions o;
  o.overwrite = true;
  const TrainResult r = train(c, o, out);
  std::vector<int> replica_of(4);
  MPI_Allgather(&r.replica, 1, MPI_INT, replica_of.data(), 1, MPI_INT, MPI_COMM_WORLD);
  EXPECT_EQ(replica_of[0], replica_of[2]);
  EXPECT_EQ(replica_of[1], replica_of[3]);
  EXPECT_NE(replica_of[0], replica_of[1]);
  if (worldRank() == 0) {
    EXPECT_NE(out.str().find("islands    infiniband: ranks 0,2 | ethernet: ranks 1,3"),
              std::string::npos)
        << out.str();
  }
  // One InfiniBand host and three Ethernet ones cannot hold replicas of 2.
  std::string bad = text;
  bad.replace(bad.find("host[02]"), 8, "host0");
  Config b = parseConfig(bad, "islands.yaml", {.world = 4});
  try {
    train(b, o, out);
    ADD_FAILURE() << "an island of 1 rank with replicas of 2 was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("island has 1 rank(s), not a multiple of the replica "
                                         "size 2"),
              std::string::npos)
        << e.what();
  }
}

TEST(Resume, KeepLastRemovesOlderCheckpoints) {
  if (!test::mpiAvailable() || worldSize() != 4) GTEST_SKIP() << "run under mpiexec -n 4";
  const fs::path a = shared().path() / "keep";
  Config c = parseConfig(configText("{outer: {method: ddp}}", a.string()), "keep.yaml",
                         {.overrides = {"run.keep_last=2"}, .world = 4});
  std::ostringstream out;
  TrainOptions o;
  o.overwrite = true;
  train(c, o, out);
  if (worldRank() != 0) return;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(a / "checkpoints"))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{checkpointName(18), checkpointName(20)}));
}

}  // namespace
}  // namespace lowband::launcher
