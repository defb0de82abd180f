// The experiment config: YAML -> typed structs with defaults (schema in describe() of
// config.cpp, key names per docs/configuration.md). Errors name the file:line:column (or the --set
// override), the key path and what was expected, e.g.
//   exp.yaml:3:3: run.sedd: unknown key (did you mean 'seed'?)
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "launcher/units.h"
#include "runtime/device.h"
#include "runtime/precision.h"
#include "schedules/settings.h"

namespace lowband::launcher {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Names of enum values as written in YAML, in declaration order.
template <class E>
struct EnumNames;

#define LB_ENUM_NAMES(E, ...)                                    \
  template <>                                                    \
  struct EnumNames<E> {                                          \
    static constexpr const char* const values[] = {__VA_ARGS__}; \
  }
// An enum whose names its own header keeps (the method enums, the codecs).
#define LB_ENUM_NAMES_FROM(E, array)             \
  template <>                                    \
  struct EnumNames<E> {                          \
    static constexpr const auto& values = array; \
  }

template <class E>
const char* enumName(E e) {
  return EnumNames<E>::values[static_cast<int>(e)];
}

enum class ModelKind { Gpt, Mlp };
enum class Activation { Relu, Gelu };
enum class OptimizerKind { AdamW, Sgd };
enum class LrSchedule { Cosine, Linear, Constant };
enum class NicClass { Shm, Nvlink, Pcie, Infiniband, Ethernet, Wan };
enum class CommBackend { Auto, Mpi, Nccl, Local };
// The synchronisation settings are the schedules' own types (schedules/settings.h).
using schedules::ClipMode;
using schedules::EmbeddingPlacement;
using schedules::FragmentCount;
using schedules::FragmentPattern;
using schedules::GapPenalty;
using schedules::InnerMethod;
using schedules::OuterMethod;
using schedules::ShardPlacement;
using CodecKind = runtime::Codec;
using OuterOptimizerKind = schedules::OuterOptimizer;
using InnerSyncConfig = schedules::InnerConfig;
using OuterSyncConfig = schedules::OuterConfig;
using schedules::ClipConfig;
using schedules::OuterOptimizerConfig;

LB_ENUM_NAMES(runtime::DeviceMode, "auto", "cpu", "cuda");
LB_ENUM_NAMES(runtime::Precision, "fp32", "tf32", "bf16");
LB_ENUM_NAMES(ModelKind, "gpt", "mlp");
LB_ENUM_NAMES(Activation, "relu", "gelu");
LB_ENUM_NAMES(OptimizerKind, "adamw", "sgd");
LB_ENUM_NAMES(LrSchedule, "cosine", "linear", "constant");
LB_ENUM_NAMES(NicClass, "shm", "nvlink", "pcie", "infiniband", "ethernet", "wan");
LB_ENUM_NAMES(CommBackend, "auto", "mpi", "nccl", "local");
LB_ENUM_NAMES_FROM(InnerMethod, schedules::kInnerMethodNames);
LB_ENUM_NAMES_FROM(OuterMethod, schedules::kOuterMethodNames);
LB_ENUM_NAMES_FROM(FragmentPattern, schedules::kFragmentPatternNames);
LB_ENUM_NAMES_FROM(EmbeddingPlacement, schedules::kEmbeddingPlacementNames);
LB_ENUM_NAMES_FROM(CodecKind, runtime::kCodecNames);
LB_ENUM_NAMES_FROM(OuterOptimizerKind, schedules::kOuterOptimizerNames);
LB_ENUM_NAMES_FROM(GapPenalty, schedules::kGapPenaltyNames);
LB_ENUM_NAMES_FROM(ClipMode, schedules::kClipModeNames);

// `size: rest` (0) or a rank count.
struct TierSize {
  int64_t ranks = 0;
  bool isRest() const { return ranks == 0; }
  bool operator==(const TierSize&) const = default;
};

struct RunConfig {
  std::string name = "run";
  int64_t seed = 1234;
  int64_t steps = 1000;
  std::string out_dir;  // default runs/<name>
  int64_t log_every = 10;
  int64_t eval_every = 200;  // 0: never
  int64_t eval_batches = 20;
  int64_t checkpoint_every = 500;  // 0: only at the end
  int64_t keep_last = 2;
  int64_t max_bad_steps = 5;  // consecutive NaN/Inf steps before the run aborts
};

struct ModelConfig {
  ModelKind kind = ModelKind::Gpt;
  runtime::Precision precision = runtime::Precision::Fp32;
  // gpt
  int64_t n_layer = 6;
  int64_t d_model = 256;
  int64_t n_head = 8;
  int64_t seq_len = 256;
  int64_t vocab = 256;
  // mlp
  std::vector<int64_t> hidden = {256, 256};
  Activation activation = Activation::Relu;
  int64_t input = 784;
  int64_t classes = 10;

  int64_t layers() const;  // transformer blocks (gpt) or linear layers (mlp)
};

struct DataConfig {
  std::string train;  // token shards: path or glob; images: IDX file
  std::string val;
  std::string train_labels;  // mlp only: IDX label files
  std::string val_labels;
  int64_t batch_size = 8;  // per rank
};

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::AdamW;
  double lr = 3e-4;
  std::array<double, 2> betas = {0.9, 0.95};
  double eps = 1e-8;
  double weight_decay = 0.1;
  double momentum = 0.9;
  bool nesterov = false;
  int64_t warmup = 100;
  LrSchedule schedule = LrSchedule::Cosine;
  double min_lr_ratio = 0.1;  // lr at the end of the decay, as a fraction of lr
  double grad_clip = 1.0;     // global norm; 0: off
};

// A tier's link for hosts of one NIC class (topology.hosts says which host has which).
struct ClassLink {
  NicClass nic = NicClass::Ethernet;
  Bandwidth bandwidth;
  Duration latency;
};

struct TierConfig {
  std::string name;
  TierSize size;
  Bandwidth bandwidth;  // for hosts of a class `classes` does not list
  Duration latency;
  NicClass nic = NicClass::Ethernet;
  // Per NIC class: a group of ranks over this tier runs at its slowest member's link.
  std::vector<ClassLink> classes;
};

// A NIC-island rule: hosts whose name matches the glob `match` have NICs of class `nic`.
struct HostRule {
  std::string match;
  NicClass nic = NicClass::Ethernet;
};

struct TopologyConfig {
  bool emulate = false;
  int64_t ranks_per_host = 0;     // 0: discover from the MPI library
  std::vector<HostRule> hosts;    // NIC islands; empty: one island
  std::vector<TierConfig> tiers;  // innermost first; default: one tier `world`
};

struct CommConfig {
  CommBackend backend = CommBackend::Auto;
  Duration timeout{300};
  ByteSize bucket{25'000'000};
};

struct PlanConfig {
  double target_utilization = 0.9;  // `lowband plan --auto` aims for this compute utilisation
};

struct SyncConfig {
  InnerSyncConfig inner;
  OuterSyncConfig outer;
};

struct Config {
  RunConfig run;
  runtime::DeviceMode device = runtime::DeviceMode::Auto;
  ModelConfig model;
  DataConfig data;
  OptimizerConfig optimizer;
  TopologyConfig topology;
  CommConfig comm;
  SyncConfig sync;
  PlanConfig plan;

  // Where each key came from: "file:line:col" or "file (--set key=value)", by key path.
  std::string source;
  std::map<std::string, std::string> locations;
  std::vector<std::string> warnings;  // "file:line:col: key: ..." lines, already formatted
};

struct LoadOptions {
  std::vector<std::string> overrides{};  // "key.path=value"
  std::optional<int64_t> world{};        // check tier sizes against this world size
};

// Reads, overrides, validates and resolves defaults. Throws ConfigError (one line).
Config loadConfig(const std::string& path, const LoadOptions& options = {});
// Same from YAML text; `source` names it in messages.
Config parseConfig(const std::string& yaml, const std::string& source,
                   const LoadOptions& options = {});

// Checks that the tiers fit `world` ranks; throws ConfigError naming the tier and numbers.
void checkWorld(const Config& config, int64_t world);

// The resolved config as YAML that loads back to the same values.
std::string toYaml(const Config& config);
// Every resolved value by key path ("run.seed", "topology.tiers[1].bandwidth"), as written in
// toYaml: what a resumed run compares with its checkpoint's config.
std::map<std::string, std::string> flatKeys(const Config& config);

// "LOCATION: key.path: what", located at the key, else its nearest located ancestor, else the
// file: the one format of every config-related message (checks here, run-directory and data
// mismatches in the trainer).
std::string keyMessage(const Config& config, std::string path, const std::string& what);

// Index of the tier called `name` in topology.tiers, or -1.
int tierIndex(const Config& config, const std::string& name);

// One line: model, steps, methods.
std::string summary(const Config& config);

// Closest candidate within a small edit distance, or "" (also used for CLI suggestions).
std::string closestMatch(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace lowband::launcher
