// Training data: token shards in the llm.c/nanoGPT format, IDX image files (MNIST/Fashion-MNIST,
// gzip allowed) and the loaders that give every rank a disjoint, seeded, resumable stream of
// batches (docs/configuration.md). Every refusal is a DataError naming the file, the byte offset
// and what was expected, e.g.
//   data/kjv/train_000000.bin: byte 1024+2*17=1058: token 300 >= vocab 256
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/error.h"

namespace lowband::nn {

LB_DEFINE_ERROR(DataError, "data");

// ---- token shards ----
// Header of 256 little-endian int32 {magic, version, token count, 0...}, then `count` uint16.
constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr int64_t kShardHeaderBytes = 256 * 4;

// A validated token shard, memory-mapped read-only: ranks on one host share the page cache
// instead of each holding a copy of the corpus. Move-only.
class TokenShard {
 public:
  // Checks the header, the exact size and that every token is < vocab (1..65536).
  TokenShard(const std::string& path, int64_t vocab);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  const std::string& path() const { return path_; }
  std::span<const uint16_t> tokens() const { return {tokens_, static_cast<std::size_t>(count_)}; }
  int64_t size() const { return count_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  std::size_t map_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t count_ = 0;
};

// Validates a whole shard file held in memory (header, exact size, tokens < vocab) and returns
// its token count; DataError naming `path` and the byte offset otherwise.
int64_t checkTokenShard(std::span<const uint8_t> file, const std::string& path, int64_t vocab);

// Reads and validates a shard (see TokenShard) into memory.
std::vector<uint16_t> readTokenShard(const std::string& path, int64_t vocab);

// Writes a shard atomically: temp file in the same directory, fsync, rename. At most 2^31-1
// tokens (the header count is an int32).
void writeTokenShard(const std::string& path, std::span<const uint16_t> tokens);

// Files matching a glob(3) pattern, sorted bytewise. DataError naming the pattern if none match.
std::vector<std::string> expandGlob(const std::string& pattern);

// ---- batch order ----
// Where a loader stands: the epoch and how many of this rank's items it has handed out in that
// epoch. Saved in checkpoints; restore() takes it back so a resumed run sees the same batches.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t cursor = 0;
  bool operator==(const LoaderPosition&) const = default;
};

enum class Order {
  Shuffled,    // a new seeded permutation every epoch (training)
  Sequential,  // items in file order every epoch (evaluation)
};

// The item order shared by the loaders. Each epoch the `count` items are permuted by a
// Fisher-Yates shuffle driven by std::mt19937_64 seeded from (seed, epoch), with our own
// uniform draw so the order is the same with every standard library. Rank r of `world` takes
// items r, r+world, r+2*world, ... of that order, so ranks never share an item; every rank
// gets count/world items per epoch and whole batches of them (the rest is dropped), so all
// ranks run the same number of steps.
class EpochSampler {
 public:
  // Needs count >= batch * world (the loaders check first, with a message about their data).
  EpochSampler(int64_t count, int64_t batch, uint64_t seed, int rank, int world,
               Order order = Order::Shuffled);

  // Fills `batch` item indices and advances, starting the next epoch when this one is used up.
  void next(int64_t* items);
  LoaderPosition position() const { return pos_; }
  // DataError if the position does not fit this data/batch/world.
  void restore(const LoaderPosition& pos);

  int64_t count() const { return count_; }
  int64_t batch() const { return batch_; }
  int64_t batchesPerEpoch() const { return batches_per_epoch_; }
  // The full order of epoch `epoch` (all ranks' items), as next() uses it.
  std::vector<int64_t> permutation(int64_t epoch) const;

 private:
  void loadEpoch(int64_t epoch);

  int64_t count_, batch_;
  uint64_t seed_;
  int rank_, world_;
  Order order_;
  int64_t batches_per_epoch_;
  LoaderPosition pos_;
  int64_t perm_epoch_ = -1;  // epoch whose order perm_ holds
  std::vector<int64_t> perm_;
};

// ---- token loader ----
// Cuts the concatenated tokens of `files` (one split, in the given order; windows may span
// shard boundaries) into non-overlapping windows of seq_len+1 tokens: inputs are the first
// seq_len, targets the same shifted by one.
class TokenLoader {
 public:
  TokenLoader(const std::vector<std::string>& files, int64_t vocab, int64_t batch, int64_t seq_len,
              uint64_t seed, int rank, int world, Order order = Order::Shuffled);

  // Fills batch*seq_len int32 of each, row-major [batch][seq_len].
  void next(int32_t* inputs, int32_t* targets);
  LoaderPosition position() const { return sampler_.position(); }
  void restore(const LoaderPosition& pos) { sampler_.restore(pos); }

  int64_t tokens() const { return total_; }
  int64_t windows() const { return sampler_.count(); }
  int64_t batchesPerEpoch() const { return sampler_.batchesPerEpoch(); }
  int64_t seqLen() const { return seq_len_; }
  // Copies window `w` (0 <= w < windows()) into seq_len inputs and targets.
  void window(int64_t w, int32_t* inputs, int32_t* targets) const;

 private:
  std::vector<TokenShard> shards_;
  std::vector<int64_t> starts_;  // first global token index of each shard, plus the total
  int64_t total_ = 0;
  int64_t batch_, seq_len_;
  EpochSampler sampler_;
  std::vector<int64_t> items_;
};

// ---- IDX files (MNIST / Fashion-MNIST) ----
// Big-endian header {magic, dims...}, then uint8 data. Plain or gzip (offsets in messages count
// decompressed bytes). The data must be exactly what the header's dimensions promise: a plain
// file's size is checked before reading, a gzip file is inflated in steps and refused as soon
// as it holds more than that, so a small file cannot make the reader hold more than it claims.
constexpr uint32_t kIdxImagesMagic = 0x00000803;
constexpr uint32_t kIdxLabelsMagic = 0x00000801;
// The most data a header may promise (4 GiB; Fashion-MNIST's training images are 47 MB, and
// every rank holds its own copy).
constexpr int64_t kIdxMaxBytes = int64_t{1} << 32;

struct IdxImages {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols, row-major
  int64_t pixelsPerImage() const { return rows * cols; }
};

IdxImages readIdxImages(const std::string& path);
std::vector<uint8_t> readIdxLabels(const std::string& path);
// The same for a whole file (plain or gzip) held in memory; `path` names it in messages.
IdxImages parseIdxImages(std::span<const uint8_t> file, const std::string& path);
std::vector<uint8_t> parseIdxLabels(std::span<const uint8_t> file, const std::string& path);

// Images as float pixels/255 with int32 labels, in the EpochSampler order for training and in
// file order for evaluation.
class ImageLoader {
 public:
  // DataError if the image and label counts differ or there are fewer than batch*world images.
  ImageLoader(const std::string& images_path, const std::string& labels_path, int64_t batch,
              uint64_t seed, int rank, int world, Order order = Order::Shuffled);

  // Fills batch*pixelsPerImage() floats and batch labels.
  void next(float* inputs, int32_t* labels);
  LoaderPosition position() const { return sampler_.position(); }
  void restore(const LoaderPosition& pos) { sampler_.restore(pos); }

  // Evaluation over the whole set once: rank r takes the contiguous block
  // [r*size/world, (r+1)*size/world) in file order, cut into evalBatches() batches; the last
  // may be short. evalBatch() returns how many examples it filled.
  int64_t evalBatches() const;
  int64_t evalBatch(int64_t index, float* inputs, int32_t* labels) const;

  // DataError naming the labels file and offset of the first label >= classes.
  void checkLabels(int64_t classes) const;

  int64_t size() const { return images_.count; }
  int64_t rows() const { return images_.rows; }
  int64_t cols() const { return images_.cols; }
  int64_t pixelsPerImage() const { return images_.pixelsPerImage(); }
  int64_t batchesPerEpoch() const { return sampler_.batchesPerEpoch(); }

 private:
  void copyExample(int64_t item, float* input, int32_t* label) const;

  std::string labels_path_;
  IdxImages images_;
  std::vector<uint8_t> labels_;
  int64_t batch_;
  int rank_, world_;
  EpochSampler sampler_;
  std::vector<int64_t> items_;
};

}  // namespace lowband::nn
