// Config loading: a table of bad configs (each must exit 1 naming the key path and the line),
// --set overrides, the resolved YAML round trip, and every shipped config.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "launcher/cli.h"
#include "launcher/config.h"
#include "tests/test_support.h"

namespace lowband::launcher {
namespace {

struct BadConfig {
  const char* name;
  const char* yaml;
  const char* key_path;                // must appear in the message
  const char* where;                   // ":LINE:" or "--set ..." that must appear
  const char* detail;                  // another fragment the message must carry
  std::vector<std::string> args = {};  // extra CLI arguments
};

// A valid config; cases below change one thing each. Line numbers are 1-based.
constexpr const char* kGood = R"(run: {name: t, steps: 1000}
model: {kind: gpt, n_layer: 4, d_model: 64, n_head: 4, seq_len: 32, vocab: 256}
data: {train: d/train_*.bin, val: d/val_*.bin, batch_size: 4}
topology:
  tiers:
    - {name: node, size: 2, bandwidth: 100Gbit, latency: 5us}
    - {name: wan, size: rest, bandwidth: 1Gbit, latency: 20ms}
sync:
  outer: {method: diloco, tier: wan, H: 20}
)";

const std::vector<BadConfig>& badConfigs() {
  static const std::vector<BadConfig> cases = {
      {"unknown_top_level", "run: {steps: 10}\nmodle: {kind: gpt}\n", "modle",
       ":2:", "did you mean 'model'"},
      {"misspelled_run_key", "run:\n  name: x\n  sedd: 5\nmodel: {kind: gpt}\ndata: {train: a}\n",
       "run.sedd", ":3:", "did you mean 'seed'"},
      {"misspelled_model_key", "model:\n  kind: gpt\n  n_layers: 4\ndata: {train: a}\n",
       "model.n_layers", ":3:", "did you mean 'n_layer'"},
      {"steps_not_integer", "run:\n  steps: abc\nmodel: {kind: gpt}\ndata: {train: a}\n",
       "run.steps", ":2:", "expected an integer, got 'abc'"},
      {"steps_fractional", "model: {kind: gpt}\ndata: {train: a}\nrun: {steps: 10.5}\n",
       "run.steps", ":3:", "expected an integer"},
      {"steps_zero", "model: {kind: gpt}\ndata: {train: a}\nrun: {steps: 0}\n", "run.steps",
       ":3:", "must be >= 1"},
      {"lr_negative", "model: {kind: gpt}\ndata: {train: a}\noptimizer:\n  lr: -1\n",
       "optimizer.lr", ":4:", "must be > 0"},
      {"lr_not_number", "model: {kind: gpt}\ndata: {train: a}\noptimizer:\n  lr: fast\n",
       "optimizer.lr", ":4:", "expected a number"},
      {"betas_one_value", "model: {kind: gpt}\ndata: {train: a}\noptimizer: {betas: [0.9]}\n",
       "optimizer.betas", ":3:", "expected a list of 2 values"},
      {"beta_out_of_range",
       "model: {kind: gpt}\ndata: {train: a}\noptimizer:\n  betas: [0.9, 1.5]\n",
       "optimizer.betas[1]", ":4:", "must be < 1"},
      {"schedule_typo", "model: {kind: gpt}\ndata: {train: a}\noptimizer: {schedule: cosin}\n",
       "optimizer.schedule", ":3:", "did you mean 'cosine'"},
      {"device_unknown", "model: {kind: gpt}\ndata: {train: a}\ndevice: gpu\n", "device",
       ":3:", "expected one of auto, cpu, cuda"},
      {"precision_unknown", "model:\n  kind: gpt\n  precision: fp16\ndata: {train: a}\n",
       "model.precision", ":3:", "expected one of fp32, tf32, bf16"},
      {"precision_bf16_mlp",
       "model: {kind: mlp, precision: bf16}\ndata: {train: a, train_labels: b}\n",
       "model.precision", ":1:", "bf16 is implemented for gpt models"},
      {"model_missing", "run: {steps: 10}\ndata: {train: a}\n", "model",
       ":1:", "missing required key"},
      {"model_kind_missing", "data: {train: a}\nmodel:\n  n_layer: 2\n", "model.kind",
       ":3:", "missing required key"},
      {"data_train_missing", "model: {kind: gpt}\ndata:\n  batch_size: 4\n", "data.train",
       ":3:", "missing required key"},
      {"bandwidth_bad_unit",
       "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  tiers:\n"
       "    - {name: node, bandwidth: 100Mbits, latency: 5us}\n",
       "topology.tiers[0].bandwidth", ":5:", "unknown unit 'Mbits'"},
      {"latency_bad_unit",
       "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  tiers:\n"
       "    - {name: node, bandwidth: 1Gbit, latency: 10 parsecs}\n",
       "topology.tiers[0].latency", ":5:", "unknown unit 'parsecs'"},
      {"bandwidth_ambiguous",
       "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  tiers:\n"
       "    - {name: node, size: 2, bandwidth: 1Gbit, latency: 1us}\n"
       "    - {name: wan, bandwidth: 1Mb, latency: 10ms}\n",
       "topology.tiers[1].bandwidth", ":6:", "ambiguous unit 'Mb'"},
      {"bucket_is_rate", "model: {kind: gpt}\ndata: {train: a}\ncomm:\n  bucket: 25MB/s\n",
       "comm.bucket", ":4:", "unknown unit"},
      {"timeout_negative", "model: {kind: gpt}\ndata: {train: a}\ncomm:\n  timeout: -5s\n",
       "comm.timeout", ":4:", "non-negative"},
      {"tier_bandwidth_missing",
       "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  tiers:\n    - {name: node, latency: "
       "1us}\n",
       "topology.tiers[0].bandwidth", ":5:", "missing required key"},
      {"tier_key_typo",
       "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  tiers:\n"
       "    - {name: node, bandwith: 1Gbit, latency: 1us}\n",
       "topology.tiers[0].bandwith", ":5:", "did you mean 'bandwidth'"},
      {"tier_name_twice",
       "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  tiers:\n"
       "    - {name: node, size: 2, bandwidth: 1Gbit, latency: 1us}\n"
       "    - {name: node, bandwidth: 1Gbit, latency: 1us}\n",
       "topology.tiers[1].name", ":6:", "used twice"},
      {"rest_not_last",
       "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  tiers:\n"
       "    - {name: node, size: rest, bandwidth: 1Gbit, latency: 1us}\n"
       "    - {name: wan, size: 2, bandwidth: 1Gbit, latency: 1us}\n",
       "topology.tiers[0].size", ":5:", "only the last"},
      {"tiers_not_list", "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  tiers: node\n",
       "topology.tiers", ":4:", "expected a list of maps"},
      {"outer_tier_unknown", "model: {kind: gpt}\ndata: {train: a}\nsync:\n  outer: {tier: wna}\n",
       "sync.outer.tier", ":4:", "unknown tier 'wna'"},
      {"outer_method_prefix",
       "model: {kind: gpt}\ndata: {train: a}\nsync:\n  outer:\n    method: streaming\n",
       "sync.outer.method", ":5:", "did you mean 'streaming_diloco'"},
      {"fragments_exceed_layers",
       "model: {kind: gpt, n_layer: 6}\ndata: {train: a}\nsync:\n  outer:\n"
       "    method: streaming_diloco\n    fragments: 8\n",
       "sync.outer.fragments", ":6:", "> the model's 6 layers"},
      {"overlap_too_large",
       "model: {kind: gpt, n_layer: 8}\ndata: {train: a}\nsync:\n  outer:\n"
       "    method: streaming_diloco\n    H: 100\n    fragments: 4\n    overlap: 25\n",
       "sync.outer.overlap", ":8:", "must be < H/fragments = 100/4"},
      {"heads_do_not_divide",
       "data: {train: a}\nmodel:\n  kind: gpt\n  d_model: 256\n  n_head: 7\n", "model.n_head",
       ":5:", "not divisible by n_head 7"},
      {"world_not_divisible",
       kGood,
       "topology.tiers[1].size",
       ":7:",
       "do not divide the world of 7 ranks",
       {"--world", "7"}},
      {"shard_unknown_tier",
       "model: {kind: gpt}\ndata: {train: a}\nsync:\n  inner:\n    method: zero2\n"
       "    shard: {grads: rack}\n",
       "sync.inner.shard.grads", ":6:", "unknown tier 'rack'"},
      {"shard_outside_replica",
       kGood,
       "sync.inner.shard.optimizer",
       "--set",
       "inner sharding stays inside a replica",
       {"--set", "sync.inner.method=zero1", "--set", "sync.inner.shard.optimizer=wan"}},
      {"zero1_gradient_shards",
       kGood,
       "sync.inner.shard.grads",
       "--set",
       "gradient shards are zero2's",
       {"--set", "sync.inner.method=zero1", "--set", "sync.inner.shard.optimizer=node", "--set",
        "sync.inner.shard.grads=replica"}},
      {"gradients_coarser_than_optimizer",
       kGood,
       "sync.inner.shard.grads",
       "--set",
       "coarser than the optimizer's 'node'",
       {"--set", "sync.inner.method=zero2", "--set", "sync.inner.shard.optimizer=node", "--set",
        "sync.inner.shard.grads=replica"}},
      {"secondary_params_without_zero3",
       kGood,
       "sync.inner.shard.secondary_params",
       "--set",
       "keep whole parameters on every rank",
       {"--set", "sync.inner.method=zero2", "--set", "sync.inner.shard.secondary_params=node"}},
      {"gradient_codec_outside_replica",
       kGood,
       "sync.inner.codec.wan",
       "--set",
       "carries only the outer method",
       {"--set", "sync.inner.codec.wan=int8"}},
      {"replica_crosses_wan",
       "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  tiers:\n"
       "    - {name: node, size: 2, bandwidth: 10Gbit, latency: 5us, nic: shm}\n"
       "    - {name: site, size: 2, bandwidth: 1Gbit, latency: 5ms, nic: wan}\n"
       "    - {name: world, size: rest, bandwidth: 1Gbit, latency: 20ms, nic: wan}\nsync:\n  "
       "outer: {method: diloco, tier: world}\n",
       "sync.outer.tier", ":9:", "replicas span tier 'site' (nic wan)"},
      {"section_not_map", "model: {kind: gpt}\ndata: {train: a}\nrun: [1, 2]\n", "run",
       ":3:", "expected a map of keys"},
      {"yaml_syntax", "model: {kind: gpt\ndata: {train: a}\n", "YAML syntax error", ":", ""},
      {"duplicate_key", "model: {kind: gpt}\ndata: {train: a}\nrun:\n  seed: 1\n  seed: 2\n",
       "run.seed", ":5:", "duplicate key"},
      {"nccl_on_cpu", "model: {kind: gpt}\ndata: {train: a}\ndevice: cpu\ncomm: {backend: nccl}\n",
       "comm.backend", ":4:", "use mpi or auto"},
      {"mlp_without_labels", "model: {kind: mlp}\ndata:\n  train: images.gz\n", "data.train_labels",
       ":3:", "required when model.kind is mlp"},
      {"inner_codec_unknown",
       "model: {kind: gpt}\ndata: {train: a}\nsync:\n  inner:\n    codec: {world: fp5}\n",
       "sync.inner.codec.world", ":5:", "expected one of none, bf16"},
      {"inner_codec_tier_unknown",
       "model: {kind: gpt}\ndata: {train: a}\nsync:\n  inner:\n    codec: {wan: int8}\n",
       "sync.inner.codec.wan", ":5:", "unknown tier 'wan'"},
      {"vocab_too_large", "data: {train: a}\nmodel:\n  kind: gpt\n  vocab: 70000\n", "model.vocab",
       ":4:", "must be <= 65536"},
      {"alpha_out_of_range",
       "model: {kind: gpt}\ndata: {train: a}\nsync:\n  outer: {method: streaming_diloco, alpha: "
       "1.5}\n",
       "sync.outer.alpha", ":4:", "must be <= 1"},
      {"clip_mode_unknown",
       "model: {kind: gpt}\ndata: {train: a}\nsync:\n  outer:\n    method: co2\n"
       "    clip: {mode: max}\n",
       "sync.outer.clip.mode", ":6:", "expected one of off, value, norm"},
      {"overlap_per_replica_too_large",
       "model: {kind: gpt, n_layer: 4}\ndata: {train: a}\nsync:\n  outer:\n"
       "    method: streaming_diloco\n    H: 20\n    fragments: 2\n"
       "    overlap_per_replica: [1, 12]\n",
       "sync.outer.overlap_per_replica[1]", ":8:", "must be < H/fragments"},
      {"batch_size_zero", "model: {kind: gpt}\ndata:\n  train: a\n  batch_size: 0\n",
       "data.batch_size", ":4:", "must be >= 1"},
      {"bool_wrong", "model: {kind: gpt}\ndata: {train: a}\ntopology:\n  emulate: maybe\n",
       "topology.emulate", ":4:", "expected true or false"},
      {"set_unknown_key",
       kGood,
       "run.stepz",
       "--set run.stepz=5",
       "did you mean 'steps'",
       {"--set", "run.stepz=5"}},
      {"set_bad_value",
       kGood,
       "run.steps",
       "--set run.steps=-3",
       "must be >= 1",
       {"--set", "run.steps=-3"}},
      {"set_no_equals",
       kGood,
       "expected key.path=value",
       "--set run.steps",
       "",
       {"--set", "run.steps"}},
      {"set_index_out_of_range",
       kGood,
       "topology.tiers has 2 items",
       "--set",
       "out of range",
       {"--set", "topology.tiers.5.bandwidth=1Gbit"}},
      // A --set whose key the file does not have is still named in the error.
      {"set_index_into_missing_list",
       kGood,
       "optimizer.betas",
       "--set optimizer.betas.0=1.5",
       "has no item 0",
       {"--set", "optimizer.betas.0=1.5"}},
      {"set_index_into_missing_tiers",
       "model: {kind: gpt}\ndata: {train: a}\n",
       "topology.tiers",
       "--set topology.tiers.5.bandwidth=1Gbit",
       "has no item 5",
       {"--set", "topology.tiers.5.bandwidth=1Gbit"}},
      {"set_unknown_section",
       kGood,
       "foo",
       "--set foo.bar=1",
       "unknown key",
       {"--set", "foo.bar=1"}},
      {"set_unknown_key_in_new_section",
       kGood,
       "comm.timout",
       "--set comm.timout=5s",
       "did you mean 'timeout'",
       {"--set", "comm.bucket=1MiB", "--set", "comm.timout=5s"}},
      {"set_empty_path_component",
       kGood,
       "run..steps",
       "--set run..steps=5",
       "empty name",
       {"--set", "run..steps=5"}},
      {"set_leading_dot",
       kGood,
       ".run.steps",
       "--set .run.steps=5",
       "empty name",
       {"--set", ".run.steps=5"}},
      {"set_trailing_dot",
       kGood,
       "run.steps.",
       "--set run.steps.=5",
       "empty name",
       {"--set", "run.steps.=5"}},
      {"set_bad_index",
       kGood,
       "topology.tiers[1]x",
       "--set topology.tiers[1]x=5",
       "expected key.path",
       {"--set", "topology.tiers[1]x=5"}},
      {"second_document", "model: {kind: gpt}\ndata: {train: a}\n---\nrun: {steps: 5}\n",
       "second YAML document", ":4:", "a config is one document"},
      {"run_name_is_a_path", "model: {kind: gpt}\ndata: {train: a}\nrun: {name: ../../x}\n",
       "run.name", ":3:", "expected a plain name"},
      {"run_name_hidden", "model: {kind: gpt}\ndata: {train: a}\nrun:\n  name: .x\n", "run.name",
       ":4:", "not starting with '.'"},
      {"run_name_set_with_slash",
       kGood,
       "run.name",
       "--set run.name=a/b",
       "expected a plain name",
       {"--set", "run.name=a/b"}},
      {"timeout_too_short", "model: {kind: gpt}\ndata: {train: a}\ncomm:\n  timeout: 1ms\n",
       "comm.timeout", ":4:", "1ms must be >= 1s"},
      {"timeout_too_short_set",
       kGood,
       "comm.timeout",
       "--set comm.timeout=500ms",
       "must be >= 1s",
       {"--set", "comm.bucket=1MiB", "--set", "comm.timeout=500ms"}},
  };
  return cases;
}

class BadConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, ExitsOneWithKeyPathAndLine) {
  const BadConfig& c = GetParam();
  test::TempDir dir;
  std::string file = dir.write("exp.yaml", c.yaml);
  std::vector<std::string> args = {"validate", file};
  args.insert(args.end(), c.args.begin(), c.args.end());
  std::ostringstream out, err;
  int status = runCli(args, out, err);
  const std::string message = err.str();
  EXPECT_EQ(status, kExitBadInput) << message;
  EXPECT_EQ(message.rfind("error: " + file, 0), 0u) << message;  // starts with the file name
  EXPECT_NE(message.find(c.key_path), std::string::npos) << message;
  EXPECT_NE(message.find(c.where), std::string::npos) << message;
  EXPECT_NE(message.find(c.detail), std::string::npos) << message;
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 1) << "one line: " << message;
  EXPECT_EQ(out.str(), "");
}

INSTANTIATE_TEST_SUITE_P(Config, BadConfigTest, ::testing::ValuesIn(badConfigs()),
                         [](const auto& info) { return std::string(info.param.name); });

// yaml-cpp stops at a NUL byte (the fuzzer's input read as an empty config, and made LoadAll
// loop forever): refused where it is.
TEST(Config, NulBytesAreRefusedWhereTheyAre) {
  const std::string text = std::string("run: {steps: 10}\nmodel: {kind: gpt}\ndata: {tr") + '\0' +
                           "ain: a}\n---\nx: 1\n";
  try {
    parseConfig(text, "nul.yaml");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "nul.yaml:3:10: a NUL byte; a config is YAML text");
  }
}

TEST(Config, AtLeastThirtyBadConfigsAreCovered) { EXPECT_GE(badConfigs().size(), 30u); }

TEST(Config, DefaultsAndResolvedValues) {
  Config c = parseConfig(kGood, "good.yaml");
  EXPECT_EQ(c.run.steps, 1000);
  EXPECT_EQ(c.run.seed, 1234);
  EXPECT_EQ(c.run.out_dir, "runs/t");
  EXPECT_EQ(c.model.n_layer, 4);
  EXPECT_EQ(c.optimizer.kind, OptimizerKind::AdamW);
  EXPECT_DOUBLE_EQ(c.optimizer.betas[1], 0.95);
  ASSERT_EQ(c.topology.tiers.size(), 2u);
  EXPECT_EQ(c.topology.tiers[0].size.ranks, 2);
  EXPECT_TRUE(c.topology.tiers[1].size.isRest());
  EXPECT_DOUBLE_EQ(c.topology.tiers[1].bandwidth.bits(), 1e9);
  EXPECT_DOUBLE_EQ(c.topology.tiers[1].latency.seconds, 0.02);
  EXPECT_EQ(c.comm.bucket.bytes, 25'000'000u);
  EXPECT_DOUBLE_EQ(c.comm.timeout.seconds, 300);
  EXPECT_EQ(c.sync.outer.method, OuterMethod::Diloco);
  EXPECT_DOUBLE_EQ(c.sync.outer.optimizer.lr, 0.7);
  EXPECT_DOUBLE_EQ(c.sync.outer.optimizer.momentum, 0.9);
  EXPECT_EQ(c.sync.outer.codec, CodecKind::None);
  EXPECT_EQ(c.locations.at("run.steps"), "good.yaml:1:16");
}

TEST(Config, StreamingDefaultsDependOnTheMethod) {
  Config c = parseConfig(kGood, "good.yaml", {{"sync.outer.method=streaming_diloco"}});
  EXPECT_EQ(c.sync.outer.overlap, 1);
  EXPECT_EQ(c.sync.outer.codec, CodecKind::Fp4);
  EXPECT_EQ(c.sync.outer.resolvedFragments(c.model), 2);  // 4 blocks, about 3 per fragment
  EXPECT_DOUBLE_EQ(c.sync.outer.alpha, 0.5);
  Config explicit_codec = parseConfig(
      kGood, "good.yaml", {{"sync.outer.method=streaming_diloco", "sync.outer.codec=int8"}});
  EXPECT_EQ(explicit_codec.sync.outer.codec, CodecKind::Int8);
}

TEST(Config, NoTopologyMeansOneWorldTier) {
  Config c = parseConfig("model: {kind: gpt}\ndata: {train: a}\n", "min.yaml");
  ASSERT_EQ(c.topology.tiers.size(), 1u);
  EXPECT_EQ(c.topology.tiers[0].name, "world");
  EXPECT_TRUE(c.topology.tiers[0].size.isRest());
  EXPECT_EQ(c.sync.outer.tier, "world");
  EXPECT_NO_THROW(checkWorld(c, 5));
}

TEST(Config, SetOverridesAnyKeyWithTheSameValidation) {
  Config c = parseConfig(kGood, "good.yaml",
                         {{"run.steps=7", "topology.tiers.1.bandwidth=100Mbit",
                           "topology.tiers[0].latency=1ms", "optimizer.betas=[0.8, 0.9]",
                           "sync.outer.optimizer.lr=1", "comm.timeout=30s", "device=cpu"}});
  EXPECT_EQ(c.run.steps, 7);
  EXPECT_DOUBLE_EQ(c.topology.tiers[1].bandwidth.bits(), 100e6);
  EXPECT_DOUBLE_EQ(c.topology.tiers[0].latency.seconds, 1e-3);
  EXPECT_DOUBLE_EQ(c.optimizer.betas[0], 0.8);
  EXPECT_DOUBLE_EQ(c.sync.outer.optimizer.lr, 1.0);
  EXPECT_DOUBLE_EQ(c.comm.timeout.seconds, 30);
  EXPECT_EQ(c.device, runtime::DeviceMode::Cpu);
  EXPECT_EQ(c.locations.at("run.steps"), "good.yaml (--set run.steps=7)");
  // A --set can add a section the file does not have.
  Config added = parseConfig(kGood, "good.yaml", {{"comm.bucket=1MiB"}});
  EXPECT_EQ(added.comm.bucket.bytes, 1048576u);
  // The later override of the same key wins.
  Config twice = parseConfig(kGood, "good.yaml", {{"run.steps=7", "run.steps=9"}});
  EXPECT_EQ(twice.run.steps, 9);
}

TEST(Config, InactiveKeysWarnInsteadOfFailing) {
  Config c = parseConfig(kGood, "good.yaml", {{"sync.outer.fragments=2"}});
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("sync.outer.fragments: ignored: only used when sync.outer.method "
                               "is streaming_diloco"),
            std::string::npos)
      << c.warnings[0];
}

TEST(Config, WorldChecks) {
  Config c = parseConfig(kGood, "good.yaml");
  EXPECT_NO_THROW(checkWorld(c, 2));
  EXPECT_NO_THROW(checkWorld(c, 8));
  EXPECT_THROW(checkWorld(c, 3), ConfigError);
  Config fixed = parseConfig(kGood, "good.yaml", {{"topology.tiers.1.size=2"}});
  EXPECT_NO_THROW(checkWorld(fixed, 4));
  try {
    checkWorld(fixed, 8);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("node=2 x wan=2 = 4 but the world has 8 ranks"),
              std::string::npos)
        << e.what();
  }
  Config per_replica = parseConfig(
      kGood, "good.yaml",
      {{"sync.outer.method=streaming_diloco", "sync.outer.overlap_per_replica=[1, 2, 1]"}});
  EXPECT_NO_THROW(checkWorld(per_replica, 6));  // 6 ranks / 2 per replica = 3 replicas
  EXPECT_THROW(checkWorld(per_replica, 4), ConfigError);
}

TEST(Config, ResolvedYamlLoadsBackToTheSameConfig) {
  for (const auto& entry : std::filesystem::directory_iterator(test::sourceDir() + "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    Config first = loadConfig(entry.path().string());
    std::string yaml = toYaml(first);
    Config second = parseConfig(yaml, "resolved");
    EXPECT_EQ(toYaml(second), yaml) << entry.path();
    EXPECT_TRUE(second.warnings.empty()) << entry.path() << ": " << second.warnings.front();
  }
}

TEST(Config, EveryShippedConfigValidates) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::sourceDir() + "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    ++count;
    std::ostringstream out, err;
    EXPECT_EQ(runCli({"validate", entry.path().string()}, out, err), kExitOk)
        << entry.path() << ": " << err.str();
    EXPECT_EQ(err.str(), "") << entry.path();  // no warnings either
  }
  EXPECT_GE(count, 7);
}

// Random edits of the shipped configs (deleted, duplicated or swapped characters) must only
// ever give "ok" or one clean config error: never a crash or an internal error.
TEST(Config, MutatedConfigsFailCleanly) {
  std::vector<std::string> originals;
  for (const auto& entry : std::filesystem::directory_iterator(test::sourceDir() + "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path());
    originals.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_FALSE(originals.empty());
  const std::string alphabet = "{}[]:,-#&*!|>'\"%@` \n\t0123456789.eE_abcxyz";
  std::mt19937 rng(20261122);
  test::TempDir dir;
  int errors = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string text = originals[rng() % originals.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text.erase(at, 1 + rng() % 8);
          break;
        case 1:
          text.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          text[at] = alphabet[rng() % alphabet.size()];
          break;
      }
    }
    std::string file = dir.write("m.yaml", text);
    std::ostringstream out, err;
    int status = kExitInternal;
    ASSERT_NO_THROW(status = runCli({"validate", file}, out, err)) << text;
    ASSERT_TRUE(status == kExitOk || status == kExitBadInput) << "status " << status << "\n"
                                                              << err.str() << "\n"
                                                              << text;
    if (status == kExitBadInput) {
      ++errors;
      ASSERT_EQ(err.str().rfind("error: " + file, 0), 0u) << err.str();
    }
  }
  EXPECT_GT(errors, 100);  // the mutations really do break configs
}

// A config path must be a regular file of at most 1 MiB: a directory, a device or a FIFO
// (which would block, or never end) is refused before anything is read.
void expectFileRefused(const std::string& path, const std::string& detail) {
  std::ostringstream out, err;
  EXPECT_EQ(runCli({"validate", path}, out, err), kExitBadInput) << path;
  const std::string message = err.str();
  EXPECT_EQ(message.rfind("error: " + path + ": ", 0), 0u) << message;
  EXPECT_NE(message.find(detail), std::string::npos) << message;
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 1) << "one line: " << message;
  EXPECT_EQ(out.str(), "");
}

TEST(Config, DirectoriesAndDevicesAreNotConfigs) {
  test::TempDir dir;
  expectFileRefused(dir.path().string(), "not a regular file (a directory)");
  expectFileRefused("/dev/null", "not a regular file (a device)");
}

TEST(Config, FifosAndEndlessDevicesAreRefusedWithoutReading) {
  test::TempDir dir;
  const std::string fifo = (dir.path() / "exp.yaml").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  expectFileRefused(fifo, "not a regular file (a FIFO)");
  expectFileRefused("/dev/zero", "not a regular file (a device)");
}

TEST(Config, OversizedConfigsAreRefused) {
  test::TempDir dir;
  // A valid config followed by 1 MiB of comments.
  const std::string big = dir.write("big.yaml", std::string(kGood) + std::string(1 << 20, '#'));
  expectFileRefused(big, "larger than the 1 MiB a config may have");
  const std::string fits =
      dir.write("fits.yaml", std::string(kGood) + "#" + std::string(4096, 'x'));
  std::ostringstream out, err;
  EXPECT_EQ(runCli({"validate", fits}, out, err), kExitOk) << err.str();
}

TEST(Config, PlainRunNamesAndAnyOutDir) {
  Config c = parseConfig(kGood, "good.yaml", {{"run.name=my-run_2.b"}});
  EXPECT_EQ(c.run.out_dir, "runs/my-run_2.b");
  // out_dir is the user's explicit choice: any path.
  Config d = parseConfig(kGood, "good.yaml", {{"run.out_dir=../elsewhere/x"}});
  EXPECT_EQ(d.run.out_dir, "../elsewhere/x");
  EXPECT_THROW(parseConfig(kGood, "good.yaml", {{"run.name=..", "run.out_dir=/tmp/x"}}),
               ConfigError);
  EXPECT_THROW(parseConfig(kGood, "good.yaml", {{"run.name="}}), ConfigError);
}

TEST(Config, TrailingEmptyDocumentIsHarmless) {
  Config c = parseConfig(std::string(kGood) + "---\n# nothing\n", "good.yaml");
  EXPECT_EQ(c.run.steps, 1000);
}

TEST(Config, ClosestMatch) {
  EXPECT_EQ(closestMatch("sedd", {"seed", "steps", "name"}), "seed");
  EXPECT_EQ(closestMatch("learning_rate", {"lr", "betas"}), "");
  EXPECT_EQ(closestMatch("zero", {"zero1", "zero2", "ddp"}), "zero1");
}

}  // namespace
}  // namespace lowband::launcher
