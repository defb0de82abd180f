// `lowband bench schedules` (run under mpiexec): the outer methods trained by the real trainer
// on the KJV byte shards, each against a baseline run in the same invocation:
//   quality: every rank a replica; ddp, diloco (H 50), streaming_diloco (H 50, 4 fragments,
//     overlap 1, fp4) and co2 (H 50) on the same total tokens (4000 steps of a 4 x 64 GPT):
//     final val loss vs ddp's, bytes sent across replicas vs ddp's, wall time.
//   overlap: 2 replicas (world / 2 ranks each) joined by an emulated 100 Mbit/s, 20 ms link;
//     step time of streaming_diloco, diloco and ddp over that of the same run without any
//     outer communication (sync.outer.method none).
#pragma once

#include <ostream>
#include <string>

namespace lowband::launcher {

struct ScheduleBenchOptions {
  bool quick = false;             // smaller model, fewer steps (under 3 minutes on 2 cores)
  bool json = false;              // one JSON object per line
  std::string study = "all";      // quality | overlap | all
  std::string data = "data/kjv";  // holds train_*.bin and val_*.bin
  std::string out_dir = "runs/bench_schedules";  // one run directory per study and method
  bool verbose = false;                          // the trainer's own output
};

void benchSchedules(const ScheduleBenchOptions& options, std::ostream& out);

}  // namespace lowband::launcher
