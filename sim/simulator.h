// `lowband simulate` (docs/studies.md): the compute utilisation (compute time / wall time) of one
// replica's steady-state step sequence when M replicas are joined by one link of bandwidth B and
// latency lat, as a per-layer DAG per step on one compute stream and one link:
//   forward of layer l (T / (3L)); backward of layer l, activations then weights (2T / (3L));
//   an exchange of w wire bytes issued at time t begins at b = max(t, link free), ends at
//   b + w / B + lat, and keeps the link busy until b + w / B (the emulated link's model,
//   comm/link.h: bandwidth is shared in issue order, latency overlaps);
//   wire bytes of an all-reduce of p parameters at `bits` each: 2 (M-1)/M * p * bits / 8.
// Methods (P parameters, L layers, each P / L), as their descriptors' schedules say:
//   ddp:       every step, each layer's gradient all-reduce is issued when its backward-weights
//              ends; the next step's forward of that layer waits for it.
//   local_sgd, diloco: after every H-th step all P parameters are exchanged; the next forward
//              waits.
//   streaming_diloco: fragments of `fragment_layers` consecutive layers; fragment p (offset
//              t_p = round(p H / F)) is exchanged after each step t with (t + 1 - t_p) mod H
//              == 0; the forward of its layers in step t + 1 + tau waits for it (tau = 0:
//              blocking).
//   co2:       all P parameters after every H-th step (a round), applied one round late: the
//              forward of the round after next waits for it.
// Utilisation = W T / (start of step s0 + W - start of step s0) over W = 4 H steps after
// s0 = 2 H steps of warm-up (whole periods of every schedule, so closed forms hold exactly:
// diloco gives H T / (H T + lat + w / B)).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "schedules/methods.h"

namespace lowband::sim {

LB_DEFINE_ERROR(SimError, "simulate");

// The methods are the registry's (schedules/methods.h); each one's schedule says when it
// exchanges and when an exchange must have landed.
using Method = schedules::OuterMethod;
const char* methodName(Method m);
std::vector<std::string> methodNames();       // the methods that exchange, in enum order
Method methodNamed(const std::string& name);  // SimError for an unknown name or none

struct ModelShape {
  std::string name;  // "1b", "custom", ...
  int64_t layers = 24;
  double params = 1e9;
  double step_s = 0.1;          // compute time of one step (forward + backward)
  int64_t H = 100;              // inner steps per outer round
  int64_t fragment_layers = 3;  // streaming
};

// The presets of docs/studies.md: 1b, 10b, 100b.
const std::vector<ModelShape>& presets();
const ModelShape* findPreset(const std::string& name);  // null when unknown

struct Setup {
  Method method = Method::Ddp;
  int64_t overlap = 0;  // streaming tau
  double bits = 16;     // per exchanged parameter (bf16 as large runs exchange)
  int64_t replicas = 2;
};

struct LinkSpec {
  double bits_per_s = 1e9;
  double latency_s = 0;
};

double utilization(const ModelShape& model, const Setup& setup, const LinkSpec& link);
// The same DAG for any schedule: `layers` blocks, steps of `step_s` seconds of compute, and an
// exchange of the parameters of k blocks taking k / layers * full_wire_s + latency_s on the
// link (what `lowband plan` predicts a config's exposed outer exchanges with). The warm-up is 2
// and the window 4 of max(period, window_period) steps.
double utilization(const schedules::OuterSchedule& schedule, int64_t layers, double step_s,
                   double full_wire_s, double latency_s, int64_t window_period = 1);
// The least bandwidth (bits/s) in [lo, hi] at which utilisation reaches `target` (bisection on
// a log scale, to 0.1%), or nothing when even `hi` does not (e.g. latency-bound).
std::optional<double> neededBandwidth(const ModelShape& model, const Setup& setup, double latency_s,
                                      double target, double lo = 1e3, double hi = 1e15);

}  // namespace lowband::sim
