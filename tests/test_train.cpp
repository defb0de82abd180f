// `lowband train` end to end on small real data: the project's own text as byte tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>

#include "launcher/checkpoint.h"
#include "launcher/cli.h"
#include "launcher/config.h"
#include "launcher/trainer.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "runtime/state_dict.h"
#include "tests/test_support.h"

namespace lowband::launcher {
namespace {

namespace fs = std::filesystem;

// Byte shards (vocab 256) of real English and C++: the licence texts every Debian system ships
// (base-files) and three of this repository's sources. (README.md is left out: it changes with
// every feature, and the thresholds below would then move with it.)
void writeByteShards(const test::TempDir& dir) {
  // Licence texts Debian ships (base-files): real English that no change of ours alters (the
  // source files once used here made the losses move with every edit).
  std::string text;
  for (const char* f : {"GPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "GFDL-1.3", "MPL-2.0"}) {
    std::ifstream in(std::string("/usr/share/common-licenses/") + f);
    text.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_GT(text.size(), 50'000u);
  std::vector<uint16_t> tokens(text.begin(), text.end());
  for (uint16_t& t : tokens) t &= 0xff;
  const std::size_t split = tokens.size() * 9 / 10;
  nn::writeTokenShard((dir.path() / "train_000000.bin").string(),
                      std::span<const uint16_t>(tokens.data(), split));
  nn::writeTokenShard((dir.path() / "val_000000.bin").string(),
                      std::span<const uint16_t>(tokens.data() + split, tokens.size() - split));
}

std::string tinyConfig(const test::TempDir& dir, int steps) {
  const std::string d = dir.path().string();
  return "run: {name: tiny, seed: 7, steps: " + std::to_string(steps) + ", out_dir: " + d +
         "/run, log_every: 50, eval_every: 0, eval_batches: 4}\n"
         "device: cpu\n"
         "model: {kind: gpt, n_layer: 2, d_model: 64, n_head: 4, seq_len: 64, vocab: 256}\n"
         "data: {train: " +
         d + "/train_*.bin, val: " + d +
         "/val_*.bin, batch_size: 8}\n"
         "optimizer: {kind: adamw, lr: 3e-3, warmup: 20, schedule: cosine, grad_clip: 1.0}\n";
}

TEST(Train, TinyGptLearnsRealBytes) {
  test::TempDir dir;
  writeByteShards(dir);
  Config c = parseConfig(tinyConfig(dir, 300), "tiny.yaml");
  std::ostringstream log;
  TrainResult r = train(c, {}, log);
  EXPECT_EQ(r.steps, 300);
  EXPECT_EQ(r.skipped_steps, 0);
  // Uniform bytes give log(256) = 5.55 nats; 300 steps of a 2-layer model get well below.
  EXPECT_LT(r.final_loss, 2.8) << log.str();
  EXPECT_LT(r.val_loss, 3.0) << log.str();
  EXPECT_GT(r.tokens_per_s, 0);
  // metrics.jsonl: one line per log step, per evaluation and per checkpoint, stable keys.
  std::ifstream metrics(dir.path() / "run" / "metrics.jsonl");
  std::string line;
  int train_lines = 0, eval_lines = 0, checkpoint_lines = 0;
  while (std::getline(metrics, line)) {
    if (line.find("\"val_loss\"") != std::string::npos) {
      ++eval_lines;
    } else if (line.find("\"checkpoint\"") != std::string::npos) {
      EXPECT_EQ(line, "{\"step\":300,\"checkpoint\":\"" + r.last_checkpoint + "\"}");
      ++checkpoint_lines;
    } else {
      for (const char* key :
           {"\"step\":", "\"loss\":", "\"lr\":", "\"grad_norm\":", "\"tokens_per_s\":", "\"mfu\":",
            "\"elapsed_s\":", "\"tiers\":", "\"comm_hidden_fraction\":", "\"skipped_steps\":0"})
        EXPECT_NE(line.find(key), std::string::npos) << key << " in " << line;
      ++train_lines;
    }
  }
  EXPECT_EQ(train_lines, 6);
  EXPECT_EQ(eval_lines, 1);
  EXPECT_EQ(checkpoint_lines, 1);  // checkpoint_every 500 > steps: the one at the end
  EXPECT_TRUE(fs::exists(fs::path(r.last_checkpoint) / "COMPLETE"));
  EXPECT_TRUE(fs::exists(dir.path() / "run" / "config.yaml"));
  EXPECT_EQ(loadConfig((dir.path() / "run" / "config.yaml").string()).run.steps, 300);
}

TEST(Train, SameSeedSameLosses) {
  test::TempDir dir;
  writeByteShards(dir);
  auto run = [&](const char* out) {
    Config c = parseConfig(tinyConfig(dir, 20), "tiny.yaml",
                           {{std::string("run.out_dir=") + (dir.path() / out).string()}});
    std::ostringstream log;
    return train(c, {}, log).final_loss;
  };
  EXPECT_EQ(run("a"), run("b"));
}

// The checkpoint's model.safetensors, read by PyTorch (scripts/load_safetensors.py), holds every
// parameter under its name and shape with the values of the run's final parameters.
TEST(Train, CheckpointModelLoadsInPyTorch) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  test::TempDir dir;
  writeByteShards(dir);
  Config c = parseConfig(tinyConfig(dir, 20), "tiny.yaml");
  std::ostringstream log;
  const TrainResult r = train(c, {}, log);
  ASSERT_FALSE(r.last_checkpoint.empty());
  const fs::path listing = dir.path() / "tensors.txt";
  const std::string command = "/usr/bin/python3 " + test::sourceDir() +
                              "/scripts/load_safetensors.py " + r.last_checkpoint +
                              "/model.safetensors >" + listing.string();
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  // The reference: the final parameters from rank 0's state, cut by the model's own layout.
  const std::vector<uint8_t> bytes =
      readWholeFile(fs::path(r.last_checkpoint) / rankStateName(0), 1 << 30);
  const runtime::StateDict state = runtime::StateDict::parse(bytes, "rank 0 state");
  nn::Gpt gpt({c.model.n_layer, c.model.d_model, c.model.n_head, c.model.seq_len, c.model.vocab},
              runtime::Device::cpu());
  const nn::ParamStore& params = gpt.params();
  std::vector<float> theta(static_cast<std::size_t>(params.size()));
  state.getFloats("model.params", theta.data(), params.size());
  std::map<std::string, std::pair<std::string, double>> expected;
  for (const nn::ParamInfo& p : params.infos()) {
    std::string shape;
    for (int i = 0; i < p.shape.ndim(); ++i) shape += (i ? "x" : "") + std::to_string(p.shape[i]);
    double sum = 0;
    for (int64_t i = 0; i < p.numel; ++i) sum += theta[p.offset + i];
    expected[p.name] = {shape, sum};
  }
  std::ifstream in(listing);
  std::string name, shape;
  double sum = 0;
  std::size_t seen = 0;
  while (in >> name >> shape >> sum) {
    ++seen;
    ASSERT_TRUE(expected.count(name)) << "unexpected tensor " << name;
    EXPECT_EQ(shape, expected[name].first) << name;
    EXPECT_NEAR(sum, expected[name].second, 1e-6 * (1 + std::fabs(sum))) << name;
  }
  EXPECT_EQ(seen, expected.size());
}

struct CliRun {
  int status;
  std::string out, err;
};

CliRun cli(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  int status = runCli(args, out, err);
  return {status, out.str(), err.str()};
}

TEST(Train, ExistingRunIsNotOverwrittenWithoutAsking) {
  test::TempDir dir;
  writeByteShards(dir);
  const std::string config = dir.write("tiny.yaml", tinyConfig(dir, 2));
  ASSERT_EQ(cli({"train", config}).status, kExitOk);
  const fs::path metrics = dir.path() / "run" / "metrics.jsonl";
  const auto size = fs::file_size(metrics);
  std::ofstream(dir.path() / "run" / "notes.txt") << "mine";
  CliRun again = cli({"train", config});
  EXPECT_EQ(again.status, kExitBadInput);
  EXPECT_NE(again.err.find("already holds a run"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
  EXPECT_EQ(fs::file_size(metrics), size);  // untouched
  EXPECT_EQ(cli({"train", config, "--overwrite", "--set", "run.steps=1"}).status, kExitOk);
  EXPECT_TRUE(fs::exists(dir.path() / "run" / "notes.txt"));  // only our files are replaced
}

// Settings this version cannot run are refused with the key, never silently replaced.
TEST(Train, UnbuiltSettingsAreRefusedByKey) {
  test::TempDir dir;
  writeByteShards(dir);
  const std::string config = dir.write("tiny.yaml", tinyConfig(dir, 2));
  for (const auto& [set, key] :
       std::vector<std::pair<std::string, std::string>>{{"comm.backend=nccl", "comm.backend"}}) {
    CliRun r = cli({"train", config, "--dry-run", "--set", "sync.inner.method=zero2", "--set", set,
                    "--set", "device=auto"});
    EXPECT_EQ(r.status, kExitBadInput) << set;
    EXPECT_NE(r.err.find(key + ": "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not"), std::string::npos) << r.err;
  }
}

TEST(Train, BadDataIsOneClearError) {
  test::TempDir dir;
  writeByteShards(dir);
  const std::string config = dir.write("tiny.yaml", tinyConfig(dir, 30));
  // No files match the glob.
  CliRun missing =
      cli({"train", config, "--set", "data.train=" + dir.path().string() + "/nope_*.bin"});
  EXPECT_EQ(missing.status, kExitBadInput);
  EXPECT_NE(missing.err.find("nope_*.bin"), std::string::npos) << missing.err;
  // Tokens beyond the vocabulary: the shard holds bytes up to 255.
  CliRun vocab = cli({"train", config, "--set", "model.vocab=64"});
  EXPECT_EQ(vocab.status, kExitBadInput);
  EXPECT_NE(vocab.err.find("train_000000.bin"), std::string::npos) << vocab.err;
  EXPECT_NE(vocab.err.find(">= vocab 64"), std::string::npos) << vocab.err;
  // A corrupt shard: wrong magic.
  {
    std::fstream f(dir.path() / "val_000000.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.write("XXXX", 4);
  }
  CliRun corrupt = cli({"train", config});
  EXPECT_EQ(corrupt.status, kExitBadInput);
  EXPECT_NE(corrupt.err.find("val_000000.bin"), std::string::npos) << corrupt.err;
  EXPECT_EQ(std::count(corrupt.err.begin(), corrupt.err.end(), '\n'), 1) << corrupt.err;
  EXPECT_FALSE(fs::exists(dir.path() / "run" / "metrics.jsonl"));  // nothing was written
}

TEST(Train, DivergenceSkipsStepsThenAborts) {
  test::TempDir dir;
  writeByteShards(dir);
  const std::string config = dir.write("tiny.yaml", tinyConfig(dir, 30));
  // An absurd learning rate without clipping blows the weights up after the first update.
  CliRun r = cli({"train", config, "--set", "optimizer.lr=1e30", "--set", "optimizer.warmup=0",
                  "--set", "optimizer.grad_clip=0", "--set", "run.max_bad_steps=3"});
  EXPECT_EQ(r.status, kExitRuntime) << r.err;
  EXPECT_NE(r.out.find("skipped, loss is not finite"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("training diverged: 3 steps in a row"), std::string::npos) << r.err;
}

// ---- resume checks what it loads ----

std::string fileText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Rewrites rank 0's state of checkpoint `dir` through `edit`, with a valid CRC and a marker
// that lists the new size and CRC: a crafted state that passes every checksum.
void craftState(const fs::path& dir, const std::function<void(runtime::StateDict&)>& edit) {
  const fs::path path = dir / rankStateName(0);
  runtime::StateDict state = runtime::StateDict::parse(readWholeFile(path, 1 << 30), "state");
  edit(state);
  const std::vector<uint8_t> bytes = state.serialize();
  writeFileAtomic(path, bytes);
  CheckpointMarker marker = CheckpointMarker::parse(fileText(dir / "COMPLETE"), "marker");
  for (CheckpointMarker::File& f : marker.files)
    if (f.name == rankStateName(0)) {
      f.bytes = bytes.size();
      f.crc = runtime::crc32(bytes);
    }
  const std::string text = marker.text();
  writeFileAtomic(dir / "COMPLETE", {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

// One 20-step run with checkpoints at 10 and 20, trained once; each test resumes a copy of it.
struct ResumeFixture : ::testing::Test {
  static inline std::unique_ptr<test::TempDir> shared;
  test::TempDir dir;
  std::string config;
  fs::path run, step10, step20;

  static std::string configFor(const fs::path& out_dir) {
    std::string c = tinyConfig(*shared, 20);
    const std::string from = shared->path().string() + "/run,";
    c.replace(c.find(from), from.size(), out_dir.string() + ",");
    return c;
  }
  static void SetUpTestSuite() {
    shared = std::make_unique<test::TempDir>();
    writeByteShards(*shared);
    const std::string config = shared->write("tiny.yaml", configFor(shared->path() / "run"));
    ASSERT_EQ(cli({"train", config, "--set", "run.checkpoint_every=10", "--set", "run.log_every=5",
                   "--set", "run.keep_last=3"})
                  .status,
              kExitOk);
  }
  static void TearDownTestSuite() { shared.reset(); }
  void SetUp() override {
    run = dir.path() / "run";
    fs::copy(shared->path() / "run", run, fs::copy_options::recursive);
    config = dir.write("tiny.yaml", configFor(run));
    step10 = run / "checkpoints" / checkpointName(10);
    step20 = run / "checkpoints" / checkpointName(20);
    ASSERT_TRUE(fs::exists(step10 / "COMPLETE") && fs::exists(step20 / "COMPLETE"));
  }
};

// A state whose step is not its marker's (valid CRC, valid marker) is skipped for the older
// checkpoint by --resume auto and refused by name; the metrics of steps up to the older one stay.
TEST_F(ResumeFixture, AStateWhoseStepIsNotItsMarkersIsNotTrusted) {
  craftState(step20, [](runtime::StateDict& s) { s.putValue<int64_t>("trainer.step", -5); });
  CliRun named = cli({"train", config, "--resume", step20.string()});
  EXPECT_EQ(named.status, kExitBadInput);
  EXPECT_NE(named.err.find("trainer.step is -5, its marker's step is 20"), std::string::npos)
      << named.err;
  CliRun r = cli({"train", config, "--resume", "auto", "--set", "run.log_every=5"});
  EXPECT_EQ(r.status, kExitOk) << r.err;
  EXPECT_NE(r.out.find("resume: skipping " + step20.string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("resume: from " + step10.string() + " (step 10)"), std::string::npos);
  // Every step reported once, in order: 5, 10, then the resumed 15, 20.
  const std::string metrics = fileText(run / "metrics.jsonl");
  std::vector<long long> steps;
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    long long s = 0;
    if (line.find("\"loss\"") != std::string::npos &&
        std::sscanf(line.c_str(), "{\"step\":%lld", &s) == 1)
      steps.push_back(s);
  }
  EXPECT_EQ(steps, (std::vector<long long>{5, 10, 15, 20})) << metrics;
}

TEST_F(ResumeFixture, ANegativeUpdateCountIsRefusedNotTrainedOn) {
  craftState(step20, [](runtime::StateDict& s) { s.putValue<int64_t>("optimizer.updates", -1); });
  CliRun r = cli({"train", config, "--resume", step20.string(), "--set", "run.steps=30"});
  EXPECT_EQ(r.status, kExitBadInput);
  EXPECT_NE(r.err.find("optimizer.updates is -1, expected 0..20"), std::string::npos) << r.err;
}

// A copy renamed to a later step is not taken as the newest, and is not deleted.
TEST_F(ResumeFixture, ARenamedCopyIsNotTheNewest) {
  const fs::path fake = run / "checkpoints" / "step_99999999";
  fs::copy(step10, fake, fs::copy_options::recursive);
  CliRun r = cli({"train", config, "--resume", "auto", "--set", "run.steps=30"});
  EXPECT_EQ(r.status, kExitOk) << r.err;
  EXPECT_NE(r.out.find("its marker is for step 10, not its name's 99999999"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("resume: from " + step20.string() + " (step 20)"), std::string::npos);
  EXPECT_TRUE(fs::exists(fake / "COMPLETE"));
}

// Files far larger than their marker says are skipped by their size, never read into memory.
TEST_F(ResumeFixture, HugeFilesAreSkippedBySizeNotRead) {
  fs::resize_file(step20 / rankStateName(0), 100ull << 30);  // sparse: no disk used
  fs::resize_file(step10 / "model.safetensors", 3ull << 30);
  CliRun r = cli({"train", config, "--resume", "auto", "--set", "run.steps=21"});
  EXPECT_EQ(r.status, kExitOk) << r.err;
  EXPECT_NE(r.out.find(rankStateName(0) + " has 107374182400 bytes, the marker says"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("resume: no complete checkpoint"), std::string::npos) << r.out;
}

TEST_F(ResumeFixture, StepsBelowTheCheckpointAreRefusedAndAFinishedRunIsLeftAsItIs) {
  const std::string metrics = fileText(run / "metrics.jsonl");
  CliRun below = cli({"train", config, "--resume", "auto", "--set", "run.steps=15"});
  EXPECT_EQ(below.status, kExitBadInput);
  EXPECT_NE(below.err.find("run.steps: 15 is below the step 20 of"), std::string::npos)
      << below.err;
  CliRun finished = cli({"train", config, "--resume", "auto"});
  EXPECT_EQ(finished.status, kExitOk) << finished.err;
  EXPECT_NE(finished.out.find("the run is finished, nothing to train"), std::string::npos)
      << finished.out;
  EXPECT_EQ(fileText(run / "metrics.jsonl"), metrics);  // no line added, none removed
  EXPECT_TRUE(fs::exists(step20 / "COMPLETE"));
}

TEST_F(ResumeFixture, ChangedSettingsAreNamed) {
  CliRun r = cli({"train", config, "--resume", step10.string(), "--set", "run.seed=99", "--set",
                  "data.batch_size=4", "--set", "run.log_every=7"});
  EXPECT_EQ(r.status, kExitOk) << r.err;
  EXPECT_NE(r.out.find("resume: warning: settings differ from the checkpoint's run"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("run.seed 7 -> 99"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("data.batch_size 8 -> 4"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("log_every"), std::string::npos) << r.out;  // reporting only
}

TEST_F(ResumeFixture, ResumeArgumentsThatAreNotACheckpointSayWhatTheyAre) {
  const std::string metrics = fileText(run / "metrics.jsonl");
  CliRun both = cli({"train", config, "--resume", "auto", "--overwrite"});
  EXPECT_EQ(both.status, kExitBadInput);
  EXPECT_NE(both.err.find("--overwrite and --resume auto exclude each other"), std::string::npos)
      << both.err;
  CliRun missing = cli({"train", config, "--resume", (run / "nope").string()});
  EXPECT_EQ(missing.status, kExitBadInput);
  EXPECT_NE(missing.err.find("no such directory"), std::string::npos) << missing.err;
  CliRun file = cli({"train", config, "--resume", (run / "metrics.jsonl").string()});
  EXPECT_EQ(file.status, kExitBadInput);
  EXPECT_NE(file.err.find("it is a file, not a checkpoint directory"), std::string::npos)
      << file.err;
  CliRun run_dir = cli({"train", config, "--resume", run.string()});
  EXPECT_EQ(run_dir.status, kExitBadInput);
  EXPECT_NE(run_dir.err.find("it is a run directory"), std::string::npos) << run_dir.err;
  EXPECT_EQ(fileText(run / "metrics.jsonl"), metrics);
}

TEST(Train, DryRunTrainsNothing) {
  test::TempDir dir;
  writeByteShards(dir);
  const std::string config = dir.write("tiny.yaml", tinyConfig(dir, 2));
  CliRun r = cli({"train", config, "--dry-run"});
  EXPECT_EQ(r.status, kExitOk) << r.err;
  EXPECT_NE(r.out.find("\nmodel      gpt 2 layers"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir.path() / "run"));
}

}  // namespace
}  // namespace lowband::launcher
