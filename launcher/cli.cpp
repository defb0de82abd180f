#include "launcher/cli.h"

#include <cblas.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

#include "comm/mpi_runtime.h"
#include "launcher/agree.h"
#include "launcher/bench.h"
#include "launcher/bench_comm.h"
#include "launcher/bench_schedules.h"
#include "launcher/config.h"
#include "launcher/plan.h"
#include "launcher/simulate.h"
#include "launcher/trainer.h"
#include "launcher/units.h"
#include "lowband_build.h"
#include "nn/data.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "schedules/methods.h"
#if LB_WITH_CUDA
#include "runtime/cuda/backend.h"
#endif

extern "C" {
// OpenBLAS extensions (declared in its cblas.h on Debian, repeated here for other layouts).
char* openblas_get_config(void);
int openblas_get_num_threads(void);
}

namespace lowband::launcher {

static_assert(comm::kCommFailureExit == kExitRuntime, "a watchdog's abort is a failed MPI call");

std::string versionText() {
  std::ostringstream s;
  s << "lowband " << LB_VERSION << "\n";
  s << "  OpenBLAS: " << openblas_get_config() << " (" << openblas_get_num_threads()
    << " threads)\n";
  s << "  MPI: " << comm::mpiLibraryVersion() << "\n";
#if LB_WITH_CUDA
  s << "  CUDA backend: built for sm_" << LB_GPU_ARCHS << "; " << runtime::cuda::versionInfo()
    << ", NCCL " << comm::ncclVersion() << "\n";
#else
  s << "  CUDA backend: not built (nvcc was not found at build time)\n";
#endif
  s << "  device auto: " << runtime::selectDevice(runtime::DeviceMode::Auto).reason << "\n";
  return s.str();
}

namespace {

// Where the CLI writes: rank 0 prints results; other ranks stay quiet unless they fail.
struct Streams {
  std::ostream& out;
  std::ostream& err;
  const CliContext& ctx;
  bool quiet() const { return ctx.rank != 0; }
};

// CLI11's own checks print the whole double range ("0.000000 to 1797693...") or a set in
// braces; these say in words what the option expects. CLI11 puts the option's name in front.
bool looksNumeric(const std::string& text) {
  char* end = nullptr;
  std::strtod(text.c_str(), &end);
  return !text.empty() && *end == '\0';
}

std::string got(const std::string& text) { return looksNumeric(text) ? text : "'" + text + "'"; }

constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();

CLI::Validator integerIn(int64_t lo, int64_t hi = kNoMax) {
  const std::string expected =
      hi != kNoMax ? "an integer from " + std::to_string(lo) + " to " + std::to_string(hi)
      : lo == 1    ? "a positive integer"
      : lo == 0    ? "a non-negative integer"
                   : "an integer >= " + std::to_string(lo);
  const std::string desc =
      hi != kNoMax ? std::to_string(lo) + ".." + std::to_string(hi) : ">=" + std::to_string(lo);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        int64_t v = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi)
          return "expected " + expected + ", got " + got(text);
        return "";
      },
      desc);
}

// A finite number > 0 (and <= max).
CLI::Validator positiveNumber(double max = HUGE_VAL) {
  const std::string expected =
      std::isinf(max) ? "a positive number" : "a number > 0 and <= " + formatNumber(max);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !std::isfinite(v) || !(v > 0) || v > max)
          return "expected " + expected + ", got " + got(text);
        return "";
      },
      std::isinf(max) ? ">0" : "(0.." + formatNumber(max) + "]");
}

CLI::Validator oneOf(std::vector<std::string> names) {
  std::string list, desc;
  for (const std::string& n : names) {
    list += (list.empty() ? "" : ", ") + n;
    desc += (desc.empty() ? "" : ",") + n;
  }
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        if (std::find(names.begin(), names.end(), text) != names.end()) return "";
        const std::string m = closestMatch(text, names);
        return "expected one of " + list + ", got '" + text + "'" +
               (m.empty() ? "" : " (did you mean '" + m + "'?)");
      },
      "{" + desc + "}");
}

// Bounds of the counts that size plan's and simulate's loops and allocations.
constexpr int64_t kMaxPlanWorld = 65536;  // plan's host and island tables grow ~world^2
constexpr int64_t kMaxPoints = 10000;
constexpr int64_t kMaxLayers = 10000;
constexpr int64_t kMaxH = 100000;
constexpr int64_t kMaxOverlap = 100000;
constexpr double kMaxBits = 64;

int validate(const std::vector<std::string>& files, const std::vector<std::string>& overrides,
             int64_t world_option, bool print, const Streams& io) {
  LoadOptions options;
  options.overrides = overrides;
  if (world_option > 0)
    options.world = world_option;
  else if (io.ctx.world > 1)
    options.world = io.ctx.world;  // under mpiexec the job's own size is the one that matters
  int status = kExitOk;
  for (const std::string& file : files) {
    try {
      Config config = loadConfig(file, options);
      if (io.quiet()) continue;
      for (const std::string& w : config.warnings) io.err << "warning: " << w << "\n";
      if (print) {
        if (files.size() > 1) io.out << "# " << file << "\n";
        io.out << toYaml(config);
      } else {
        io.out << file << ": ok: " << summary(config) << "\n";
      }
    } catch (const ConfigError& e) {
      // Every rank reads the same file, so rank 0 speaks for all of them.
      if (!io.quiet()) io.err << "error: " << e.what() << "\n";
      status = kExitBadInput;
    }
  }
  return status;
}

int runTrain(const std::string& file, const std::vector<std::string>& overrides,
             const TrainOptions& options, const Streams& io) {
  LoadOptions load;
  load.overrides = overrides;
  load.world = io.ctx.world;
  Config config = loadConfig(file, load);
  if (!io.quiet())
    for (const std::string& w : config.warnings) io.err << "warning: " << w << "\n";
  TrainOptions o = options;
  o.progress = !io.quiet() && &io.out == &std::cout && isatty(STDOUT_FILENO);
  train(config, o, io.out);
  return kExitOk;
}

}  // namespace

int runCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
           const CliContext& context) {
  Streams io{out, err, context};
  CLI::App app{"lowband: a training launcher for clusters with slow links", "lowband"};
  app.set_version_flag("--version", [] {
    std::string text = versionText();
    text.pop_back();  // CLI11 adds its own newline
    return text;
  });
  app.require_subcommand(1);
  app.footer("Start under mpiexec/srun for several ranks; see README.md.");

  std::vector<std::string> files, overrides;
  int64_t world = 0;
  bool print = false;
  CLI::App* validate_cmd =
      app.add_subcommand("validate", "Check configs (schema, units, cross-field rules); exit 0/1");
  // No CLI::ExistingFile: the loader names a missing or special file in its own error line.
  validate_cmd->add_option("CONFIG", files, "YAML experiment configs")->required();
  validate_cmd->add_option("--set", overrides, "Override a key: key.path=value (repeatable)")
      ->type_name("KEY=VALUE");
  validate_cmd
      ->add_option("--world", world,
                   "Check tier sizes against this many ranks (default: the MPI world "
                   "when run under mpiexec)")
      ->check(integerIn(1));
  validate_cmd->add_flag("--print", print, "Print the resolved config as YAML");

  std::string train_file;
  std::vector<std::string> train_overrides;
  TrainOptions train_options;
  CLI::App* train_cmd = app.add_subcommand(
      "train", "Train the model of a config (one process, or every rank under mpiexec/srun)");
  train_cmd->add_option("CONFIG", train_file, "YAML experiment config")->required();
  train_cmd->add_option("--set", train_overrides, "Override a key: key.path=value (repeatable)")
      ->type_name("KEY=VALUE");
  train_cmd->add_flag("--overwrite", train_options.overwrite,
                      "Replace the run already in run.out_dir (config.yaml, metrics.jsonl, "
                      "checkpoints)");
  train_cmd->add_flag("--dry-run", train_options.dry_run,
                      "Check config and data, build the model, print the start-up table; no "
                      "training");
  train_cmd
      ->add_option("--resume", train_options.resume,
                   "Continue from a checkpoint: 'auto' (the newest complete one in run.out_dir, "
                   "or step 0 if there is none) or a checkpoint directory")
      ->type_name("auto|PATH");

  std::string plan_file;
  std::vector<std::string> plan_overrides;
  PlanOptions plan_options;
  bool plan_json = false;
  CLI::App* plan_cmd = app.add_subcommand(
      "plan",
      "Layout, sharding, memory per rank, bytes per tier and predicted step time of a config, "
      "without training");
  plan_cmd->add_option("CONFIG", plan_file, "YAML experiment config")->required();
  plan_cmd->add_option("--set", plan_overrides, "Override a key: key.path=value (repeatable)")
      ->type_name("KEY=VALUE");
  plan_cmd
      ->add_option("--world", plan_options.world,
                   "Ranks to plan for (default: the product of the tier sizes)")
      ->check(integerIn(1, kMaxPlanWorld));
  plan_cmd
      ->add_option("--step-time", plan_options.step_time,
                   "Compute seconds per training step (default: measured here on the config's "
                   "model and batch)")
      ->check(positiveNumber());
  plan_cmd->add_flag("--json", plan_json, "One JSON object");
  bool plan_auto = false;
  std::string plan_out;
  plan_cmd->add_flag("--auto", plan_auto,
                     "Choose outer method, H, fragments, overlap and codec to reach "
                     "plan.target_utilization with the least expected quality loss");
  plan_cmd->add_option("--out", plan_out, "With --auto: write the chosen config here (new file)");

  // simulate
  std::vector<std::string> sim_presets;
  sim::ModelShape sim_custom{"custom", 0, 0, 0, 100, 3};
  std::string sim_method, sim_latency = "10ms", sim_min = "10Mbit", sim_max = "1Tbit";
  int64_t sim_overlap = -1;
  SimulateOptions sim_options;
  CLI::App* simulate_cmd = app.add_subcommand(
      "simulate",
      "Predicted compute utilisation of ddp, diloco, streaming_diloco and co2 over a bandwidth "
      "sweep "
      "(per-layer step DAG, one link; presets 1b, 10b, 100b or a custom model)");
  std::vector<std::string> preset_names;
  for (const sim::ModelShape& m : sim::presets()) preset_names.push_back(m.name);
  simulate_cmd->add_option("--preset", sim_presets, "1b, 10b, 100b (repeatable; default all)")
      ->check(oneOf(preset_names));
  simulate_cmd->add_option("--layers", sim_custom.layers, "Custom model: layers")
      ->check(integerIn(1, kMaxLayers));
  simulate_cmd->add_option("--params", sim_custom.params, "Custom model: parameters")
      ->check(positiveNumber());
  simulate_cmd->add_option("--step-time", sim_custom.step_s, "Custom model: seconds per step")
      ->check(positiveNumber());
  CLI::Option* sim_h =
      simulate_cmd->add_option("--H", sim_custom.H, "Inner steps per outer round (default 100)")
          ->check(integerIn(1, kMaxH));
  CLI::Option* sim_frag = simulate_cmd
                              ->add_option("--fragment-layers", sim_custom.fragment_layers,
                                           "Streaming: layers per fragment (default 3)")
                              ->check(integerIn(1, kMaxLayers));
  simulate_cmd
      ->add_option("--method", sim_method,
                   "ddp, local_sgd, diloco, streaming_diloco or co2 (default: ddp, "
                   "diloco and streaming_diloco)")
      ->check(oneOf(sim::methodNames()));
  simulate_cmd->add_option("--overlap", sim_overlap, "Streaming: overlap tau in steps (< H)")
      ->check(integerIn(0, kMaxOverlap));
  simulate_cmd->add_option("--bits", sim_options.bits, "Bits per exchanged parameter (16)")
      ->check(positiveNumber(kMaxBits));
  simulate_cmd->add_option("--replicas", sim_options.replicas, "Replicas M (2)")
      ->check(integerIn(2, int64_t{1} << 30));
  simulate_cmd->add_option("--latency", sim_latency, "Link latency (10ms)");
  simulate_cmd->add_option("--min", sim_min, "Lowest bandwidth of the sweep (10Mbit)");
  simulate_cmd->add_option("--max", sim_max, "Highest bandwidth of the sweep (1Tbit)");
  simulate_cmd->add_option("--points", sim_options.points, "Log-spaced bandwidths (21)")
      ->check(integerIn(2, kMaxPoints));
  simulate_cmd->add_option("--format", sim_options.format, "md, csv or json")
      ->check(oneOf({"md", "csv", "json"}));
  std::string sim_config;
  std::vector<std::string> sim_overrides;
  int64_t sim_world = 0;
  simulate_cmd->add_option(
      "--config", sim_config,
      "Simulate a config's outer exchange: its model, replicas, outer method and "
      "codec, the outer tier's latency, and a step of measured compute (or "
      "--step-time) plus the exchanges inside a replica");
  simulate_cmd->add_option("--set", sim_overrides, "With --config: override a key")
      ->type_name("KEY=VALUE");
  simulate_cmd->add_option("--world", sim_world, "With --config: ranks (as lowband plan)")
      ->check(integerIn(1, kMaxPlanWorld));

  TrainBenchOptions bench_options;
  std::string bench_preset = "small";
  bool bench_json = false;
  CLI::App* bench_cmd = app.add_subcommand("bench", "Benchmarks with machine-readable output");
  bench_cmd->require_subcommand(1);
  CLI::App* bench_train_cmd = bench_cmd->add_subcommand(
      "train", "Training-step throughput and MFU of a GPT shape on random tokens");
  bench_train_cmd
      ->add_option("--model", bench_preset,
                   "Shape: small (6x256, T 256, batch 8), gpt2 (12x768, T 64, batch 4) or "
                   "gpt2-1024 (12x768, T 1024, batch 8)")
      ->check(oneOf({"small", "gpt2", "gpt2-1024"}));
  bench_train_cmd->add_option("--steps", bench_options.steps, "Timed steps (median reported)")
      ->check(integerIn(1));
  int64_t bench_batch = 0, bench_seq = 0;
  bench_train_cmd->add_option("--batch", bench_batch, "Sequences per step (default: the shape's)")
      ->check(integerIn(1));
  bench_train_cmd->add_option("--seq", bench_seq, "Tokens per sequence (default: the shape's)")
      ->check(integerIn(1));
  std::string bench_device = "auto", bench_precision = "fp32";
  bench_train_cmd->add_option("--device", bench_device, "auto, cpu or cuda (as the config key)")
      ->check(oneOf({"auto", "cpu", "cuda"}));
  bench_train_cmd
      ->add_option("--precision", bench_precision, "fp32, tf32 or bf16 (as model.precision)")
      ->check(oneOf({"fp32", "tf32", "bf16"}));
  bench_train_cmd->add_flag("--json", bench_json, "One JSON object per line");
  CommBenchOptions comm_bench;
  CLI::App* bench_comm_cmd = bench_cmd->add_subcommand(
      "comm", "Collectives (run under mpiexec): hierarchical vs MPI, codecs, emulated links");
  bench_comm_cmd->add_flag("--quick", comm_bench.quick, "Smaller tensors, fewer repetitions");
  bench_comm_cmd->add_flag("--json", comm_bench.json, "One JSON object per line");
  ScheduleBenchOptions schedule_bench;
  CLI::App* bench_schedules_cmd = bench_cmd->add_subcommand(
      "schedules",
      "Outer methods (run under mpiexec): val loss and bytes vs ddp at equal tokens; step time "
      "over an emulated 100 Mbit/s link vs no outer communication");
  bench_schedules_cmd->add_flag("--quick", schedule_bench.quick,
                                "Smaller model, fewer steps (a few minutes)");
  bench_schedules_cmd->add_flag("--json", schedule_bench.json, "One JSON object per line");
  bench_schedules_cmd->add_option("--study", schedule_bench.study, "quality, overlap or all")
      ->check(oneOf({"quality", "overlap", "all"}));
  bench_schedules_cmd->add_option("--data", schedule_bench.data,
                                  "Folder with the KJV byte shards (scripts/prepare_kjv.sh)");
  bench_schedules_cmd->add_option("--out-dir", schedule_bench.out_dir,
                                  "Where the runs go (replaced)");
  bench_schedules_cmd->add_flag("--verbose", schedule_bench.verbose, "Print the trainer's output");

  // CLI11 reports a mistyped command as a missing one; name it and suggest the closest instead.
  if (!args.empty() && !args[0].empty() && args[0][0] != '-') {
    std::vector<std::string> commands;
    for (const CLI::App* sub : app.get_subcommands({})) commands.push_back(sub->get_name());
    if (std::find(commands.begin(), commands.end(), args[0]) == commands.end()) {
      if (!io.quiet()) {
        std::string m = closestMatch(args[0], commands);
        err << "error: unknown command '" << args[0] << "'"
            << (m.empty() ? "" : " (did you mean '" + m + "'?)") << "; commands: ";
        for (std::size_t i = 0; i < commands.size(); ++i) err << (i ? ", " : "") << commands[i];
        err << "\n";
      }
      return kExitBadInput;
    }
  }

  std::vector<std::string> argv_storage = args;
  std::vector<const char*> argv;
  argv.push_back("lowband");
  for (const std::string& a : argv_storage) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::Success& e) {
    if (!io.quiet()) app.exit(e, out, err);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    // One `error:` line, as for config errors (CLI11 would add "Run with --help ...").
    if (!io.quiet()) {
      std::string what = e.what();
      std::replace(what.begin(), what.end(), '\n', ' ');
      err << "error: " << what;
      // A rejected value says what was expected; other usage errors point to the help.
      if (!dynamic_cast<const CLI::ValidationError*>(&e)) {
        std::string command = "lowband";
        for (const CLI::App* sub = &app; !sub->get_subcommands().empty();) {
          sub = sub->get_subcommands().front();
          command += " " + sub->get_name();
        }
        err << " (see " << command << " --help)";
      }
      err << "\n";
    }
    return kExitBadInput;
  }

  try {
    if (validate_cmd->parsed()) return validate(files, overrides, world, print, io);
    if (train_cmd->parsed()) {
      if (train_options.overwrite && !train_options.resume.empty())
        throw ConfigError("--overwrite and --resume " + train_options.resume +
                          " exclude each other: --resume continues the run in run.out_dir, "
                          "--overwrite replaces it");
      return runTrain(train_file, train_overrides, train_options, io);
    }
    if (plan_cmd->parsed()) {
      LoadOptions load;
      load.overrides = plan_overrides;
      if (plan_options.world > 0) load.world = plan_options.world;
      const Config config = loadConfig(plan_file, load);
      if (!plan_auto) {
        if (!plan_out.empty()) throw ConfigError("--out is only used with --auto");
        const Plan plan = makePlan(config, plan_options);
        if (!io.quiet()) out << (plan_json ? planJson(plan) + "\n" : planText(plan));
        return kExitOk;
      }
      if (plan_json && plan_out.empty())
        throw ConfigError("plan --auto --json: give --out FILE for the chosen config");
      if (!plan_out.empty() && std::filesystem::exists(plan_out))
        throw ConfigError(plan_out + " already exists; --out writes a new file");
      const AutoPlan chosen = autoPlan(config, plan_options);
      if (io.quiet()) return kExitOk;
      const std::string yaml =
          "# chosen by lowband plan --auto from " + plan_file + "\n" + toYaml(chosen.config);
      if (!plan_out.empty()) {
        std::ofstream f(plan_out);
        f << yaml;
        if (!f) throw ConfigError("cannot write " + plan_out);
      }
      if (plan_json) {
        out << planJson(chosen.plan) << "\n";
        return kExitOk;
      }
      out << planText(chosen.plan);
      char line[240];
      std::snprintf(line, sizeof line,
                    "auto       %s after %d candidate(s): predicted utilisation %.1f%% %s "
                    "target %.1f%%\n",
                    chosen.meets_target ? "chose this" : "no candidate reaches the target; best",
                    chosen.candidates, chosen.plan.predicted_utilization * 100,
                    chosen.meets_target ? ">=" : "<", config.plan.target_utilization * 100);
      out << line;
      if (plan_out.empty())
        out << "\n" << yaml;
      else
        out << "config     written to " << plan_out << "\n";
      return kExitOk;
    }
    if (simulate_cmd->parsed() && !sim_config.empty()) {
      if (!sim_presets.empty() || sim_custom.layers > 0 || sim_custom.params > 0 ||
          !sim_method.empty() || sim_overlap >= 0 || sim_h->count() || sim_frag->count() ||
          simulate_cmd->get_option("--bits")->count() ||
          simulate_cmd->get_option("--replicas")->count())
        throw ConfigError(
            "simulate --config takes the model, method, codec and replicas from the config; "
            "drop --preset, --layers, --params, --H, --fragment-layers, --method, --overlap, "
            "--bits and --replicas (use --set)");
      LoadOptions load;
      load.overrides = sim_overrides;
      if (sim_world > 0) load.world = sim_world;
      PlanOptions plan_options;
      plan_options.world = sim_world;
      plan_options.step_time = sim_custom.step_s;
      fromConfig(loadConfig(sim_config, load), plan_options, sim_options);
    }
    if (simulate_cmd->parsed() && sim_options.models.empty()) {
      const bool custom = sim_custom.layers > 0 || sim_custom.params > 0 || sim_custom.step_s > 0;
      if (custom && !(sim_custom.layers > 0 && sim_custom.params > 0 && sim_custom.step_s > 0))
        throw ConfigError("simulate: a custom model needs --layers, --params and --step-time");
      if (custom && !sim_presets.empty())
        throw ConfigError("simulate: give --preset or a custom model, not both");
      if (custom) {
        sim_options.models.push_back(sim_custom);
      } else {
        for (const sim::ModelShape& m : sim::presets())
          if (sim_presets.empty() ||
              std::find(sim_presets.begin(), sim_presets.end(), m.name) != sim_presets.end()) {
            sim::ModelShape shape = m;
            if (sim_h->count()) shape.H = sim_custom.H;
            if (sim_frag->count()) shape.fragment_layers = sim_custom.fragment_layers;
            sim_options.models.push_back(shape);
          }
      }
      const bool overlaps =
          !sim_method.empty() &&
          schedules::outerMethod(sim::methodNamed(sim_method)).reads(schedules::kKeyOverlap);
      if (sim_overlap >= 0 && !overlaps)
        throw ConfigError(std::string("simulate: --overlap goes with --method (") +
                          schedules::methodsReading(schedules::kKeyOverlap) + ")");
      if (!sim_method.empty())
        sim_options.setups.push_back({sim::methodNamed(sim_method),
                                      std::max<int64_t>(0, sim_overlap), sim_options.bits,
                                      sim_options.replicas});
    }
    if (simulate_cmd->parsed()) {
      auto quantity = [](const char* option, const std::string& text, auto parse) {
        try {
          return parse(text);
        } catch (const UnitError& e) {
          throw ConfigError(std::string("simulate: ") + option + " '" + text + "': " + e.what());
        }
      };
      if (sim_config.empty() || simulate_cmd->get_option("--latency")->count())
        sim_options.latency_s = quantity("--latency", sim_latency, parseDuration).seconds;
      sim_options.min_bits_per_s = quantity("--min", sim_min, parseBandwidth).bits();
      sim_options.max_bits_per_s = quantity("--max", sim_max, parseBandwidth).bits();
      const std::vector<SimulatedRow> rows = simulate(sim_options);
      if (!io.quiet()) printSimulation(sim_options, rows, out);
      return kExitOk;
    }
    if (bench_schedules_cmd->parsed()) {
      benchSchedules(schedule_bench, out);
      return kExitOk;
    }
    if (bench_comm_cmd->parsed()) {
      benchComm(comm_bench, out);
      return kExitOk;
    }
    if (bench_train_cmd->parsed()) {
      trainBenchPreset(bench_preset, bench_options);
      if (bench_batch > 0) bench_options.batch = bench_batch;
      if (bench_seq > 0) bench_options.shape.seq_len = bench_seq;
      bench_options.device = bench_device == "cpu"    ? runtime::DeviceMode::Cpu
                             : bench_device == "cuda" ? runtime::DeviceMode::Cuda
                                                      : runtime::DeviceMode::Auto;
      bench_options.precision = bench_precision == "bf16"   ? runtime::Precision::Bf16
                                : bench_precision == "tf32" ? runtime::Precision::Tf32
                                                            : runtime::Precision::Fp32;
      const TrainBenchResult r = benchTrain(bench_options);
      if (io.quiet()) return kExitOk;
      const std::string& name = bench_options.name;
      const char* precision = runtime::precisionName(bench_options.precision);
      char line[640];
      if (bench_json)
        std::snprintf(
            line, sizeof line,
            "{\"config\":%s,\"precision\":\"%s\",\"batch\":%lld,\"seq\":%lld,"
            "\"device\":%s,\"lowband_tokens_per_s\":%.1f,\"step_s\":%.5f,"
            "\"mfu\":%.4f,\"gemm_peak_gflops\":%.1f}",
            jsonString(name).c_str(), precision, static_cast<long long>(bench_options.batch),
            static_cast<long long>(bench_options.shape.seq_len), jsonString(r.device).c_str(),
            r.tokens_per_s, r.step_s, r.mfu, r.gemm_peak_gflops);
      else
        std::snprintf(line, sizeof line,
                      "%s (batch %lld, T %lld) on %s, %s: %.0f tokens/s (median step %.1f ms), "
                      "MFU %.1f%% of the %.0f GFLOP/s %s GEMM peak",
                      name.c_str(), static_cast<long long>(bench_options.batch),
                      static_cast<long long>(bench_options.shape.seq_len), r.device.c_str(),
                      r.precision.c_str(), r.tokens_per_s, r.step_s * 1e3, r.mfu * 100,
                      r.gemm_peak_gflops, precision);
      out << line << "\n";
      return kExitOk;
    }
  } catch (const ConfigError& e) {
    if (!io.quiet()) err << "error: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const nn::DataError& e) {
    if (!io.quiet()) err << "error: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const runtime::Error& e) {
    err << (context.world > 1 ? "[rank " + std::to_string(context.rank) + "] " : "")
        << "error: " << e.what() << "\n";
    // The other ranks may be waiting in a collective for this one: end the whole job now
    // rather than leave them to the watchdog (unless they all know already); abort() lets
    // the line above reach mpiexec first.
    if (context.world > 1 && !failureAgreed()) {
      err << std::flush;
      comm::MpiRuntime::instance().abort(kExitRuntime);
    }
    return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace lowband::launcher
