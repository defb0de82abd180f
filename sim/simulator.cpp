#include "sim/simulator.h"

#include <algorithm>
#include <cmath>

namespace lowband::sim {

const char* methodName(Method m) {
  switch (m) {
    case Method::Dp:
      return "dp";
    case Method::Diloco:
      return "diloco";
    case Method::Streaming:
      return "streaming";
    case Method::Co2:
      return "co2";
  }
  return "?";
}

namespace {
constexpr Method kMethods[] = {Method::Dp, Method::Diloco, Method::Streaming, Method::Co2};
}

std::vector<std::string> methodNames() {
  std::vector<std::string> names;
  for (Method m : kMethods) names.emplace_back(methodName(m));
  return names;
}

Method methodNamed(const std::string& name) {
  for (Method m : kMethods)
    if (name == methodName(m)) return m;
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
  // Issues `wire` bytes at `t`; returns when the exchange lands.
  double issue(double t, double wire) {
    const double begin = std::max(t, free_at);
    free_at = begin + wire * 8 / spec.bits_per_s;
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
  const int64_t L = m.layers;
  const double tf = m.step_s / (3.0 * static_cast<double>(L)), tb = 2 * tf;
  const double per_layer = m.params / static_cast<double>(L);
  const double ring = 2.0 * static_cast<double>(s.replicas - 1) / static_cast<double>(s.replicas);
  auto wire = [&](double params) { return ring * params * s.bits / 8; };
  const int64_t F = (L + m.fragment_layers - 1) / m.fragment_layers;
  std::vector<int64_t> offset(F);
  for (int64_t p = 0; p < F; ++p)
    offset[p] = std::llround(static_cast<double>(p * m.H) / static_cast<double>(F));

  const int64_t s0 = 2 * m.H, W = 4 * m.H;
  Link link{spec};
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
      if (l == 0 && t == s0 + W) return static_cast<double>(W) * m.step_s / (begin - start_s0);
      cursor = begin + tf;
    }
    for (int64_t l = L - 1; l >= 0; --l) {
      cursor += tb;
      if (s.method == Method::Dp)
        pending.push_back({t + 1, l, l + 1, link.issue(cursor, wire(per_layer))});
    }
    // diloco's exchange is applied before the next step, co2's a round later.
    if ((s.method == Method::Diloco || s.method == Method::Co2) && (t + 1) % m.H == 0)
      pending.push_back(
          {t + 1 + (s.method == Method::Co2 ? m.H : 0), 0, L, link.issue(cursor, wire(m.params))});
    if (s.method == Method::Streaming)
      for (int64_t p = 0; p < F; ++p) {
        if ((t + 1 - offset[p]) % m.H != 0) continue;
        const int64_t first = p * m.fragment_layers, last = std::min(L, first + m.fragment_layers);
        pending.push_back(
            {t + 1 + s.overlap, first, last,
             link.issue(cursor, wire(per_layer * static_cast<double>(last - first)))});
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
