// Checkpoints of a run (docs/operations.md), one directory per step under RUN_DIR/checkpoints:
//   step_00000500/model.safetensors   theta_global, one F32 tensor per parameter (rank 0)
//   step_00000500/rank_00003.state    everything rank 3 needs to continue (runtime/state_dict.h):
//                                     its parameters, inner optimizer, outer state, exchanges in
//                                     flight, data position, trainer counters
//   step_00000500/config.yaml         the resolved config (rank 0)
//   step_00000500/COMPLETE            the marker (rank 0, last): step, world, layout and the
//                                     size and CRC-32 of every file
// Every file is written atomically (temp file, fsync, rename, fsync of the directory); the
// marker is written only after every rank's files are on disk, so a checkpoint without it is
// incomplete and never resumed from. RUN_DIR must be visible to every rank (a shared file
// system on several hosts).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "runtime/error.h"
#include "runtime/state_dict.h"

namespace lowband::launcher {

LB_DEFINE_ERROR(CheckpointError, "checkpoint");

// "step_00000500"
std::string checkpointName(int64_t step);
// "rank_00003.state"
std::string rankStateName(int rank);

// Replaces `path` with `bytes` atomically; CheckpointError naming the path and the system's
// reason (e.g. "No space left on device"), with the temp file removed.
void writeFileAtomic(const std::filesystem::path& path, std::span<const uint8_t> bytes);
// The whole of a regular file; CheckpointError, before anything is read, when it is not one or
// holds more than `max_bytes` (a file's size comes from its checkpoint's marker).
std::vector<uint8_t> readWholeFile(const std::filesystem::path& path, uint64_t max_bytes);

// An advisory lock (fcntl) on a run directory, held by rank 0 from start-up to the end of the
// run, so that a second lowband run on the same run.out_dir (another `train`, or a
// `--resume auto` while the first still trains) is refused instead of mixing its metrics and
// checkpoints into the first's. The lock file DIR/lowband.lock names the holder (pid, host,
// start time). The kernel drops the lock of a process that dies, so a killed run's lock is
// taken over by the next run, which says so (the file still names the dead holder).
class RunDirLock {
 public:
  RunDirLock() = default;
  ~RunDirLock();  // empties the lock file (the run ended) and releases the lock
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;
  // Creates `dir` when missing and takes its lock. Returns "" when held, else who holds it
  // ("pid 123 on host vm since 2026-11-29 12:00:01 UTC"). `*stale` gets the holder a dead run
  // left in the file ("" when the last run ended normally). CheckpointError when the lock file
  // cannot be created (permissions, a read-only file system).
  std::string acquire(const std::filesystem::path& dir, std::string* stale);

 private:
  int fd_ = -1;
};

// safetensors (https://github.com/huggingface/safetensors): u64 LE header length, a JSON header
// {"__metadata__": {...}, "name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}},
// then the little-endian data, tensors in the given order.
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
};
std::vector<uint8_t> encodeSafetensors(const std::vector<NamedTensor>& tensors,
                                       const std::map<std::string, std::string>& metadata);

// The COMPLETE marker, format 2: text lines "lowband-checkpoint 2", "step N", "world N", one
// "layout NAME<TAB>VALUE" per layout field (world, replicas, model shape, optimizer, methods:
// what a resuming run must match, compared field by field), then "file NAME BYTES CRC32HEX"
// per file. Format 1 (one prose layout line, before 2026-11-30) is refused by name.
struct CheckpointMarker {
  struct File {
    std::string name;
    uint64_t bytes = 0;
    uint32_t crc = 0;
  };
  int64_t step = 0;
  int world = 0;
  std::vector<std::pair<std::string, std::string>> layout;  // what must match to resume
  std::vector<File> files;

  std::string text() const;
  // CheckpointError "SOURCE:LINE: what" for anything else.
  static CheckpointMarker parse(const std::string& text, const std::string& source);
  const File* file(const std::string& name) const;
};

// Checkpoints of one run directory and of one job (every method is collective over `world`
// unless it says otherwise).
class Checkpoints {
 public:
  using Layout = std::vector<std::pair<std::string, std::string>>;
  Checkpoints(comm::Communicator& world, std::filesystem::path run_dir, Layout layout,
              int64_t keep_last);

  // Writes checkpoint `step`: every rank its state, rank 0 also `model` (safetensors bytes)
  // and `config_yaml`; then the marker; then removes older ones beyond keep_last. A failure on
  // any rank (a full disk) throws on every rank, leaves no marker for this step and the
  // previous checkpoints untouched. Returns the directory.
  std::filesystem::path write(int64_t step, const runtime::StateDict& state,
                              std::span<const uint8_t> model, const std::string& config_yaml);

  struct Found {
    std::filesystem::path dir;
    CheckpointMarker marker;
    runtime::StateDict state;  // this rank's, checksummed and checked
  };
  // What the caller checks in a rank's state before trusting it: "" or why it cannot be
  // resumed (e.g. a step that is not the marker's).
  using StateCheck =
      std::function<std::string(const runtime::StateDict& state, const CheckpointMarker& marker)>;
  // The checkpoint to resume from. "auto": the newest one under RUN_DIR/checkpoints that is
  // complete and intact on every rank, whose marker's step is its directory's, and whose
  // states pass `check` (nullopt when there is none); each one skipped is reported on `out`
  // (rank 0) with the reason. Otherwise a checkpoint directory, refused with a CheckpointError
  // unless all of that holds (the message says what PATH is instead: missing, a file, a run
  // directory). Also refused: a layout other than this run's (world size, replicas, model,
  // methods). Sizes are compared with the marker before any file is read.
  std::optional<Found> find(const std::string& spec, std::ostream& out, const StateCheck& check);

  const std::filesystem::path& root() const { return root_; }

 private:
  // "" when this rank's files of `dir` match the marker, else why not; this rank's state in
  // *state.
  std::string checkOwnFiles(const std::filesystem::path& dir, const CheckpointMarker& m,
                            runtime::StateDict* state) const;
  void prune(int64_t step) const;

  comm::Communicator& world_;
  std::filesystem::path root_;
  Layout layout_;
  int64_t keep_last_;
};

}  // namespace lowband::launcher
