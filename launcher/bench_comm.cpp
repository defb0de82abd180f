#include "launcher/bench_comm.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "comm/compressed.h"
#include "comm/hierarchical.h"
#include "comm/link.h"
#include "comm/mpi_communicator.h"
#include "comm/topology.h"
#include "runtime/codec.h"

namespace lowband::launcher {

using Clock = std::chrono::steady_clock;

namespace {

template <class F>
double medianSeconds(int reps, comm::Communicator& sync, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    sync.barrier();
    const auto start = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void row(std::ostream& out, bool json, const char* text, const char* json_text) {
  out << (json ? json_text : text) << "\n" << std::flush;
}

}  // namespace

void benchComm(const CommBenchOptions& o, std::ostream& out) {
  comm::MpiCommunicator world(MPI_COMM_WORLD, "world");
  const bool print = world.rank() == 0;
  const int p = world.size();
  char text[512], json[512];

  // Hierarchical all-reduce vs the MPI library's own, on the same ranks and sizes.
  if (p % 2 == 0 && p > 2) {
    comm::Topology topo(world, {{"node", 2}, {"rest", 0}});
    comm::HierarchicalCommunicator hier({&topo.level(0), &topo.level(1)}, &world, "hierarchical");
    for (int64_t mib : o.quick ? std::vector<int64_t>{16} : std::vector<int64_t>{16, 64}) {
      const int64_t n = mib << 18;
      std::vector<float> x(n, 1.0f);
      const int reps = o.quick ? 3 : 5;
      const double h = medianSeconds(reps, world, [&] { hier.allReduce(x.data(), n); });
      const double m = medianSeconds(reps, world, [&] {
        MPI_Allreduce(MPI_IN_PLACE, x.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                      MPI_COMM_WORLD);
      });
      const double bytes = 4.0 * n, busbw = 2.0 * (p - 1) / p * bytes / h / 1e9;
      std::snprintf(
          json, sizeof json,
          "{\"op\":\"allreduce\",\"impl\":\"hierarchical\",\"ranks\":%d,\"bytes\":%.0f,"
          "\"seconds\":%.5f,\"busbw_gbps\":%.3f,\"baseline_seconds\":%.5f,\"ratio\":%.3f}",
          p, bytes, h, busbw, m, m / h);
      std::snprintf(text, sizeof text,
                    "all-reduce %lld MiB on %d ranks: hierarchical %.1f ms (bus %.2f GB/s), "
                    "MPI_Allreduce %.1f ms: ratio %.2f",
                    static_cast<long long>(mib), p, h * 1e3, busbw, m * 1e3, m / h);
      if (print) row(out, o.json, text, json);
    }
  }

  // Codec throughput on one core.
  if (print) {
    const int64_t n = (o.quick ? 4 : 16) << 20;
    std::vector<float> x(n), y(n);
    std::mt19937 rng(1);
    std::normal_distribution<float> d;
    for (float& v : x) v = d(rng);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const runtime::Stream host;
    for (runtime::Codec c : {runtime::Codec::Bf16, runtime::Codec::Fp8, runtime::Codec::Int8,
                             runtime::Codec::Int4, runtime::Codec::Fp4}) {
      const runtime::CodecSpec spec{c, 64};
      std::vector<uint8_t> wire(runtime::encodedBytes(spec, n));
      runtime::encode(host, spec, x.data(), n, wire.data());  // warm up
      std::vector<double> t;
      for (int r = 0; r < 3; ++r) {
        const auto start = Clock::now();
        runtime::encode(host, spec, x.data(), n, wire.data());
        runtime::decode(host, spec, wire.data(), n, y.data());
        t.push_back(std::chrono::duration<double>(Clock::now() - start).count());
      }
      std::sort(t.begin(), t.end());
      // Error relative to |x| for bf16, to the block's absmax for the block codecs (they zero
      // values far below it by design).
      double max_rel = 0;
      for (int64_t b = 0; b < n; b += 64) {
        double a = 0;
        for (int64_t i = b; i < std::min(n, b + 64); ++i) a = std::max(a, std::fabs(double(x[i])));
        for (int64_t i = b; i < std::min(n, b + 64); ++i) {
          const double ref = c == runtime::Codec::Bf16 ? std::fabs(double(x[i])) : a;
          if (ref > 0) max_rel = std::max(max_rel, std::fabs(double(y[i]) - x[i]) / ref);
        }
      }
      const double gbps = 4.0 * n / t[1] / 1e9;
      std::snprintf(json, sizeof json,
                    "{\"op\":\"codec\",\"codec\":\"%s\",\"bytes\":%lld,\"gbps_per_core\":%.3f,"
                    "\"max_rel_error\":%.4g}",
                    runtime::codecName(c), static_cast<long long>(4 * n), gbps, max_rel);
      std::snprintf(text, sizeof text,
                    "codec %-4s: encode+decode %.2f GB/s of f32 per core, max relative error %.3g",
                    runtime::codecName(c), gbps, max_rel);
      row(out, o.json, text, json);
    }
    omp_set_num_threads(threads);
  }
  world.barrier();

  // Compressed all-reduce through an emulated 100 Mbit/s link.
  if (p > 1) {
    const double bandwidth = 100e6 / 8;
    comm::LinkCommunicator link(world, "wan", {bandwidth, 0.0});
    const int64_t n = (o.quick ? 4 : 16) << 20;  // 16 or 64 MiB of f32
    std::vector<float> x(n, 1.0f);
    double f32_seconds = 0;
    for (runtime::Codec c : {runtime::Codec::None, runtime::Codec::Int8, runtime::Codec::Fp4}) {
      comm::CompressedAllReduce car(link, {c, 64});
      const double s = medianSeconds(1, world, [&] { car.allReduce(x.data(), n); });
      if (c == runtime::Codec::None) f32_seconds = s;
      const double bound = static_cast<double>(car.wireBytesPerRank(n)) / bandwidth;
      std::snprintf(json, sizeof json,
                    "{\"op\":\"allreduce_emulated\",\"codec\":\"%s\",\"bandwidth_mbit\":100,"
                    "\"ranks\":%d,\"bytes\":%lld,\"seconds\":%.3f,\"ratio\":%.3f,"
                    "\"wire_bound_ratio\":%.3f}",
                    runtime::codecName(c), p, static_cast<long long>(4 * n), s, f32_seconds / s,
                    s / bound);
      std::snprintf(text, sizeof text,
                    "emulated 100 Mbit/s all-reduce of %lld MiB with %s: %.2f s (%.2fx faster "
                    "than f32; %.2f x the wire-rate bound)",
                    static_cast<long long>(n >> 18), runtime::codecName(c), s, f32_seconds / s,
                    s / bound);
      if (print) row(out, o.json, text, json);
    }
  }
}

}  // namespace lowband::launcher
