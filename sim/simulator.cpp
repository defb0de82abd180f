#include "sim/simulator.h"

#include <algorithm>
#include <cmath>

namespace lowband::sim {

const char* methodName(Method m) { return schedules::outerMethod(m).name(); }

std::vector<std::string> methodNames() {
  std::vector<std::string> names;
  for (const schedules::OuterMethodSpec* m : schedules::outerMethods())
    if (m->id != Method::None) names.emplace_back(m->name());
  return names;
}

Method methodNamed(const std::string& name) {
  for (const schedules::OuterMethodSpec* m : schedules::outerMethods())
    if (name == m->name() && m->id != Method::None) return m->id;
  LB_THROW(SimError, "unknown method '" + name + "'");
}

const std::vector<ModelShape>& presets() {
  static const std::vector<ModelShape> all = {{"1b", 24, 1e9, 0.1, 100, 3},
                                              {"10b", 48, 1e10, 0.8, 100, 3},
                                              {"100b", 108, 1e11, 4.9, 100, 3}};
  return all;
}

const ModelShape* findPreset(const std::string& name) {
  for (const ModelShape& m : presets())
    if (m.name == name) return &m;
  return nullptr;
}

namespace {

// One link, FIFO in issue order (comm/link.h's model).
struct Link {
  LinkSpec spec;
  double free_at = 0;
  // Issues an exchange of `wire_s` seconds on the wire at `t`; returns when it lands.
  double issue(double t, double wire_s) {
    const double begin = std::max(t, free_at);
    free_at = begin + wire_s;
    return free_at + spec.latency_s;
  }
};

// An exchange in flight: the layers [first, last) it updates may not run forward in step
// `apply_step` (or later) before `lands`.
struct Pending {
  int64_t apply_step;
  int64_t first, last;
  double lands;
};

void check(const ModelShape& m, const Setup& s, const LinkSpec& link) {
  if (m.layers < 1 || m.params <= 0 || m.step_s <= 0 || m.H < 1 || m.fragment_layers < 1)
    LB_THROW(SimError, "model '" + m.name +
                           "': layers, parameters, step time, H and fragment layers must be > 0");
  if (s.replicas < 2) LB_THROW(SimError, "replicas must be >= 2 (one replica exchanges nothing)");
  if (s.bits <= 0) LB_THROW(SimError, "bits per parameter must be > 0");
  if (s.overlap < 0) LB_THROW(SimError, "overlap must be >= 0");
  if (link.bits_per_s <= 0 || link.latency_s < 0)
    LB_THROW(SimError, "bandwidth must be > 0 and latency >= 0");
}

}  // namespace

double utilization(const ModelShape& m, const Setup& s, const LinkSpec& spec) {
  check(m, s, spec);
  const double ring = 2.0 * static_cast<double>(s.replicas - 1) / static_cast<double>(s.replicas);
  // All P parameters at `bits` each through a ring all-reduce over the link.
  const double full_wire_s = ring * m.params * s.bits / spec.bits_per_s;
  schedules::OuterConfig outer;
  outer.method = s.method;
  outer.H = m.H;
  outer.fragments = {(m.layers + m.fragment_layers - 1) / m.fragment_layers};
  outer.overlap = s.overlap;
  const schedules::OuterSchedule schedule =
      schedules::outerMethod(s.method).schedule(outer, m.layers, s.overlap);
  return utilization(schedule, m.layers, m.step_s, full_wire_s, spec.latency_s, m.H);
}

double utilization(const schedules::OuterSchedule& schedule, int64_t L, double step_s,
                   double full_wire_s, double latency_s, int64_t window_period) {
  const double tf = step_s / (3.0 * static_cast<double>(L)), tb = 2 * tf;
  auto transfer = [&](int64_t blocks) {
    return full_wire_s * static_cast<double>(blocks) / static_cast<double>(L);
  };
  // Warm-up and window: whole periods of every schedule, so closed forms hold exactly.
  const int64_t H = std::max<int64_t>({1, schedule.period, window_period});
  const int64_t s0 = 2 * H, W = 4 * H;
  Link link{{1.0, latency_s}};        // wire below is in seconds at 1 "bit" per second
  std::vector<double> ready(L, 0.0);  // when layer l's parameters may next be read
  std::vector<Pending> pending;
  double cursor = 0, start_s0 = 0;
  for (int64_t t = 0; t <= s0 + W; ++t) {
    // Exchanges due before this step's forward.
    for (const Pending& e : pending)
      if (e.apply_step <= t)
        for (int64_t l = e.first; l < e.last; ++l) ready[l] = std::max(ready[l], e.lands);
    std::erase_if(pending, [t](const Pending& e) { return e.apply_step <= t; });
    for (int64_t l = 0; l < L; ++l) {
      const double begin = std::max(cursor, ready[l]);
      if (l == 0 && t == s0) start_s0 = begin;
      if (l == 0 && t == s0 + W) return static_cast<double>(W) * step_s / (begin - start_s0);
      cursor = begin + tf;
    }
    for (int64_t l = L - 1; l >= 0; --l) {
      cursor += tb;
      if (schedule.every_step)
        pending.push_back({t + 1, l, l + 1, link.issue(cursor, transfer(1))});
    }
    if (schedule.period > 0)
      for (const schedules::OuterSchedule::Fragment& f : schedule.fragments) {
        if ((t + 1 - f.offset) % schedule.period != 0) continue;
        pending.push_back({t + 1 + schedule.delay, f.first, f.last,
                           link.issue(cursor, transfer(f.last - f.first))});
      }
  }
  return 1.0;  // not reached: the loop returns at step s0 + W
}

std::optional<double> neededBandwidth(const ModelShape& m, const Setup& s, double latency_s,
                                      double target, double lo, double hi) {
  auto at = [&](double bw) { return utilization(m, s, {bw, latency_s}); };
  if (at(hi) < target) return std::nullopt;
  if (at(lo) >= target) return lo;
  // Utilisation does not fall as bandwidth grows: bisect on log(bandwidth).
  double a = std::log(lo), b = std::log(hi);
  while (b - a > 1e-3) {
    const double mid = (a + b) / 2;
    (at(std::exp(mid)) >= target ? b : a) = mid;
  }
  return std::exp(b);
}

}  // namespace lowband::sim
