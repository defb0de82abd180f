#include "launcher/trainer.h"

#include <omp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "comm/link.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_runtime.h"
#include "comm/topology.h"
#include "launcher/agree.h"
#include "launcher/checkpoint.h"
#include "launcher/setup.h"
#include "lowband_build.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"
#include "runtime/kernels.h"
#include "schedules/methods.h"
#include "schedules/strategy.h"

namespace lowband::launcher {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A JSON number, or null for NaN/Inf (which JSON cannot carry).
std::string json(double v, const char* format) {
  if (!std::isfinite(v)) return "null";
  char buf[48];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string duration(double s) {
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s / 3600),
                  static_cast<int>(s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  return buf;
}

// The data of one run: training batches, and evaluation on the validation split.
class RunData {
 public:
  virtual ~RunData() = default;
  virtual nn::Batch next() = 0;
  virtual int64_t positionsPerBatch() const = 0;  // predicted tokens / classified images
  struct Eval {
    double loss = 0;
    double accuracy = -1;
  };
  virtual bool hasValidation() const = 0;
  virtual Eval evaluate(nn::Model& model, const runtime::Stream& s, int64_t max_batches) = 0;
  virtual std::string describe() const = 0;
  virtual nn::LoaderPosition position() const = 0;  // of the training stream (checkpoints)
  virtual void restore(const nn::LoaderPosition& pos) = 0;
};

class TokenData : public RunData {
 public:
  TokenData(const Config& c, int rank, int world)
      : batch_(c.data.batch_size),
        seq_(c.model.seq_len),
        train_(nn::expandGlob(c.data.train), c.model.vocab, batch_, seq_, c.run.seed, rank, world),
        inputs_(batch_ * seq_),
        targets_(batch_ * seq_) {
    if (!c.data.val.empty())
      val_ = std::make_unique<nn::TokenLoader>(nn::expandGlob(c.data.val), c.model.vocab, batch_,
                                               seq_, c.run.seed, 0, 1, nn::Order::Sequential);
  }
  nn::Batch next() override {
    train_.next(inputs_.data(), targets_.data());
    return {inputs_.data(), nullptr, targets_.data(), batch_, seq_};
  }
  int64_t positionsPerBatch() const override { return batch_ * seq_; }
  bool hasValidation() const override { return val_ != nullptr; }
  Eval evaluate(nn::Model& model, const runtime::Stream& s, int64_t max_batches) override {
    val_->restore({});  // the same leading batches every time
    const int64_t n = std::min(max_batches, val_->batchesPerEpoch());
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      val_->next(inputs_.data(), targets_.data());
      total += model.forward(s, {inputs_.data(), nullptr, targets_.data(), batch_, seq_});
    }
    return {total / static_cast<double>(n), -1};
  }
  nn::LoaderPosition position() const override { return train_.position(); }
  void restore(const nn::LoaderPosition& pos) override { train_.restore(pos); }
  std::string describe() const override {
    std::string s = std::to_string(train_.tokens()) + " train tokens (" +
                    std::to_string(train_.windows()) + " windows of " + std::to_string(seq_ + 1) +
                    ")";
    if (val_) s += ", " + std::to_string(val_->tokens()) + " val tokens";
    return s + "; batch " + std::to_string(batch_) + " x " + std::to_string(seq_) + " = " +
           std::to_string(batch_ * seq_) + " tokens/step";
  }

 private:
  int64_t batch_, seq_;
  nn::TokenLoader train_;
  std::unique_ptr<nn::TokenLoader> val_;
  std::vector<int32_t> inputs_, targets_;
};

class ImageData : public RunData {
 public:
  ImageData(const Config& c, int rank, int world)
      : batch_(c.data.batch_size),
        train_(c.data.train, c.data.train_labels, batch_, c.run.seed, rank, world),
        inputs_(batch_ * train_.pixelsPerImage()),
        labels_(batch_) {
    check(train_, c, "data.train");
    if (!c.data.val.empty()) {
      val_ = std::make_unique<nn::ImageLoader>(c.data.val, c.data.val_labels, batch_, c.run.seed, 0,
                                               1, nn::Order::Sequential);
      check(*val_, c, "data.val");
    }
  }
  nn::Batch next() override {
    train_.next(inputs_.data(), labels_.data());
    return {nullptr, inputs_.data(), labels_.data(), batch_, 1};
  }
  int64_t positionsPerBatch() const override { return batch_; }
  bool hasValidation() const override { return val_ != nullptr; }
  Eval evaluate(nn::Model& model, const runtime::Stream& s, int64_t) override {
    // Classifiers are scored on the whole test set.
    double loss = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t b = 0; b < val_->evalBatches(); ++b) {
      const int64_t n = val_->evalBatch(b, inputs_.data(), labels_.data());
      loss += n * model.forward(s, {nullptr, inputs_.data(), labels_.data(), n, 1});
      const std::vector<float> logits = model.logits(s);
      const int64_t k = static_cast<int64_t>(logits.size()) / n;
      for (int64_t i = 0; i < n; ++i) {
        const float* row = logits.data() + i * k;
        correct += std::max_element(row, row + k) - row == labels_[i];
      }
      seen += n;
    }
    return {loss / static_cast<double>(seen),
            static_cast<double>(correct) / static_cast<double>(seen)};
  }
  nn::LoaderPosition position() const override { return train_.position(); }
  void restore(const nn::LoaderPosition& pos) override { train_.restore(pos); }
  std::string describe() const override {
    std::string s = std::to_string(train_.size()) + " train images";
    if (val_) s += ", " + std::to_string(val_->size()) + " test images";
    return s + " of " + std::to_string(train_.rows()) + "x" + std::to_string(train_.cols()) +
           "; batch " + std::to_string(batch_);
  }

 private:
  static void check(const nn::ImageLoader& l, const Config& c, const char* key) {
    if (l.pixelsPerImage() != c.model.input) {
      throw ConfigError(keyMessage(c, "model.input",
                                   std::to_string(c.model.input) + " inputs, but the " + key +
                                       " images have " + std::to_string(l.pixelsPerImage()) +
                                       " pixels"));
    }
    l.checkLabels(c.model.classes);
  }
  int64_t batch_;
  nn::ImageLoader train_;
  std::unique_ptr<nn::ImageLoader> val_;
  std::vector<float> inputs_;
  std::vector<int32_t> labels_;
};

// Files a run writes; --overwrite removes exactly these, nothing else in the directory.
const char* const kRunFiles[] = {"config.yaml", "metrics.jsonl", "checkpoints"};

// Refuses, before any work, to write over a run that is already there (continuing one is what
// --resume is for).
void checkRunDir(const Config& c, const TrainOptions& o) {
  if (!o.resume.empty()) return;
  const fs::path dir(c.run.out_dir);
  bool existing = false;
  std::error_code ec;
  for (const char* f : kRunFiles) existing |= fs::exists(dir / f, ec);
  if (existing && !o.overwrite)
    throw ConfigError(keyMessage(c, "run.out_dir",
                                 c.run.out_dir +
                                     " already holds a run (config.yaml/metrics.jsonl/"
                                     "checkpoints); pass --resume auto to continue it, "
                                     "--overwrite to replace it, or set another run.out_dir "
                                     "(e.g. --set run.out_dir=runs/new)"));
}

// The metrics of a resumed run: the lines up to the checkpoint's step stay, later ones (the
// interrupted attempt's) go, so every step is reported once.
void truncateMetrics(const fs::path& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    long long s = 0;
    if (std::sscanf(line.c_str(), "{\"step\":%lld", &s) == 1 && s <= step) kept += line + "\n";
  }
  in.close();
  writeFileAtomic(path, {reinterpret_cast<const uint8_t*>(kept.data()), kept.size()});
}

// Creates run.out_dir and writes the resolved config. A fresh run (resume_step < 0) removes
// the metrics of an earlier one (checkRunDir made sure that was asked for) and, with
// --overwrite, its checkpoints; a resumed one keeps its metrics up to resume_step.
void prepareRunDir(const Config& c, bool overwrite, int64_t resume_step) {
  const fs::path dir(c.run.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw ConfigError(
        keyMessage(c, "run.out_dir", "cannot create " + c.run.out_dir + ": " + ec.message()));
  if (resume_step >= 0) {
    truncateMetrics(dir / "metrics.jsonl", resume_step);
  } else {
    for (const char* f : kRunFiles) {
      if (std::string(f) == "checkpoints" && !overwrite) continue;
      fs::remove_all(dir / f, ec);
      if (ec)
        throw ConfigError(keyMessage(c, "run.out_dir",
                                     "cannot replace " + (dir / f).string() + ": " + ec.message()));
    }
  }
  const std::string yaml = "# resolved from " + c.source + "\n" + toYaml(c);
  writeFileAtomic(dir / "config.yaml",
                  {reinterpret_cast<const uint8_t*>(yaml.data()), yaml.size()});
}

// What must match between a checkpoint and the run resuming from it, field by field: the
// world and replica layout, the model's shape, the optimizer, and the methods' own fields
// (schedules/methods.h).
Checkpoints::Layout layoutOf(const Config& c, nn::Model& model, schedules::ReplicaGroups& g,
                             int world) {
  Checkpoints::Layout fields = {{"world", std::to_string(world)},
                                {"replicas", std::to_string(g.replicas())},
                                {"replica ranks", std::to_string(g.replica().size())},
                                {"model", enumName(c.model.kind)}};
  const ModelConfig& m = c.model;
  if (m.kind == ModelKind::Gpt) {
    for (const auto& [name, value] : {std::pair<const char*, int64_t>{"n_layer", m.n_layer},
                                      {"d_model", m.d_model},
                                      {"n_head", m.n_head},
                                      {"seq_len", m.seq_len},
                                      {"vocab", m.vocab}})
      fields.emplace_back(name, std::to_string(value));
  } else {
    std::string hidden;
    for (int64_t h : m.hidden) hidden += (hidden.empty() ? "" : ",") + std::to_string(h);
    fields.insert(fields.end(), {{"input", std::to_string(m.input)},
                                 {"hidden", hidden},
                                 {"activation", enumName(m.activation)},
                                 {"classes", std::to_string(m.classes)}});
  }
  fields.emplace_back("parameters", std::to_string(model.params().numParameters()));
  fields.emplace_back("optimizer", enumName(c.optimizer.kind));
  for (auto& f : schedules::innerLayout(c.sync.inner)) fields.push_back(std::move(f));
  for (auto& f : schedules::outerLayout(c.sync.outer, m.layers())) fields.push_back(std::move(f));
  return fields;
}

struct NullBuffer : std::streambuf {
  int overflow(int c) override { return c; }
};

// Counters of the training loop that a resumed run carries on with.
struct LoopCounters {
  int64_t updated = 0;  // steps whose update was applied
  int64_t skipped = 0;  // NaN/Inf steps
  int64_t bad_in_a_row = 0;
  int64_t window_steps = 0, window_all = 0;  // of the current log window: updated / all steps
  double window_loss = 0;
};

// Slurm's warning before it ends a job (sbatch --signal=USR1@120) or the end itself (SIGTERM):
// noted here as bits (the stop vote carries which ones each rank saw), acted on at the next step
// boundary every rank agrees on. Emulated link waits end at once, so that boundary comes soon.
constexpr int kSawTerm = 1, kSawUsr1 = 2;
std::atomic<int> g_stop_signals{0};
static_assert(std::atomic<int>::is_always_lock_free, "set from a signal handler");
extern "C" void noteStopSignal(int signal) {
  g_stop_signals.fetch_or(signal == SIGUSR1 ? kSawUsr1 : kSawTerm);
  comm::stopLinkEmulation();
}

class StopSignals {
 public:
  StopSignals() {
    g_stop_signals = 0;
    comm::resumeLinkEmulation();
    struct sigaction a {};
    a.sa_handler = noteStopSignal;
    sigemptyset(&a.sa_mask);
    a.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &a, &old_term_);
    sigaction(SIGUSR1, &a, &old_usr1_);
  }
  ~StopSignals() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGUSR1, &old_usr1_, nullptr);
    comm::resumeLinkEmulation();
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_term_ = {};
  struct sigaction old_usr1_ = {};
};

// What a checkpoint's state must agree with before the run trusts it: its step is the marker's
// (the directory's), and the counters and the optimizer's update count fit inside that step.
std::string checkResumeState(const runtime::StateDict& state, const CheckpointMarker& marker) {
  try {
    const auto step = state.value<int64_t>("trainer.step");
    if (step != marker.step)
      return state.source() + ": trainer.step is " + std::to_string(step) +
             ", its marker's step is " + std::to_string(marker.step);
    const auto k = state.value<LoopCounters>("trainer.counters");
    if (k.updated < 0 || k.skipped < 0 || k.updated + k.skipped > step || k.bad_in_a_row < 0 ||
        k.bad_in_a_row > k.skipped || k.window_steps < 0 || k.window_all < k.window_steps ||
        k.window_all > step)
      return state.source() + ": trainer.counters do not fit step " + std::to_string(step);
    const auto updates = state.value<int64_t>("optimizer.updates");
    if (updates < 0 || updates > step)
      return state.source() + ": optimizer.updates is " + std::to_string(updates) +
             ", expected 0.." + std::to_string(step);
  } catch (const runtime::Error& e) {
    return e.what();
  }
  return "";
}

// Keys that only say where and how often a run reports, or how it reaches its peers: a resumed
// run may change them and still repeat the uninterrupted one bit for bit.
bool reportingKey(const std::string& key) {
  for (const char* prefix : {"run.name", "run.out_dir", "run.log_every", "run.eval_every",
                             "run.eval_batches", "run.checkpoint_every", "run.keep_last",
                             "run.max_bad_steps", "device", "comm.timeout", "plan.", "topology."})
    if (key.rfind(prefix, 0) == 0) return true;
  return false;
}

// One warning line naming every setting that differs from the checkpoint's run (its resolved
// config.yaml): a new seed, data, batch size, H or learning rate is allowed, but the run no
// longer repeats the uninterrupted one.
void warnChangedSettings(const Config& c, const fs::path& dir, std::ostream& out) {
  std::map<std::string, std::string> then;
  try {
    then = flatKeys(parseConfig(
        [&] {
          const std::vector<uint8_t> bytes = readWholeFile(dir / "config.yaml", 16 << 20);
          return std::string(bytes.begin(), bytes.end());
        }(),
        (dir / "config.yaml").string()));
  } catch (const std::exception& e) {
    out << "resume: warning: cannot compare settings with the checkpoint's: " << e.what() << "\n";
    return;
  }
  std::string changed;
  for (const auto& [key, value] : flatKeys(c)) {
    if (reportingKey(key)) continue;
    const auto it = then.find(key);
    const std::string old = it == then.end() ? "(unset)" : it->second;
    if (old == value) continue;
    changed += (changed.empty() ? "" : ", ") + key + " " + old + " -> " + value;
  }
  if (!changed.empty())
    out << "resume: warning: settings differ from the checkpoint's run (" << changed
        << "): the resumed run will not repeat an uninterrupted one bit for bit\n";
}

const char* signalName(int signal) {
  return signal == SIGTERM ? "SIGTERM" : signal == SIGUSR1 ? "SIGUSR1" : "a signal";
}

// "vm: rank 0 pid 11, rank 1 pid 12" per host (collective): which process is which rank, for
// messages of the MPI launcher that name only a pid (a rank that was killed).
std::string rankTable(comm::Communicator& world) {
  const std::vector<std::string> entries =
      gatherText(world, machineName() + " " + std::to_string(getpid()));  // "host pid"
  if (world.size() > 64) return "(pids omitted above 64 ranks)";
  std::string text, last_host;
  for (int r = 0; r < world.size(); ++r) {
    const std::size_t space = entries[r].rfind(' ');
    const std::string host = entries[r].substr(0, space);
    if (host != last_host) {
      if (!text.empty()) text += "; ";
      text += host + ": ";
      last_host = host;
    } else {
      text += ", ";
    }
    text += "rank " + std::to_string(r) + " pid " + entries[r].substr(space + 1);
  }
  return text;
}

// The parameters of `theta` (the model's flat layout) as safetensors, one tensor per name.
std::vector<uint8_t> modelFile(const nn::ParamStore& params, const float* theta, const Config& c,
                               int64_t step) {
  std::vector<NamedTensor> tensors;
  for (const nn::ParamInfo& p : params.infos()) {
    NamedTensor t{p.name, {}, theta + p.offset};
    for (int i = 0; i < p.shape.ndim(); ++i) t.shape.push_back(p.shape[i]);
    tensors.push_back(std::move(t));
  }
  return encodeSafetensors(tensors, {{"format", "pt"},
                                     {"lowband_version", LB_VERSION},
                                     {"run", c.run.name},
                                     {"step", std::to_string(step)},
                                     {"model", enumName(c.model.kind)},
                                     {"vocab", std::to_string(c.model.vocab)}});
}

}  // namespace

TrainResult train(const Config& c, const TrainOptions& options, std::ostream& out_lead) {
  const auto start = Clock::now();
  checkSupported(c);
  comm::MpiRuntime::instance();  // main() has started MPI; tests and benches may not have
  comm::MpiCommunicator mpi_world(
      MPI_COMM_WORLD, "world",
      std::chrono::milliseconds(static_cast<int64_t>(c.comm.timeout.seconds * 1e3)));
  // NIC islands: the world renumbered island by island so replicas stay inside one.
  std::unique_ptr<comm::MpiCommunicator> renumbered;
  std::string islands_text;
  std::vector<std::string> class_of_rank;  // by renumbered rank
  if (!c.topology.hosts.empty()) {
    const std::vector<std::string> hosts = hostNames(c, mpi_world);
    comm::Islands islands;
    agreeOn(mpi_world, [&] { islands = islandsFor(c, hosts); });  // the same on every rank
    islands_text = describeIslands(islands);
    class_of_rank = classOfRank(islands);
    renumbered = mpi_world.split(0, islands.position[mpi_world.rank()], "world");
  }
  comm::MpiCommunicator& world = renumbered ? *renumbered : mpi_world;
  const int rank = world.rank(), ranks = world.size();
  NullBuffer null_buffer;
  std::ostream null_stream(&null_buffer);
  std::ostream& out = rank == 0 ? out_lead : null_stream;  // rank 0 speaks for the job

  // One run per run directory: rank 0 holds its lock until train() returns.
  RunDirLock run_lock;
  agreeOn(world, [&] {
    if (rank != 0 || options.dry_run) return;
    std::string stale;
    const std::string holder = run_lock.acquire(c.run.out_dir, &stale);
    if (!holder.empty())
      throw ConfigError(keyMessage(c, "run.out_dir",
                                   c.run.out_dir + " is in use by another lowband run (" + holder +
                                       "; its lock is " +
                                       (fs::path(c.run.out_dir) / "lowband.lock").string() +
                                       "). Wait for it to end, or set another run.out_dir"));
    if (!stale.empty())
      out << "run dir: " << c.run.out_dir << " was left locked by a run that is no longer running ("
          << stale << "); taking it over\n";
    checkRunDir(c, options);
  });
  const runtime::DeviceSelection device = runtime::selectDevice(c.device);
  runtime::Stream stream(device.device);
  const std::string precision = describePrecision(c, device.device);

  std::unique_ptr<RunData> data;
  agreeOn(world, [&] {
    if (c.model.kind == ModelKind::Gpt)
      data = std::make_unique<TokenData>(c, rank, ranks);
    else
      data = std::make_unique<ImageData>(c, rank, ranks);
  });
  std::unique_ptr<nn::Model> model = buildModel(c, device.device);
  nn::ParamStore& params = model->params();
  params.initialize(static_cast<uint64_t>(c.run.seed), stream);  // the same on every rank

  comm::Topology topology(world, tierSpecs(c, class_of_rank, rank),
                          static_cast<int>(c.topology.ranks_per_host), c.topology.emulate);
  const int outer_tier = std::max(0, topology.tierIndex(c.sync.outer.tier));
  schedules::ReplicaGroups groups(topology, world, outer_tier, innerCodecs(c),
                                  c.sync.inner.error_feedback);
  schedules::SyncSettings sync_settings = syncSettings(c, groups.replicaIndex());
  sync_settings.land_in_forward = true;  // the model's forward calls onParamsNeeded
  std::unique_ptr<schedules::Strategy> strategy =
      schedules::makeStrategy(sync_settings, params, groups);
  model->setGradsReadyHook([&](int group) { strategy->onGradsReady(group); });
  model->setParamsNeededHook([&](int group) { strategy->onParamsNeeded(group); });
  const auto [shard_begin, shard_end] = strategy->optimizerRange();  // ZeRO: this rank's shard
  nn::Optimizer optimizer(params, optimizerSettings(c), shard_begin, shard_end);
  const double peak = runtime::measureGemmPeak(stream, c.model.precision);

  // The start-up table (rank 0).
  auto row = [&](const char* key) -> std::ostream& {
    char k[16];
    std::snprintf(k, sizeof k, "%-11s", key);
    return out << k;
  };
  row("run") << c.run.name << ": " << c.run.steps << " steps -> " << c.run.out_dir
             << " (checkpoints "
             << (c.run.checkpoint_every > 0
                     ? "every " + std::to_string(c.run.checkpoint_every) + " steps and "
                     : "")
             << "at the end, keep " << c.run.keep_last << ")\n";
  row("device") << device.reason << "; " << omp_get_max_threads() << " thread(s), GEMM peak "
                << static_cast<int>(peak) << " GFLOP/s ("
                << runtime::precisionName(c.model.precision) << ")\n";
  row("world") << ranks << " rank(s) on " << topology.hosts() << " host(s): " << rankTable(world)
               << "\n";
  if (!islands_text.empty())
    row("islands") << islands_text << " (MPI ranks; renumbered island by island)\n";
  row("tiers");
  for (int i = 0; i < topology.levels(); ++i)
    out << (i ? " | " : "") << topology.tier(i).name << " x" << topology.tierSize(i) << " ("
        << format(Bandwidth{topology.tier(i).bandwidth}) << ", "
        << format(Duration{topology.tier(i).latency}) << ")";
  out << (c.topology.emulate ? ", emulated" : "")
      << (class_of_rank.empty() ? "" : " (per NIC class: rank 0's groups)") << "\n";
  row("sync") << groups.replicas() << " replica(s) of " << groups.replica().size()
              << " rank(s) across '" << topology.tier(outer_tier).name << "'; inner "
              << enumName(c.sync.inner.method) << "; outer " << strategy->describe() << "\n";
  row("model") << model->describe() << "; " << precision << "\n";
  row("data") << data->describe() << (ranks > 1 ? " per rank" : "") << "\n";
  row("optimizer") << enumName(c.optimizer.kind) << " lr " << c.optimizer.lr << ", warmup "
                   << c.optimizer.warmup << ", " << enumName(c.optimizer.schedule) << " to "
                   << c.optimizer.min_lr_ratio << " x lr, grad clip " << c.optimizer.grad_clip
                   << "\n";
  // The traffic this run will count (what the counters should show at the end).
  comm::TierBytes planned =
      plannedRunTraffic(c, *strategy, data->hasValidation(), params.device().isCuda());
  {
    std::string line;
    for (const auto& [tier, bytes] : planned) {
      if (bytes <= 0) continue;
      line += (line.empty() ? "" : " | ") + tier + " " +
              formatApprox(ByteSize{static_cast<uint64_t>(bytes / c.run.steps)}) + "/step";
    }
    row("traffic") << (line.empty() ? "none between ranks" : line)
                   << " (planned, sent per rank, mean over the run)\n";
  }
  {
    const auto param_bytes = static_cast<uint64_t>(params.size()) * sizeof(float);
    const uint64_t optimizer_bytes = optimizer.state().nbytes();
    const auto outer_bytes = static_cast<uint64_t>(strategy->outerStateBytes());
    row("memory") << "per rank: params " << formatApprox(ByteSize{param_bytes}) << ", grads "
                  << formatApprox(ByteSize{param_bytes}) << ", optimizer "
                  << formatApprox(ByteSize{optimizer_bytes}) << ", outer state "
                  << formatApprox(ByteSize{outer_bytes}) << "\n";
  }
  TrainResult result;
  result.gemm_peak_gflops = peak;
  result.optimizer_state_bytes = static_cast<int64_t>(optimizer.state().nbytes());
  result.replica = groups.replicaIndex();
  result.outer_state_bytes = strategy->outerStateBytes();
  if (options.dry_run) return result;

  const StopSignals stop_signals;
  Checkpoints checkpoints(world, c.run.out_dir, layoutOf(c, *model, groups, ranks),
                          c.run.keep_last);
  std::optional<Checkpoints::Found> resumed;
  if (!options.resume.empty()) {
    try {
      resumed = checkpoints.find(options.resume, out, checkResumeState);  // same on every rank
    } catch (const CheckpointError& e) {
      throw ConfigError(e.what());  // bad input, said once by rank 0
    }
    if (!resumed)
      out << "resume: no complete checkpoint in " << checkpoints.root().string()
          << "; starting at step 0\n";
  }
  LoopCounters n;
  int64_t first_step = 0;
  if (resumed && resumed->marker.step > c.run.steps)
    throw ConfigError(keyMessage(c, "run.steps",
                                 std::to_string(c.run.steps) + " is below the step " +
                                     std::to_string(resumed->marker.step) + " of " +
                                     resumed->dir.string() +
                                     "; raise run.steps to continue the run, or resume from an "
                                     "older checkpoint"));
  if (resumed && resumed->marker.step == c.run.steps) {
    out << "resume: " << resumed->dir.string() << " is at step " << c.run.steps
        << " = run.steps: the run is finished, nothing to train (raise run.steps to continue "
           "it)\n";
    result.resumed_from = c.run.steps;
    return result;
  }
  if (resumed && rank == 0) warnChangedSettings(c, resumed->dir, out);
  if (resumed) {
    agreeOn(world, [&] {
      const runtime::StateDict& state = resumed->state;
      runtime::getTensor(state, "model.params", stream, params.params());
      optimizer.loadState(stream, state);
      strategy->loadState(state);
      data->restore(state.value<nn::LoaderPosition>("data.position"));
      first_step = state.value<int64_t>("trainer.step");
      n = state.value<LoopCounters>("trainer.counters");
    });
    result.resumed_from = first_step;
    out << "resume: from " << resumed->dir.string() << " (step " << first_step << ")\n";
  }

  std::ofstream metrics;
  const fs::path metrics_path = fs::path(c.run.out_dir) / "metrics.jsonl";
  agreeOn(world, [&] {
    if (rank != 0) return;
    prepareRunDir(c, options.overwrite, resumed ? first_step : -1);
    metrics.open(metrics_path, std::ios::app);
    if (!metrics)
      throw ConfigError(keyMessage(c, "run.out_dir", "cannot write " + metrics_path.string()));
  });
  // Lines go out whole; a failed write (disk full) ends the run with its reason.
  auto writeMetrics = [&](const std::string& line) {
    if (rank != 0) return;
    metrics << line << "\n" << std::flush;
    if (!metrics)
      LB_THROW(TrainingError,
               "cannot write " + metrics_path.string() + ": " + std::strerror(errno));
  };
  const double flops_per_step =
      model->flopsPerPosition() * static_cast<double>(data->positionsPerBatch());
  // On a terminal, a progress bar redrawn in place between the log lines; every line printed
  // during training goes through say(), which clears it first.
  bool bar_shown = false;
  auto lastDraw = Clock::now();
  auto say = [&]() -> std::ostream& {
    if (bar_shown) out << "\r\033[K";
    bar_shown = false;
    return out;
  };
  auto drawProgress = [&](int64_t done, double steps_per_s) {
    if (!options.progress || secondsSince(lastDraw) < 0.2) return;
    lastDraw = Clock::now();
    constexpr int kWidth = 30;
    const double f = static_cast<double>(done) / static_cast<double>(c.run.steps);
    const int filled = static_cast<int>(f * kWidth);
    std::string bar(static_cast<std::size_t>(kWidth), ' ');
    for (int i = 0; i < filled; ++i) bar[i] = '=';
    if (filled < kWidth) bar[filled] = '>';
    char text[160];
    std::snprintf(text, sizeof text, "\r[%s] %3d%% step %lld/%lld | %.1f steps/s | ETA %s",
                  bar.c_str(), static_cast<int>(f * 100), static_cast<long long>(done),
                  static_cast<long long>(c.run.steps), steps_per_s,
                  duration(static_cast<double>(c.run.steps - done) / steps_per_s).c_str());
    out << text << std::flush;
    bar_shown = true;
  };
  // theta_global, for evaluation and checkpoints, and the replica's parameters while evaluation
  // holds theta_global in their place (both sized on use).
  std::vector<float> global, saved;
  double eval_s = 0;
  auto evaluate = [&](int64_t step) {
    if (!data->hasValidation()) return;
    const auto eval_start = Clock::now();
    RunData::Eval e;
    if (params.device().isCuda()) {  // one process, no outer state: theta_global is the params
      e = data->evaluate(*model, stream, c.run.eval_batches);
    } else {
      // On theta_global (the outer state) where the method keeps one; then back to the
      // replica's (saved after evalParams, which may land a deferred outer update into them).
      float* theta = params.params().data<float>();
      global.resize(static_cast<std::size_t>(params.size()));
      saved.resize(global.size());
      strategy->evalParams(global.data());
      std::copy_n(theta, params.size(), saved.data());
      std::copy_n(global.data(), params.size(), theta);
      e = data->evaluate(*model, stream, c.run.eval_batches);
      std::copy_n(saved.data(), params.size(), theta);
    }
    float sums[2] = {static_cast<float>(e.loss), static_cast<float>(e.accuracy)};
    world.allReduce(sums, 2, comm::ReduceOp::Avg);  // replicas may differ (outer none)
    e.loss = sums[0];
    e.accuracy = e.accuracy >= 0 ? sums[1] : -1;
    result.val_loss = e.loss;
    result.val_accuracy = e.accuracy;
    char line[160];
    if (e.accuracy >= 0)
      std::snprintf(line, sizeof line, "{\"step\":%lld,\"val_loss\":%s,\"val_accuracy\":%s}",
                    static_cast<long long>(step), json(e.loss, "%.6f").c_str(),
                    json(e.accuracy, "%.6f").c_str());
    else
      std::snprintf(line, sizeof line, "{\"step\":%lld,\"val_loss\":%s}",
                    static_cast<long long>(step), json(e.loss, "%.6f").c_str());
    writeMetrics(line);
    say() << "eval step " << step << ": val loss " << e.loss;
    if (e.accuracy >= 0) out << ", accuracy " << e.accuracy * 100 << "%";
    out << "\n";
    eval_s += secondsSince(eval_start);
  };

  // A checkpoint of the state after `done` steps: every rank's state, theta_global as the model.
  const std::string resolved_yaml = "# resolved from " + c.source + "\n" + toYaml(c);
  auto checkpoint = [&](int64_t done) {
    runtime::StateDict state(rankStateName(rank));
    runtime::putTensor(state, "model.params", stream, params.params());
    optimizer.saveState(stream, state);
    strategy->saveState(state);  // waits for exchanges in flight, keeps their results
    state.putValue("data.position", data->position());
    state.putValue("trainer.step", done);
    state.putValue("trainer.counters", n);
    global.resize(static_cast<std::size_t>(params.size()));
    if (params.device().isCuda())  // one process: theta_global is the parameters
      runtime::copyBytes(stream, global.data(), runtime::Device::cpu(), params.params().raw(),
                         params.device(), global.size() * sizeof(float));
    else
      strategy->evalParams(global.data());  // collective over the replica
    stream.synchronize();
    const std::vector<uint8_t> model_bytes =
        rank == 0 ? modelFile(params, global.data(), c, done) : std::vector<uint8_t>{};
    const fs::path dir = checkpoints.write(done, state, model_bytes, resolved_yaml);
    writeMetrics("{\"step\":" + std::to_string(done) + ",\"checkpoint\":\"" + dir.string() + "\"}");
    say() << "checkpoint: " << dir.string() << "\n";
    result.last_checkpoint = dir.string();
  };

  const auto train_start = Clock::now();
  auto window_start = Clock::now();
  std::map<std::string, comm::OpTraffic> last_traffic = topology.tierTraffic();
  // Preemption: each step boundary starts a world sum of the signals seen (per signal: the
  // ranks that saw it), awaited one step later (its latency hides behind that step), so every
  // rank stops after the same step and names the same signal, whichever rank received it.
  float stop_votes[2] = {0, 0};  // SIGTERM, SIGUSR1
  std::shared_ptr<comm::Work> stop_vote;
  for (int64_t step = first_step; step < c.run.steps; ++step) {
    runtime::fill(stream, params.grads(), 0.0f);
    const float loss = model->forward(stream, data->next());
    model->backward(stream);
    strategy->beforeOptimizerStep();
    // The norm of the replica's mean gradient: every rank of a replica agrees on a skip.
    const double norm = strategy->gradientNorm(stream);
    ++n.window_all;
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      ++n.skipped;
      say() << "step " << step + 1 << ": skipped, "
            << (std::isfinite(loss) ? "gradient norm" : "loss") << " is not finite\n";
      if (++n.bad_in_a_row >= c.run.max_bad_steps)
        LB_THROW(TrainingError, "training diverged: " + std::to_string(n.bad_in_a_row) +
                                    " steps in a row with a NaN/Inf loss or gradient "
                                    "(run.max_bad_steps). HINT: lower optimizer.lr or raise "
                                    "optimizer.warmup");
    } else {
      n.bad_in_a_row = 0;
      optimizer.apply(stream, step, norm);
      n.window_loss += loss;
      ++n.window_steps;
      ++n.updated;
    }
    strategy->afterOptimizerStep(step);  // on skipped steps too: collectives stay matched
    const bool last = step + 1 == c.run.steps;
    if (last) strategy->finish();
    // Logging and evaluation happen on their steps even when that step was skipped.
    if ((step + 1) % c.run.log_every == 0 || last) {
      stream.synchronize();
      float sums[2] = {static_cast<float>(n.window_loss), static_cast<float>(n.window_steps)};
      world.allReduce(sums, 2);  // the loss of the whole job, not only rank 0's
      const double mean_loss = sums[1] > 0 ? sums[0] / sums[1] : std::nan("");
      if (sums[1] > 0) result.final_loss = mean_loss;
      const double dt = secondsSince(window_start);
      const double per_step = dt / static_cast<double>(n.window_all);
      const double tokens_per_s = static_cast<double>(data->positionsPerBatch()) * ranks / per_step;
      const double mfu = flops_per_step / per_step / (peak * 1e9);
      const double eta = per_step * static_cast<double>(c.run.steps - step - 1);
      const schedules::SyncStats& sync = strategy->stats();
      const std::map<std::string, comm::OpTraffic> traffic = topology.tierTraffic();
      std::string tiers_json, tiers_text;
      for (const auto& [tier, t] : traffic) {
        const double step_bytes =
            (t.bytes_sent - last_traffic[tier].bytes_sent) / static_cast<double>(n.window_all);
        char part[200];
        std::snprintf(part, sizeof part,
                      "%s\"%s\":{\"bytes_per_step\":%.0f,\"bytes\":%.0f,\"blocked_s\":%.4f}",
                      tiers_json.empty() ? "" : ",", tier.c_str(), step_bytes, t.bytes_sent,
                      t.blocked_s);
        tiers_json += part;
        if (t.bytes_sent > 0)
          tiers_text += " | " + tier + " " +
                        formatApprox(ByteSize{static_cast<uint64_t>(step_bytes)}) + "/step";
      }
      last_traffic = traffic;
      std::string outer_json;
      for (int64_t n : sync.fragment_steps) {
        if (!outer_json.empty()) outer_json += ',';
        outer_json += std::to_string(n);
      }
      std::string line(512 + tiers_json.size() + outer_json.size(), '\0');
      line.resize(std::snprintf(
          line.data(), line.size(),
          "{\"step\":%lld,\"loss\":%s,\"lr\":%s,\"grad_norm\":%s,\"tokens_per_s\":%s,"
          "\"mfu\":%s,\"elapsed_s\":%.3f,\"tiers\":{%s},\"comm_blocked_s\":%.4f,"
          "\"comm_hidden_fraction\":%.4f,\"outer_blocked_s\":%.4f,"
          "\"outer_hidden_fraction\":%.4f,\"outer_steps\":[%s],\"skipped_steps\":%lld}",
          static_cast<long long>(step + 1), json(mean_loss, "%.6f").c_str(),
          json(optimizer.lrAt(step), "%.6g").c_str(), json(norm, "%.6g").c_str(),
          json(tokens_per_s, "%.1f").c_str(), json(mfu, "%.4f").c_str(), secondsSince(train_start),
          tiers_json.c_str(), sync.total().blocked_s, sync.total().hiddenFraction(),
          sync.outer.blocked_s, sync.outer.hiddenFraction(), outer_json.c_str(),
          static_cast<long long>(n.skipped)));
      writeMetrics(line);
      char text[256];
      std::snprintf(text, sizeof text,
                    "step %lld/%lld | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | MFU %.0f%%",
                    static_cast<long long>(step + 1), static_cast<long long>(c.run.steps),
                    mean_loss, optimizer.lrAt(step), norm, tokens_per_s, mfu * 100);
      say() << text << tiers_text;
      if (ranks > 1)
        out << " | comm hidden "
            << static_cast<int>(std::lround(sync.total().hiddenFraction() * 100)) << "%";
      out << " | ETA " << duration(eta) << "\n" << std::flush;
      result.tokens_per_s = tokens_per_s;
      result.mfu = mfu;
      window_start = Clock::now();
      n.window_steps = 0;
      n.window_all = 0;
      n.window_loss = 0;
    }
    if ((c.run.eval_every > 0 && (step + 1) % c.run.eval_every == 0 && !last)) evaluate(step + 1);
    if (rank == 0 && options.progress && n.window_all > 0)
      drawProgress(step + 1, static_cast<double>(n.window_all) / secondsSince(window_start));
    int stop_signal = 0;
    if (stop_vote) {
      stop_vote->wait();
      stop_vote.reset();
      // SIGUSR1 (Slurm's warning, which its SIGTERM may follow) names the stop when any rank
      // saw it.
      stop_signal = stop_votes[1] > 0 ? SIGUSR1 : stop_votes[0] > 0 ? SIGTERM : 0;
    }
    const bool stop = stop_signal != 0 && !last;
    if (stop) comm::stopLinkEmulation();  // ranks the signal missed: no slow exchange either
    if ((c.run.checkpoint_every > 0 && (step + 1) % c.run.checkpoint_every == 0) || last || stop)
      checkpoint(step + 1);
    if (stop) {
      result.preempted = true;
      say() << "preempted (" << signalName(stop_signal) << ") after step " << step + 1
            << ": resume with --resume auto\n";
      break;
    }
    if (!last) {
      const int seen = g_stop_signals.load();
      stop_votes[0] = (seen & kSawTerm) ? 1.0f : 0.0f;
      stop_votes[1] = (seen & kSawUsr1) ? 1.0f : 0.0f;
      stop_vote = world.allReduceAsync(stop_votes, 2, comm::ReduceOp::Sum);
    }
  }
  if (stop_vote) stop_vote->wait();  // started after a last step that broke out early
  result.steps = n.updated;
  result.skipped_steps = n.skipped;
  result.train_s = secondsSince(train_start) - eval_s;
  if (!result.preempted) evaluate(c.run.steps);
  const schedules::SyncStats& sync = strategy->stats();
  result.comm_blocked_s = sync.total().blocked_s;
  result.comm_hidden_fraction = sync.total().hiddenFraction();
  result.outer_blocked_s = sync.outer.blocked_s;
  result.outer_hidden_fraction = sync.outer.hiddenFraction();
  result.outer_steps = sync.outer_steps;
  result.planned_tier_bytes = planned;
  for (const auto& [tier, t] : topology.tierTraffic()) result.tier_bytes[tier] = t.bytes_sent;
  result.wall_s = secondsSince(start);
  if (!result.preempted && !resumed) {
    // Planned and counted traffic side by side (a resumed run counts only its own part).
    std::string line;
    for (const auto& [tier, bytes] : result.tier_bytes) {
      if (bytes <= 0 && planned[tier] <= 0) continue;
      line += (line.empty() ? "" : ", ") + tier + " " +
              formatApprox(ByteSize{static_cast<uint64_t>(bytes)}) + " (planned " +
              formatApprox(ByteSize{static_cast<uint64_t>(planned[tier])}) + ")";
    }
    if (!line.empty()) say() << "traffic: sent per rank " << line << "\n";
  }
  say() << "done: " << result.steps << " steps in " << duration(result.wall_s) << ", final loss "
        << result.final_loss;
  if (result.val_loss >= 0) out << ", val loss " << result.val_loss;
  if (result.val_accuracy >= 0) out << ", accuracy " << result.val_accuracy * 100 << "%";
  out << "; metrics in " << metrics_path.string() << "\n";
  return result;
}

}  // namespace lowband::launcher
