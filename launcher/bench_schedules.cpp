#include "launcher/bench_schedules.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <vector>

#include "comm/mpi_runtime.h"
#include "launcher/config.h"
#include "launcher/trainer.h"

namespace lowband::launcher {

namespace {

struct BenchShape {
  int64_t layers, d_model, seq, batch, steps, H;
  double lr;
};

// Quality: a small model for many steps, because what decides the outer methods' gap to ddp at
// a fixed H is the number of outer steps (240 here; streaming trailed ddp by 4.7% at 80 and by
// 2.05% at 160, diloco by 17% at 12).
// Overlap: a model big enough that a step outlasts a fragment's exchange over the emulated
// link, as at the scale the methods are meant for. Quick: about a minute each on 2 cores.
BenchShape qualityShape(bool quick) {
  return quick ? BenchShape{4, 64, 64, 8, 300, 25, 2e-3}
               : BenchShape{4, 64, 64, 8, 12000, 50, 2e-3};
}
BenchShape overlapShape(bool quick) {
  return quick ? BenchShape{4, 64, 64, 8, 48, 12, 2e-3} : BenchShape{4, 128, 128, 8, 120, 20, 2e-3};
}

std::string methodYaml(const std::string& method, const BenchShape& b) {
  std::ostringstream y;
  y << "sync:\n  inner: {method: ddp}\n  outer:\n    method: " << method << "\n    tier: wan\n";
  if (method == "diloco" || method == "streaming_diloco" || method == "co2")
    y << "    H: " << b.H << "\n";
  if (method == "diloco") y << "    codec: none\n";
  if (method == "streaming_diloco") y << "    fragments: 4\n    overlap: 1\n    codec: fp4\n";
  if (method == "co2")  // configs/co2.yaml's outer settings
    y << "    optimizer: {kind: nesterov, lr: 0.7, momentum: 0.5}\n"
         "    penalty: gap\n    clip: {mode: value, threshold: 1.0}\n";
  return y.str();
}

std::string runYaml(const std::string& name, const BenchShape& b, const std::string& out_dir,
                    const std::string& data, bool validate) {
  std::ostringstream y;
  y << "run: {name: " << name << ", seed: 1234, steps: " << b.steps << ", out_dir: " << out_dir
    << "/" << name << ", log_every: " << std::max<int64_t>(1, b.steps / 40)
    << ", eval_every: 0, eval_batches: 40}\n"
    << "device: cpu\n"
    << "model: {kind: gpt, n_layer: " << b.layers << ", d_model: " << b.d_model
    << ", n_head: 4, seq_len: " << b.seq << ", vocab: 256}\n"
    << "data: {train: " << data << "/train_*.bin"
    << (validate ? ", val: " + data + "/val_*.bin" : "") << ", batch_size: " << b.batch << "}\n"
    << "optimizer: {kind: adamw, lr: " << b.lr << ", warmup: " << b.steps / 20
    << ", schedule: cosine, grad_clip: 1.0}\n";
  return y.str();
}

TrainResult runOne(const std::string& yaml, const std::string& name, const ScheduleBenchOptions& o,
                   std::ostream& out) {
  LoadOptions load;
  load.world = comm::MpiRuntime::instance().size();
  const Config config = parseConfig(yaml, "bench schedules (" + name + ")", load);
  std::ostringstream quiet;
  TrainOptions train_options;
  train_options.overwrite = true;  // the bench's own run directories
  return train(config, train_options, o.verbose ? out : quiet);
}

void line(std::ostream& out, bool lead, const std::string& text) {
  if (lead) out << text << "\n" << std::flush;
}

}  // namespace

void benchSchedules(const ScheduleBenchOptions& o, std::ostream& out) {
  comm::MpiRuntime& mpi = comm::MpiRuntime::instance();
  const bool lead = mpi.rank() == 0;
  const int world = mpi.size();
  char text[512];
  if (o.study == "quality" || o.study == "all") {
    const BenchShape b = qualityShape(o.quick);
    const std::string topology =
        "topology: {tiers: [{name: wan, size: rest, bandwidth: 1Gbit, latency: 1ms}]}\n";
    const int64_t tokens = b.steps * b.batch * b.seq * world;
    TrainResult ddp;
    for (const std::string method : {"ddp", "diloco", "streaming_diloco", "co2"}) {
      const std::string name = "quality_" + method;
      const TrainResult r =
          runOne(runYaml(name, b, o.out_dir, o.data, true) + topology + methodYaml(method, b), name,
                 o, out);
      if (method == "ddp") ddp = r;
      const double bytes = r.tier_bytes.count("wan") ? r.tier_bytes.at("wan") : 0;
      const double ddp_bytes = ddp.tier_bytes.count("wan") ? ddp.tier_bytes.at("wan") : 0;
      if (o.json)
        std::snprintf(
            text, sizeof text,
            "{\"study\":\"quality\",\"method\":\"%s\",\"replicas\":%d,\"tokens\":%lld,"
            "\"steps\":%lld,\"final_val_loss\":%.5f,\"ddp_final_val_loss\":%.5f,"
            "\"loss_ratio\":%.4f,\"bytes_outer\":%.0f,\"ddp_bytes\":%.0f,"
            "\"bytes_reduction\":%.1f,\"wall_s\":%.1f,\"outer_steps\":%lld}",
            method.c_str(), world, static_cast<long long>(tokens), static_cast<long long>(b.steps),
            r.val_loss, ddp.val_loss, r.val_loss / ddp.val_loss, bytes, ddp_bytes,
            bytes > 0 ? ddp_bytes / bytes : 0.0, r.wall_s, static_cast<long long>(r.outer_steps));
      else
        std::snprintf(text, sizeof text,
                      "quality %-16s %d replicas, %lld tokens: val loss %.4f (ddp %.4f, %+.2f%%), "
                      "%.3g MB across replicas per rank (ddp/this %.0fx), %.0f s",
                      method.c_str(), world, static_cast<long long>(tokens), r.val_loss,
                      ddp.val_loss, (r.val_loss / ddp.val_loss - 1) * 100, bytes / 1e6,
                      bytes > 0 ? ddp_bytes / bytes : 0.0, r.wall_s);
      line(out, lead, text);
    }
  }
  if (o.study == "overlap" || o.study == "all") {
    if (world % 2 != 0) {
      line(out, lead, "overlap: skipped, needs an even number of ranks (2 replicas)");
      return;
    }
    const BenchShape b = overlapShape(o.quick);
    const std::string topology =
        "topology:\n  emulate: true\n  tiers:\n"
        "    - {name: node, size: " +
        std::to_string(world / 2) +
        ", bandwidth: 100Gbit, latency: 5us}\n"
        "    - {name: wan, size: rest, bandwidth: 100Mbit, latency: 20ms}\n";
    double base_step = 0;
    for (const std::string method : {"none", "streaming_diloco", "diloco", "ddp"}) {
      const std::string name = "overlap_" + method;
      const TrainResult r =
          runOne(runYaml(name, b, o.out_dir, o.data, false) + topology + methodYaml(method, b),
                 name, o, out);
      const double step = r.train_s / static_cast<double>(b.steps);
      if (method == "none") base_step = step;
      if (o.json)
        std::snprintf(text, sizeof text,
                      "{\"study\":\"overlap\",\"method\":\"%s\",\"replicas\":2,\"ranks\":%d,"
                      "\"bandwidth_mbit\":100,\"latency_ms\":20,\"step_s\":%.4f,"
                      "\"no_comm_step_s\":%.4f,\"step_time_ratio\":%.4f,"
                      "\"outer_hidden_fraction\":%.3f}",
                      method.c_str(), world, step, base_step, step / base_step,
                      r.outer_hidden_fraction);
      else
        std::snprintf(text, sizeof text,
                      "overlap %-16s 2 replicas over 100 Mbit/s, 20 ms: step %.1f ms, %.3fx "
                      "the step without outer communication; %.0f%% of outer exchange time "
                      "hidden",
                      method.c_str(), step * 1e3, step / base_step, r.outer_hidden_fraction * 100);
      line(out, lead, text);
    }
  }
}

}  // namespace lowband::launcher
