#include "launcher/setup.h"

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "launcher/agree.h"
#include "nn/gpt.h"
#include "nn/mlp.h"
#include "runtime/nn_ops.h"
#if LB_WITH_CUDA
#include "runtime/cuda/backend.h"
#endif

namespace lowband::launcher {

// Config values this version accepts but cannot run yet: refused, never silently replaced.
void checkSupported(const Config& c) {
  if (c.comm.backend == CommBackend::Nccl)
    throw ConfigError(
        keyMessage(c, "comm.backend", "nccl is not wired into training yet; use auto or mpi"));
}

std::unique_ptr<nn::Model> buildModel(const Config& c, runtime::Device device) {
  if (c.model.kind == ModelKind::Gpt)
    return std::make_unique<nn::Gpt>(nn::GptShape{c.model.n_layer, c.model.d_model, c.model.n_head,
                                                  c.model.seq_len, c.model.vocab},
                                     device, nn::ParamStore::kAlign, c.model.precision);
  return std::make_unique<nn::Mlp>(
      nn::MlpShape{c.model.input, c.model.hidden, c.model.classes,
                   c.model.activation == Activation::Relu ? nn::MlpActivation::Relu
                                                          : nn::MlpActivation::Gelu},
      device, nn::ParamStore::kAlign, c.model.precision == runtime::Precision::Tf32);
}

std::string checkPrecision(runtime::Precision p, runtime::Device device, const nn::GptShape* gpt,
                           int64_t batch, std::string* description) {
  using runtime::Precision;
  if (p == Precision::Fp32) {
    *description = "fp32";
    return "";
  }
  if (!device.isCuda()) {
    *description = p == Precision::Tf32
                       ? "tf32 (the CPU has no TF32: it computes fp32)"
                       : "bf16 (the CPU reference: the GPU's bf16 roundings, f32 GEMMs)";
    return "";
  }
#if LB_WITH_CUDA
  const int cc = runtime::cuda::computeCapability(device.index);
  if (cc < 80)
    return std::string(runtime::precisionName(p)) +
           " needs the tensor cores of compute capability 8.0 or newer; " + device.str() + " is " +
           runtime::cuda::deviceName(device.index) + ". HINT: use precision: fp32";
  if (p == Precision::Tf32) {
    *description = "tf32 (f32 GEMMs on TF32 tensor cores)";
    return "";
  }
  std::string attention = "cuDNN fused attention";
  if (gpt) {
    const runtime::Stream probe(device);
    const std::string why = runtime::bf16AttentionFallbackReason(
        probe, batch, gpt->seq_len, gpt->n_head, gpt->d_model / gpt->n_head);
    if (!why.empty()) attention = "f32 attention, no cuDNN fused kernel: " + why;
  }
  *description = "bf16 (bf16 GEMMs on tensor cores, f32 master weights; " + attention + ")";
  return "";
#else
  (void)gpt, (void)batch;
  return "this build has no CUDA backend";
#endif
}

std::string describePrecision(const Config& c, runtime::Device device) {
  const nn::GptShape shape{c.model.n_layer, c.model.d_model, c.model.n_head, c.model.seq_len,
                           c.model.vocab};
  std::string description;
  const std::string problem =
      checkPrecision(c.model.precision, device, c.model.kind == ModelKind::Gpt ? &shape : nullptr,
                     c.data.batch_size, &description);
  if (!problem.empty()) throw ConfigError(keyMessage(c, "model.precision", problem));
  return description;
}

nn::OptimizerSettings optimizerSettings(const Config& c) {
  const OptimizerConfig& o = c.optimizer;
  nn::OptimizerSettings s;
  s.type = o.kind == OptimizerKind::AdamW ? nn::OptimizerType::AdamW : nn::OptimizerType::Sgd;
  s.lr = static_cast<float>(o.lr);
  s.beta1 = static_cast<float>(o.betas[0]);
  s.beta2 = static_cast<float>(o.betas[1]);
  s.eps = static_cast<float>(o.eps);
  s.weight_decay = static_cast<float>(o.weight_decay);
  s.momentum = static_cast<float>(o.momentum);
  s.nesterov = o.nesterov;
  s.grad_clip = static_cast<float>(o.grad_clip);
  s.warmup = o.warmup;
  s.schedule = o.schedule == LrSchedule::Cosine   ? nn::Schedule::Cosine
               : o.schedule == LrSchedule::Linear ? nn::Schedule::Linear
                                                  : nn::Schedule::Constant;
  s.min_lr_ratio = static_cast<float>(o.min_lr_ratio);
  s.total_steps = c.run.steps;
  return s;
}

schedules::SyncSettings syncSettings(const Config& c, int replica) {
  const OuterSyncConfig& o = c.sync.outer;
  schedules::SyncSettings s;
  s.inner = c.sync.inner.method;
  auto tierOf = [&](const std::string& v) { return v == "replica" ? -1 : tierIndex(c, v); };
  s.shard_optimizer_tier = tierOf(c.sync.inner.shard.optimizer);
  s.shard_grads_tier = tierOf(c.sync.inner.shard.grads);
  s.method = o.method;
  s.bucket_bytes = static_cast<int64_t>(c.comm.bucket.bytes);
  s.H = o.H;
  s.fragments = o.method == OuterMethod::StreamingDiloco ? o.resolvedFragments(c.model) : 1;
  s.strided = o.pattern == FragmentPattern::Strided;
  s.embeddings_own = o.embeddings == EmbeddingPlacement::Own;
  s.overlap = o.overlap_per_replica.empty() ? o.overlap : o.overlap_per_replica.at(replica);
  s.alpha = o.alpha;
  s.codec = {o.codec, o.codec_block, o.topk_ratio};
  s.error_feedback = o.error_feedback;
  s.optimizer = o.optimizer.kind;
  s.lr = o.optimizer.lr;
  s.momentum = o.optimizer.momentum;
  s.penalty = o.penalty;
  s.penalty_divisor = o.penalty_divisor;
  s.penalty_eps = o.penalty_eps;
  s.clip = o.clip.mode;
  s.clip_threshold = o.clip.threshold;
  return s;
}

std::vector<comm::TierSpec> tierSpecs(const Config& c,
                                      const std::vector<std::string>& class_of_rank, int64_t rank) {
  const auto world = static_cast<int64_t>(class_of_rank.size());
  int64_t fixed = 1;
  for (const TierConfig& t : c.topology.tiers) fixed *= t.size.isRest() ? 1 : t.size.ranks;
  std::vector<comm::TierSpec> tiers;
  int64_t stride = 1;
  for (const TierConfig& t : c.topology.tiers) {
    comm::TierSpec spec{t.name, t.size.ranks, t.bandwidth.bytes_per_s, t.latency.seconds};
    const int64_t k = t.size.isRest() ? world / fixed : t.size.ranks;
    // The members of `rank`'s group at this tier: they differ only in this tier's coordinate.
    // (A world the tiers do not fit is left to comm::Topology, which says so.)
    if (!t.classes.empty() && world > 0 && world % fixed == 0 && k > 0) {
      const int64_t base = rank - (rank / stride) % k * stride;
      for (int64_t j = 0; j < k && base + j * stride < world; ++j) {
        const std::string& nic = class_of_rank[base + j * stride];
        double bandwidth = t.bandwidth.bytes_per_s, latency = t.latency.seconds;
        for (const ClassLink& l : t.classes)
          if (enumName(l.nic) == nic) {
            bandwidth = l.bandwidth.bytes_per_s;
            latency = l.latency.seconds;
          }
        spec.bandwidth = j == 0 ? bandwidth : std::min(spec.bandwidth, bandwidth);
        spec.latency = j == 0 ? latency : std::max(spec.latency, latency);
      }
    }
    tiers.push_back(spec);
    stride *= std::max<int64_t>(k, 1);
  }
  return tiers;
}

std::vector<comm::TierSpec> slowestTierSpecs(const Config& c,
                                             const std::vector<std::string>& class_of_rank) {
  std::vector<comm::TierSpec> slowest = tierSpecs(c, class_of_rank, 0);
  for (std::size_t r = 1; r < class_of_rank.size(); ++r) {
    const std::vector<comm::TierSpec> mine = tierSpecs(c, class_of_rank, static_cast<int64_t>(r));
    for (std::size_t i = 0; i < slowest.size(); ++i) {
      slowest[i].bandwidth = std::min(slowest[i].bandwidth, mine[i].bandwidth);
      slowest[i].latency = std::max(slowest[i].latency, mine[i].latency);
    }
  }
  return slowest;
}

std::vector<std::string> classOfRank(const comm::Islands& islands) {
  std::vector<std::string> out(islands.position.size());
  for (std::size_t r = 0; r < islands.position.size(); ++r)
    out.at(static_cast<std::size_t>(islands.position[r])) =
        islands.classes.at(static_cast<std::size_t>(islands.island_of_rank[r]));
  return out;
}

std::string machineName() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string blockHostName(int64_t rank, int64_t ranks_per_host) {
  return "host" + std::to_string(rank / ranks_per_host);
}

std::vector<std::string> hostNames(const Config& c, comm::Communicator& world) {
  return gatherText(world, c.topology.ranks_per_host > 0
                               ? blockHostName(world.rank(), c.topology.ranks_per_host)
                               : machineName());
}

comm::Islands islandsFor(const Config& c, const std::vector<std::string>& host_of_rank) {
  std::vector<std::string> classes;
  for (const std::string& host : host_of_rank) {
    const HostRule* rule = nullptr;
    for (const HostRule& h : c.topology.hosts)
      if (fnmatch(h.match.c_str(), host.c_str(), 0) == 0) {
        rule = &h;
        break;
      }
    if (!rule)
      throw ConfigError(keyMessage(
          c, "topology.hosts",
          "no rule matches host '" + host + "' (add a last rule {match: \"*\", nic: ...})"));
    classes.emplace_back(enumName(rule->nic));
  }
  comm::Islands islands = comm::islandsOf(classes, host_of_rank);
  // Ranks per replica: the tiers below the outer one.
  int64_t replica = 1;
  for (const TierConfig& t : c.topology.tiers) {
    if (t.name == c.sync.outer.tier) break;
    replica *= t.size.ranks;
  }
  for (std::size_t i = 0; i < islands.classes.size(); ++i)
    if (islands.ranks[i] % replica != 0)
      throw ConfigError(keyMessage(
          c, "topology.hosts",
          "the " + islands.classes[i] + " island has " + std::to_string(islands.ranks[i]) +
              " rank(s), not a multiple of the replica size " + std::to_string(replica) +
              ": a replica would span two islands (change the tiers below '" + c.sync.outer.tier +
              "' or the islands)"));
  return islands;
}

std::string describeIslands(const comm::Islands& islands) {
  std::string text;
  for (std::size_t i = 0; i < islands.classes.size(); ++i) {
    if (!text.empty()) text += " | ";
    text += islands.classes[i] + ": ranks ";
    bool first = true;
    for (std::size_t r = 0; r < islands.island_of_rank.size(); ++r) {
      if (islands.island_of_rank[r] != static_cast<int>(i)) continue;
      if (!first) text += ",";
      text += std::to_string(r);
      first = false;
    }
  }
  return text;
}

std::map<int, runtime::CodecSpec> innerCodecs(const Config& c) {
  std::map<int, runtime::CodecSpec> out;
  for (const auto& [tier, codec] : c.sync.inner.codec)
    for (std::size_t i = 0; i < c.topology.tiers.size(); ++i)
      if (c.topology.tiers[i].name == tier)
        out[static_cast<int>(i)] = {codec, c.sync.outer.codec_block, c.sync.outer.topk_ratio};
  return out;
}

comm::TierBytes plannedRunTraffic(const Config& c, const schedules::Strategy& strategy,
                                  bool has_validation, bool cuda) {
  const auto multiples = [&](int64_t every) { return every > 0 ? (c.run.steps - 1) / every : 0; };
  const int64_t gathers = (has_validation ? multiples(c.run.eval_every) + 1 : 0) +
                          (cuda ? 0 : multiples(c.run.checkpoint_every) + 1);
  comm::TierBytes planned = strategy.plannedTraffic(c.run.steps);
  comm::addTraffic(planned, strategy.evalTraffic(), static_cast<double>(gathers));
  return planned;
}

}  // namespace lowband::launcher
