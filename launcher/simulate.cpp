#include "launcher/simulate.h"

#include <cmath>
#include <cstdio>

#include "launcher/config.h"
#include "launcher/setup.h"
#include "runtime/codec.h"
#include "schedules/methods.h"

namespace lowband::launcher {

namespace {

std::vector<sim::Setup> defaultSetups(const SimulateOptions& o) {
  using sim::Method;
  return {{Method::Ddp, 0, o.bits, o.replicas},
          {Method::Diloco, 0, o.bits, o.replicas},
          {Method::StreamingDiloco, 0, o.bits, o.replicas},
          {Method::StreamingDiloco, 1, o.bits, o.replicas},
          {Method::StreamingDiloco, 1, 4, o.replicas}};
}

std::string label(const sim::Setup& s) {
  std::string text = sim::methodName(s.method);
  if (s.overlap > 0) text += " overlap " + std::to_string(s.overlap);
  char bits[32];
  std::snprintf(bits, sizeof bits, " %.3gb", s.bits);
  return text + bits;
}

std::string number(const char* fmt, double v) {
  char text[64];
  std::snprintf(text, sizeof text, fmt, v);
  return text;
}

std::string gbps(const std::optional<double>& bits_per_s) {
  return bits_per_s ? number("%.4g", *bits_per_s / 1e9) : "-";
}

}  // namespace

void fromConfig(const Config& c, const PlanOptions& plan_options, SimulateOptions& o) {
  const OuterSyncConfig& outer = c.sync.outer;
  if (outer.method == OuterMethod::None)
    throw ConfigError("simulate: sync.outer.method is none: replicas never exchange");
  const Plan plan = makePlan(c, plan_options);
  if (plan.replicas < 2)
    throw ConfigError("simulate: the config has one replica; nothing crosses the outer tier");
  sim::ModelShape m;
  m.name = c.run.name;
  m.layers = c.model.layers();
  m.params = static_cast<double>(plan.memory.params) / 4 / plan.replica_ranks;
  // The exchanges on tiers inside a replica (below the outer tier) delay every step; under
  // outer ddp the plan counts the outer tier's every-step exchange as inner too: not here.
  double inside = 0;
  for (const TierPlan& t : plan.tiers) {
    if (t.name == outer.tier) break;
    inside += t.seconds_per_step;
  }
  m.step_s = plan.compute_s + inside;
  const schedules::OuterMethodSpec& spec = schedules::outerMethod(outer.method);
  m.H = spec.reads(schedules::kKeyH) ? outer.H : 1;
  const int64_t fragments =
      spec.reads(schedules::kKeyFragments) ? outer.resolvedFragments(c.model) : 1;
  m.fragment_layers = (m.layers + fragments - 1) / fragments;
  sim::Setup s;
  s.method = outer.method;
  s.overlap = spec.reads(schedules::kKeyOverlap) ? outer.overlap : 0;
  const runtime::CodecSpec codec = syncSettings(c, 0).codec;
  const int64_t n = 1 << 20;
  s.bits = outer.method == OuterMethod::Ddp || codec.codec == runtime::Codec::None
               ? 32
               : static_cast<double>(runtime::encodedBytes(codec, n)) * 8 / n;
  s.replicas = plan.replicas;
  o.models = {m};
  o.setups = {s};
  o.replicas = s.replicas;
  o.latency_s = plan.tiers.back().latency;  // the outermost tier's (outer ddp's too)
  o.compute_fraction = plan.compute_s / m.step_s;
  char note[320];
  std::snprintf(note, sizeof note,
                "from %s: %lld replica(s) of %d rank(s); compute %.4g s per step (%s) + %.4g s "
                "of exchanges inside a replica; each rank's outer share %.4g parameters at "
                "%.3g bits\n",
                c.source.c_str(), static_cast<long long>(plan.replicas), plan.replica_ranks,
                plan.compute_s, plan.compute_measured ? "measured" : "given", inside, m.params,
                s.bits);
  o.note = note;
}

std::vector<SimulatedRow> simulate(const SimulateOptions& o) {
  if (o.points < 2) throw ConfigError("simulate: --points must be >= 2");
  if (o.min_bits_per_s <= 0 || o.max_bits_per_s <= o.min_bits_per_s)
    throw ConfigError("simulate: the bandwidth range needs 0 < --min < --max");
  const std::vector<sim::Setup> setups = o.setups.empty() ? defaultSetups(o) : o.setups;
  // Bound the sweep before running it. Each utilisation walks 6 H + 1 steps of every layer;
  // a row runs one per point plus about 85 for the needed bandwidths (5 targets, 17 steps of
  // bisection each). kMaxWork layer-steps take about a minute on one core.
  constexpr double kMaxWork = 5e9;
  double work = 0;
  for (const sim::ModelShape& m : o.models)
    for (const sim::Setup& s : setups) {
      // An exchange landing after the fragment's next one is issued piles up without bound.
      if (s.overlap > 0 && s.overlap >= m.H)
        throw ConfigError("simulate: --overlap " + std::to_string(s.overlap) + " must be < H " +
                          std::to_string(m.H) + " (" + m.name +
                          "): a fragment's exchange must land before its next one starts");
      work +=
          (o.points + 85.0) * (6.0 * static_cast<double>(m.H) + 1) * static_cast<double>(m.layers);
    }
  if (work > kMaxWork) {
    char text[240];
    std::snprintf(text, sizeof text,
                  "simulate: this sweep would simulate %.3g layer-steps, over the limit of %.3g "
                  "(about a minute); use fewer --points, a smaller H or fewer layers",
                  work, kMaxWork);
    throw ConfigError(text);
  }
  std::vector<SimulatedRow> rows;
  const double lo = std::log(o.min_bits_per_s), hi = std::log(o.max_bits_per_s);
  for (const sim::ModelShape& m : o.models)
    for (const sim::Setup& s : setups) {
      SimulatedRow row{m.name, s, {}, {}};
      for (int i = 0; i < o.points; ++i) {
        const double bw = std::exp(lo + (hi - lo) * i / (o.points - 1));
        row.curve.emplace_back(bw, o.compute_fraction * sim::utilization(m, s, {bw, o.latency_s}));
      }
      for (double target : utilizationTargets())
        row.needed.push_back(
            target > o.compute_fraction
                ? std::nullopt
                : sim::neededBandwidth(m, s, o.latency_s, target / o.compute_fraction));
      rows.push_back(std::move(row));
    }
  return rows;
}

void printSimulation(const SimulateOptions& o, const std::vector<SimulatedRow>& rows,
                     std::ostream& out) {
  if (o.format == "json") {
    for (const SimulatedRow& r : rows) {
      out << "{\"preset\":\"" << r.model << "\",\"method\":\"" << sim::methodName(r.setup.method)
          << "\",\"overlap\":" << r.setup.overlap << ",\"bits\":" << number("%g", r.setup.bits)
          << ",\"replicas\":" << r.setup.replicas << ",\"latency_s\":" << number("%g", o.latency_s)
          << ",\"needed_gbps\":{";
      for (std::size_t i = 0; i < r.needed.size(); ++i)
        out << (i ? "," : "") << "\"" << number("%g", utilizationTargets()[i])
            << "\":" << (r.needed[i] ? number("%.6g", *r.needed[i] / 1e9) : "null");
      out << "},\"curve\":[";
      for (std::size_t i = 0; i < r.curve.size(); ++i)
        out << (i ? "," : "") << "{\"gbps\":" << number("%.6g", r.curve[i].first / 1e9)
            << ",\"utilization\":" << number("%.6f", r.curve[i].second) << "}";
      out << "]}\n";
    }
    return;
  }
  if (o.format == "csv") {
    out << "preset,method,overlap,bits,replicas,latency_s,kind,gbps,utilization\n";
    for (const SimulatedRow& r : rows) {
      const std::string head = r.model + "," + sim::methodName(r.setup.method) + "," +
                               std::to_string(r.setup.overlap) + "," + number("%g", r.setup.bits) +
                               "," + std::to_string(r.setup.replicas) + "," +
                               number("%g", o.latency_s) + ",";
      for (const auto& [bw, u] : r.curve)
        out << head << "curve," << number("%.6g", bw / 1e9) << "," << number("%.6f", u) << "\n";
      for (std::size_t i = 0; i < r.needed.size(); ++i)
        out << head << "needed," << (r.needed[i] ? number("%.6g", *r.needed[i] / 1e9) : "") << ","
            << number("%g", utilizationTargets()[i]) << "\n";
    }
    return;
  }
  // Markdown: per model, utilisation by bandwidth (columns: the rows' setups), then the
  // bandwidth each needs.
  for (std::size_t first = 0; first < rows.size();) {
    std::size_t end = first;
    while (end < rows.size() && rows[end].model == rows[first].model) ++end;
    const sim::ModelShape* shape = nullptr;
    for (const sim::ModelShape& m : o.models)
      if (m.name == rows[first].model) shape = &m;
    out << "### " << rows[first].model;
    if (shape)
      out << ": " << shape->layers << " layers, " << number("%.3g", shape->params)
          << " parameters, step " << number("%g", shape->step_s) << " s, H " << shape->H
          << ", fragments of " << shape->fragment_layers << " layers";
    out << "; " << rows[first].setup.replicas << " replicas, latency "
        << number("%g", o.latency_s * 1e3) << " ms\n\n"
        << (o.note.empty() ? "" : o.note + "\n") << "Compute utilisation by bandwidth:\n\n"
        << "| Gbit/s |";
    for (std::size_t r = first; r < end; ++r) out << " " << label(rows[r].setup) << " |";
    out << "\n|---|";
    for (std::size_t r = first; r < end; ++r) out << "---|";
    out << "\n";
    for (std::size_t i = 0; i < rows[first].curve.size(); ++i) {
      out << "| " << number("%.3g", rows[first].curve[i].first / 1e9) << " |";
      for (std::size_t r = first; r < end; ++r)
        out << " " << number("%.1f%%", rows[r].curve[i].second * 100) << " |";
      out << "\n";
    }
    out << "\nBandwidth needed (Gbit/s; - = not reached below 1 Pbit/s):\n\n| method |";
    for (double t : utilizationTargets()) out << " " << number("%g%%", t * 100) << " |";
    out << "\n|---|";
    for (std::size_t i = 0; i < utilizationTargets().size(); ++i) out << "---|";
    out << "\n";
    for (std::size_t r = first; r < end; ++r) {
      out << "| " << label(rows[r].setup) << " |";
      for (const auto& n : rows[r].needed) out << " " << gbps(n) << " |";
      out << "\n";
    }
    out << "\n";
    first = end;
  }
}

}  // namespace lowband::launcher
