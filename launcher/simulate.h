// `lowband simulate`: sim::utilization over a bandwidth sweep for presets or a custom model,
// as a table of utilisation per bandwidth and the bandwidth each method needs for 50/80/90/
// 95/99% utilisation (markdown, CSV or one JSON object per line).
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "launcher/config.h"
#include "launcher/plan.h"
#include "sim/simulator.h"

namespace lowband::launcher {

struct SimulateOptions {
  std::vector<sim::ModelShape> models;  // presets or one custom model
  // The rows: empty = dp, diloco, streaming, streaming overlap 1, streaming overlap 1 at 4 bits.
  std::vector<sim::Setup> setups;
  int64_t replicas = 2;
  double bits = 16;         // for the default rows (the last one uses 4)
  double latency_s = 0.01;  // seconds
  double min_bits_per_s = 1e7, max_bits_per_s = 1e12;
  int points = 21;  // log-spaced
  std::string format = "md";
  // Of a config (fromConfig): the share of a simulated step that is compute (the rest is the
  // exchanges inside a replica, which every step waits for); utilisation is scaled by it.
  double compute_fraction = 1;
  std::string note;  // printed under the markdown heading
};

// The outer exchange of a config as the simulator sees it, from `lowband plan`'s view of it:
// layers and parameters per rank's share of the outer exchange (outer state is sharded over
// the k ranks of a replica, each exchanging 1/k over its own NIC), step = compute (measured,
// or options.step_time) + the exposed exchanges inside a replica, H, fragments, overlap, bits
// per parameter of the outer codec as encoded (block scales included), the replicas, and the
// outer tier's latency. Fills o.models, o.setups, o.replicas, o.latency_s,
// o.compute_fraction, o.note. ConfigError for outer method none.
void fromConfig(const Config& c, const PlanOptions& plan_options, SimulateOptions& o);

inline const std::vector<double>& utilizationTargets() {
  static const std::vector<double> t = {0.5, 0.8, 0.9, 0.95, 0.99};
  return t;
}

struct SimulatedRow {
  std::string model;
  sim::Setup setup;
  std::vector<std::pair<double, double>> curve;  // bits/s, utilisation
  std::vector<std::optional<double>> needed;     // bits/s per utilizationTargets()
};

std::vector<SimulatedRow> simulate(const SimulateOptions& o);
void printSimulation(const SimulateOptions& o, const std::vector<SimulatedRow>& rows,
                     std::ostream& out);

}  // namespace lowband::launcher
