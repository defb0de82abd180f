// `lowband train`: every rank of the MPI world (one process without mpiexec) trains the
// configured model on its own share of the data, synchronised by the configured schedules
// (sync.inner / sync.outer over the topology's tiers). Rank 0 writes the resolved config and
// metrics.jsonl to run.out_dir and prints; it refuses to write over an existing run unless
// told to.
#pragma once

#include <map>
#include <ostream>
#include <string>

#include "launcher/config.h"
#include "runtime/error.h"

namespace lowband::launcher {

LB_DEFINE_ERROR(TrainingError, "training");

struct TrainOptions {
  bool overwrite = false;  // replace an existing run in run.out_dir
  bool dry_run = false;    // build model and data, print the start-up table, train nothing
  // "auto": continue from the newest complete checkpoint in run.out_dir (from step 0 when
  // there is none); a checkpoint directory: from that one; empty: a fresh run.
  std::string resume;
  bool progress = false;  // a progress bar between the log lines (rank 0 on a terminal)
};

struct TrainResult {
  int64_t steps = 0;
  int64_t skipped_steps = 0;
  double final_loss = 0;     // mean training loss of the last log window, over all ranks
  double val_loss = -1;      // -1: no evaluation ran
  double val_accuracy = -1;  // classifiers only
  double tokens_per_s = 0;
  double mfu = 0;  // of the measured GEMM peak
  double gemm_peak_gflops = 0;
  double wall_s = 0;
  double train_s = 0;                        // the training steps alone (no set-up, no evaluation)
  std::map<std::string, double> tier_bytes;  // bytes rank 0 sent per tier
  std::map<std::string, double> planned_tier_bytes;  // the strategy's plan of the same
  int replica = 0;                                   // this rank's replica
  int64_t optimizer_state_bytes = 0;  // this rank's inner optimizer state (1/k under ZeRO)
  int64_t outer_state_bytes = 0;      // this rank's outer state (1/k of a replica's)
  double comm_blocked_s = 0;          // rank 0 waiting for exchanges
  double comm_hidden_fraction = 1;
  double outer_blocked_s = 0;  // of that, waiting for exchanges across replicas
  double outer_hidden_fraction = 1;
  int64_t outer_steps = 0;
  int64_t resumed_from = -1;    // step of the checkpoint resumed from
  bool preempted = false;       // stopped early by SIGTERM/SIGUSR1, after a checkpoint
  std::string last_checkpoint;  // directory of the last checkpoint written
};

// Throws ConfigError (bad config or run directory), nn::DataError (bad data) or
// runtime::Error (library failures).
TrainResult train(const Config& config, const TrainOptions& options, std::ostream& out);

}  // namespace lowband::launcher
