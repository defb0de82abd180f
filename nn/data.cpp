#include "nn/data.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <new>
#include <random>
#include <utility>

namespace lowband::nn {

// Shard tokens are used in place from the mapping, which is only right on little-endian hosts
// (every target lowband builds for); a big-endian port would byte-swap here.
static_assert(std::endian::native == std::endian::little, "token shards are little-endian");

namespace {

std::string errnoText() { return std::strerror(errno); }

// "byte 1024+2*17=1058" for token i; plain "byte N" elsewhere.
std::string tokenOffset(int64_t i) {
  return "byte " + std::to_string(kShardHeaderBytes) + "+2*" + std::to_string(i) + "=" +
         std::to_string(kShardHeaderBytes + 2 * i);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

int32_t loadLe32(const unsigned char* p) {
  uint32_t v = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  return static_cast<int32_t>(v);
}

uint32_t loadBe32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

// A file descriptor closed on every exit path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void writeAll(int fd, const void* data, std::size_t bytes, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = ::write(fd, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) LB_THROW(DataError, path + ": cannot write: " + errnoText());
    p += n;
    bytes -= static_cast<std::size_t>(n);
  }
}

// Unbiased draw in [0, n) by rejection. std::uniform_int_distribution would do, but its
// algorithm is up to the standard library, and the batch order must not change with it.
uint64_t uniformBelow(std::mt19937_64& rng, uint64_t n) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % n;  // a multiple of n
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

// ---- IDX input: plain or gzip, from a file or from memory, read in steps ----

// The bytes of a file as they come, in chunks.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // The next chunk; empty at the end.
  virtual std::span<const uint8_t> next() = 0;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::span<const uint8_t> bytes) : rest_(bytes) {}
  std::span<const uint8_t> next() override { return std::exchange(rest_, {}); }

 private:
  std::span<const uint8_t> rest_;
};

class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::string& path)
      : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_.get() < 0) LB_THROW(DataError, path + ": cannot open: " + errnoText());
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) LB_THROW(DataError, path + ": cannot stat: " + errnoText());
    if (S_ISREG(st.st_mode)) size_ = st.st_size;
  }
  // The file's size, -1 if it is not a regular file.
  int64_t size() const { return size_; }
  std::span<const uint8_t> next() override {
    std::size_t n = 0;
    while (n < buf_.size()) {  // whole chunks, so the first one holds any gzip magic
      const ssize_t r = ::read(fd_.get(), buf_.data() + n, buf_.size() - n);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0)
        LB_THROW(DataError, path_ + ": byte " + std::to_string(offset_ + int64_t(n)) +
                                " of the file: cannot read: " + errnoText());
      if (r == 0) break;
      n += static_cast<std::size_t>(r);
    }
    offset_ += static_cast<int64_t>(n);
    return {buf_.data(), n};
  }

 private:
  const std::string& path_;
  Fd fd_;
  int64_t size_ = -1, offset_ = 0;
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(std::size_t{1} << 16);
};

// The decompressed bytes of a source: passed through if plain, inflated if it starts with the
// gzip magic (as gzread would; IDX files start with 0x0000). Inflates only as much as read()
// asks for, checking each gzip member's CRC and length at its end.
class IdxStream {
 public:
  IdxStream(ByteSource& source, const std::string& path) : source_(source), path_(path) {
    in_ = source_.next();
    gzip_ = in_.size() >= 2 && in_[0] == 0x1f && in_[1] == 0x8b;
    if (gzip_ && inflateInit2(&zs_, 15 + 16) != Z_OK)  // 15 + 16: gzip wrapper only
      LB_THROW(DataError, path + ": cannot start inflating: out of memory");
  }
  ~IdxStream() {
    if (gzip_) inflateEnd(&zs_);
  }
  IdxStream(const IdxStream&) = delete;
  IdxStream& operator=(const IdxStream&) = delete;

  bool gzip() const { return gzip_; }
  // Fills up to n bytes, fewer only at the end of the data.
  std::size_t read(uint8_t* out, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const std::size_t k =
          gzip_ ? inflateSome(out + done, n - done) : copySome(out + done, n - done);
      if (k == 0) break;
      done += k;
    }
    return done;
  }

 private:
  bool refill() {
    if (in_.empty()) {
      in_offset_ += used_;
      used_ = 0;
      in_ = source_.next();
    }
    return !in_.empty();
  }
  std::size_t copySome(uint8_t* out, std::size_t n) {
    if (!refill()) return 0;
    const std::size_t k = std::min(n, in_.size());
    std::memcpy(out, in_.data(), k);
    in_ = in_.subspan(k);
    used_ += k;
    out_ += static_cast<int64_t>(k);
    return k;
  }
  std::string where() const {
    return path_ + ": byte " + std::to_string(out_) + " (decompressed), compressed byte " +
           std::to_string(in_offset_ + used_) + ": ";
  }
  // Runs inflate until it gives some output or the data ends; 0 at the end.
  std::size_t inflateSome(uint8_t* out, std::size_t n) {
    zs_.next_out = out;
    zs_.avail_out = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    while (zs_.next_out == out) {
      if (!refill()) {
        if (in_member_)
          LB_THROW(DataError, where() + "gzip data is truncated (the file ends inside the stream)");
        return 0;
      }
      // Further gzip members may follow the first (gzip -d reads them too), nothing else.
      if (!in_member_ && members_ > 0 && in_[0] != 0x1f)
        LB_THROW(DataError, where() + "data after the end of the gzip stream");
      in_member_ = true;
      zs_.next_in = const_cast<Bytef*>(in_.data());
      zs_.avail_in = static_cast<uInt>(std::min<std::size_t>(in_.size(), 1u << 30));
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      const auto used = static_cast<std::size_t>(zs_.next_in - in_.data());
      in_ = in_.subspan(used);
      used_ += used;
      out_ += zs_.next_out - out;  // the loop ends at the first call that gives output
      if (rc == Z_STREAM_END) {
        inflateReset(&zs_);
        in_member_ = false;
        ++members_;
      } else if (rc == Z_MEM_ERROR) {
        LB_THROW(DataError, where() + "out of memory inflating");
      } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && in_.empty())) {
        LB_THROW(DataError, where() + "gzip data is corrupt (" +
                                (zs_.msg ? std::string(zs_.msg) : "inflate " + std::to_string(rc)) +
                                ")");
      }
    }
    return static_cast<std::size_t>(zs_.next_out - out);
  }

  ByteSource& source_;
  const std::string& path_;
  std::span<const uint8_t> in_;  // unread input of the current chunk
  int64_t in_offset_ = 0;        // compressed bytes before the current chunk
  std::size_t used_ = 0;         // bytes of the current chunk consumed
  int64_t out_ = 0;              // bytes handed out
  bool gzip_ = false, in_member_ = false;
  int64_t members_ = 0;
  z_stream zs_{};
};

struct IdxData {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // the product of dims bytes after the header
};

// Reads the IDX header {0, 0, 0x08 (ubyte), ndim, dims...} and exactly the data it promises.
// `file_size` is the size of a plain file (-1 if unknown) and is checked before any data is
// read; the data buffer grows only as data arrives, so a header promising more than the file
// holds costs nothing.
IdxData readIdx(ByteSource& source, int64_t file_size, const std::string& path, uint32_t magic,
                const char* what) {
  IdxStream in(source, path);
  const uint32_t ndim = magic & 0xff;
  const std::size_t header = 4 + 4 * ndim;
  uint8_t head[4 + 4 * 255];
  std::size_t got = in.read(head, 4);
  // The magic first: a labels file handed to readIdxImages is shorter than an image header.
  const uint32_t seen = got == 4 ? loadBe32(head) : magic;
  if (seen != magic) {
    std::string known = seen == kIdxImagesMagic   ? " (IDX images)"
                        : seen == kIdxLabelsMagic ? " (IDX labels)"
                                                  : "";
    LB_THROW(DataError, path + ": byte 0: magic " + hex32(seen) + known + ", expected " +
                            hex32(magic) + " (IDX " + what + ")");
  }
  if (got == 4) got += in.read(head + 4, header - 4);
  if (got < header)
    LB_THROW(DataError, path + ": byte " + std::to_string(got) + ": file ends inside the " +
                            std::to_string(header) + "-byte IDX header of " + what);

  IdxData idx;
  uint64_t bytes = 1, nonzero = 1;
  bool overflow = false, nonzero_overflow = false;
  std::string shape;
  for (uint32_t d = 0; d < ndim; ++d) {
    idx.dims.push_back(loadBe32(head + 4 + 4 * d));
    if (d) shape += '*';
    shape += std::to_string(idx.dims.back());
    const auto dim = static_cast<uint64_t>(idx.dims.back());
    overflow |= __builtin_mul_overflow(bytes, dim, &bytes);
    nonzero_overflow |= __builtin_mul_overflow(nonzero, std::max<uint64_t>(dim, 1), &nonzero);
  }
  const std::string gz = in.gzip() ? " (decompressed)" : "";
  // Refused before any allocation, so no header can ask for more memory than the limit.
  if (overflow || bytes > static_cast<uint64_t>(kIdxMaxBytes))
    LB_THROW(DataError, path + ": byte 4: dimensions " + shape + " promise " +
                            (overflow ? std::string("more than 2^64") : std::to_string(bytes)) +
                            " bytes of uint8 " + what + ", over the limit of " +
                            std::to_string(kIdxMaxBytes) + " (4 GiB)");
  // A zero dimension empties the data, but the others must still be sane: callers multiply
  // them (rows * cols, count * rows).
  if (nonzero_overflow || nonzero > static_cast<uint64_t>(kIdxMaxBytes))
    LB_THROW(DataError,
             path + ": byte 4: dimensions " + shape + " hold no data, but their nonzero product " +
                 (nonzero_overflow ? std::string("(more than 2^64)") : std::to_string(nonzero)) +
                 " is over the limit of " + std::to_string(kIdxMaxBytes) + " (4 GiB)");
  const int64_t need = static_cast<int64_t>(header + bytes);
  auto sizeError = [&](int64_t has) {
    LB_THROW(DataError, path + ": byte 4: dimensions " + shape + " need " + std::to_string(header) +
                            "+" + shape + "=" + std::to_string(need) + " bytes, the file has " +
                            std::to_string(has) + gz);
  };
  if (!in.gzip() && file_size >= 0 && file_size != need) sizeError(file_size);

  // Grow by doubling up to the promised size: a gzip file's decompressed size is known only
  // once it has been read.
  std::size_t have = 0;
  while (have < bytes) {
    const std::size_t want =
        !in.gzip() && file_size >= 0
            ? bytes
            : std::min<std::size_t>(bytes, std::max<std::size_t>(2 * have, std::size_t{1} << 20));
    try {
      idx.data.resize(want);
    } catch (const std::bad_alloc&) {
      LB_THROW(DataError, path + ": out of memory holding " + std::to_string(want) + " bytes of " +
                              what + " (dimensions " + shape + ")");
    }
    const std::size_t n = in.read(idx.data.data() + have, want - have);
    have += n;
    if (have < want) sizeError(static_cast<int64_t>(header + have));
  }
  // Reading one byte more also checks the end of the gzip stream (CRC and length).
  uint8_t extra;
  if (in.read(&extra, 1) != 0)
    LB_THROW(DataError, path + ": byte " + std::to_string(need) +
                            ": the file has more data than its header's dimensions " + shape +
                            " promise (" + std::to_string(header) + "+" + shape + "=" +
                            std::to_string(need) + " bytes)");
  return idx;
}

IdxImages toImages(IdxData idx) {
  IdxImages images;
  images.count = idx.dims[0];
  images.rows = idx.dims[1];
  images.cols = idx.dims[2];
  images.pixels = std::move(idx.data);
  return images;
}

std::string describeFiles(const std::vector<std::string>& files) {
  if (files.empty()) return "(no files)";
  std::string s = files[0];
  if (files.size() > 1) s += " (+" + std::to_string(files.size() - 1) + " more files)";
  return s;
}

}  // namespace

// ---- token shards ----

TokenShard::TokenShard(const std::string& path, int64_t vocab) : path_(path) {
  if (vocab < 1 || vocab > 65536)
    LB_THROW(DataError, path + ": vocab " + std::to_string(vocab) +
                            " is outside 1..65536 (tokens are uint16)");
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) LB_THROW(DataError, path + ": cannot open: " + errnoText());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) LB_THROW(DataError, path + ": cannot stat: " + errnoText());
  if (!S_ISREG(st.st_mode)) LB_THROW(DataError, path + ": not a regular file");
  const int64_t size = st.st_size;
  if (size < kShardHeaderBytes)
    LB_THROW(DataError, path + ": byte " + std::to_string(size) + ": file ends inside the " +
                            std::to_string(kShardHeaderBytes) + "-byte token shard header");

  map_bytes_ = static_cast<std::size_t>(size);
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    LB_THROW(DataError, path + ": cannot map: " + errnoText());
  }
  // From here the destructor does not run on a throw: unmap by hand.
  try {
    count_ = checkTokenShard({static_cast<const uint8_t*>(map_), map_bytes_}, path, vocab);
  } catch (...) {
    ::munmap(map_, map_bytes_);
    map_ = nullptr;
    throw;
  }
  tokens_ =
      reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(map_) + kShardHeaderBytes);
}

int64_t checkTokenShard(std::span<const uint8_t> file, const std::string& path, int64_t vocab) {
  auto fail = [&](const std::string& message) { LB_THROW(DataError, path + ": " + message); };
  const auto size = static_cast<int64_t>(file.size());
  if (size < kShardHeaderBytes)
    fail("byte " + std::to_string(size) + ": file ends inside the " +
         std::to_string(kShardHeaderBytes) + "-byte token shard header");
  const unsigned char* bytes = file.data();
  const int32_t magic = loadLe32(bytes);
  const int32_t version = loadLe32(bytes + 4);
  const int32_t count = loadLe32(bytes + 8);
  if (magic != kShardMagic)
    fail("byte 0: magic " + std::to_string(magic) + ", expected " + std::to_string(kShardMagic) +
         " (llm.c/nanoGPT token shard)");
  if (version != kShardVersion)
    fail("byte 4: version " + std::to_string(version) + ", expected " +
         std::to_string(kShardVersion) + " (uint16 tokens)");
  if (count < 0) fail("byte 8: token count " + std::to_string(count) + " is negative");
  if (size != kShardHeaderBytes + 2 * int64_t{count})
    fail("byte 8: token count " + std::to_string(count) + " needs " +
         std::to_string(kShardHeaderBytes) + "+2*" + std::to_string(count) + "=" +
         std::to_string(kShardHeaderBytes + 2 * int64_t{count}) + " bytes, the file has " +
         std::to_string(size));
  if (vocab < 65536) {
    // One branch-free pass for the common good file; look for the culprit only if needed.
    // (Tokens are read with memcpy: a buffer from memory need not be 2-byte aligned.)
    auto token = [&](int64_t i) {
      uint16_t t;
      std::memcpy(&t, bytes + kShardHeaderBytes + 2 * i, 2);
      return t;
    };
    uint16_t max = 0;
    for (int64_t i = 0; i < count; ++i) max = std::max(max, token(i));
    if (max >= vocab)
      for (int64_t i = 0; i < count; ++i)
        if (token(i) >= vocab)
          fail(tokenOffset(i) + ": token " + std::to_string(token(i)) + " >= vocab " +
               std::to_string(vocab));
  }
  return count;
}

TokenShard::~TokenShard() {
  if (map_) ::munmap(map_, map_bytes_);
}

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)),
      tokens_(std::exchange(other.tokens_, nullptr)),
      count_(std::exchange(other.count_, 0)) {}

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    if (map_) ::munmap(map_, map_bytes_);
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    count_ = std::exchange(other.count_, 0);
  }
  return *this;
}

std::vector<uint16_t> readTokenShard(const std::string& path, int64_t vocab) {
  TokenShard shard(path, vocab);
  return {shard.tokens().begin(), shard.tokens().end()};
}

void writeTokenShard(const std::string& path, std::span<const uint16_t> tokens) {
  if (tokens.size() > static_cast<std::size_t>(std::numeric_limits<int32_t>::max()))
    LB_THROW(DataError, path + ": " + std::to_string(tokens.size()) +
                            " tokens do not fit one shard (at most 2^31-1)");
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // Same directory, so the rename cannot cross file systems; hidden so globs skip it.
  std::string tmp = (dir / ".").string() + target.filename().string() + ".tmp.XXXXXX";
  Fd fd(::mkstemp(tmp.data()));
  if (fd.get() < 0) LB_THROW(DataError, path + ": cannot create a temp file: " + errnoText());
  try {
    if (::fchmod(fd.get(), 0644) != 0) LB_THROW(DataError, tmp + ": chmod: " + errnoText());
    int32_t header[256] = {kShardMagic, kShardVersion, static_cast<int32_t>(tokens.size())};
    writeAll(fd.get(), header, sizeof header, path);
    writeAll(fd.get(), tokens.data(), tokens.size_bytes(), path);
    if (::fsync(fd.get()) != 0) LB_THROW(DataError, path + ": fsync: " + errnoText());
    if (::close(fd.release()) != 0) LB_THROW(DataError, path + ": close: " + errnoText());
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      LB_THROW(DataError, path + ": cannot rename " + tmp + " to it: " + errnoText());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable; failing to open the directory is not worth an error.
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) ::fsync(dfd.get());
}

std::vector<std::string> expandGlob(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> files;
  if (rc == 0)
    for (std::size_t i = 0; i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  if (rc == GLOB_NOMATCH) LB_THROW(DataError, pattern + ": no file matches");
  if (rc != 0) LB_THROW(DataError, pattern + ": glob failed (read error or out of memory)");
  // glob sorts by the locale's collation; bytewise keeps the shard order the same everywhere.
  std::sort(files.begin(), files.end());
  return files;
}

// ---- batch order ----

EpochSampler::EpochSampler(int64_t count, int64_t batch, uint64_t seed, int rank, int world,
                           Order order)
    : count_(count), batch_(batch), seed_(seed), rank_(rank), world_(world), order_(order) {
  if (world < 1 || rank < 0 || rank >= world || batch < 1)
    LB_THROW(DataError, "loader: rank " + std::to_string(rank) + " of world " +
                            std::to_string(world) + " with batch " + std::to_string(batch) +
                            " (need 0 <= rank < world and batch >= 1)");
  if (count < batch * world)
    LB_THROW(DataError, "loader: " + std::to_string(count) + " items, batch " +
                            std::to_string(batch) + " x world " + std::to_string(world) +
                            " needs " + std::to_string(batch * world));
  batches_per_epoch_ = count / world / batch;
}

std::vector<int64_t> EpochSampler::permutation(int64_t epoch) const {
  std::vector<int64_t> p(static_cast<std::size_t>(count_));
  for (int64_t i = 0; i < count_; ++i) p[i] = i;
  if (order_ == Order::Sequential) return p;
  // seed_seq and mt19937_64 are specified exactly by the standard, so (seed, epoch) gives the
  // same order everywhere.
  const uint64_t e = static_cast<uint64_t>(epoch);
  std::seed_seq seq{uint32_t(seed_), uint32_t(seed_ >> 32), uint32_t(e), uint32_t(e >> 32)};
  std::mt19937_64 rng(seq);
  for (int64_t i = count_ - 1; i > 0; --i)
    std::swap(p[i], p[uniformBelow(rng, static_cast<uint64_t>(i) + 1)]);
  return p;
}

void EpochSampler::loadEpoch(int64_t epoch) {
  if (perm_epoch_ == epoch) return;
  perm_ = permutation(epoch);
  perm_epoch_ = epoch;
}

void EpochSampler::next(int64_t* items) {
  const int64_t end = batches_per_epoch_ * batch_;
  if (pos_.cursor + batch_ > end) pos_ = {pos_.epoch + 1, 0};
  loadEpoch(pos_.epoch);
  for (int64_t b = 0; b < batch_; ++b) items[b] = perm_[(pos_.cursor + b) * world_ + rank_];
  pos_.cursor += batch_;
  // Report a finished epoch as the start of the next one.
  if (pos_.cursor == end) pos_ = {pos_.epoch + 1, 0};
}

void EpochSampler::restore(const LoaderPosition& pos) {
  const int64_t end = batches_per_epoch_ * batch_;
  if (pos.epoch < 0 || pos.cursor < 0 || pos.cursor > end)
    LB_THROW(DataError, "loader: position epoch " + std::to_string(pos.epoch) + " cursor " +
                            std::to_string(pos.cursor) + " does not fit this data (" +
                            std::to_string(end) + " items per rank and epoch)");
  pos_ = pos.cursor == end ? LoaderPosition{pos.epoch + 1, 0} : pos;
}

// ---- token loader ----

namespace {

std::vector<TokenShard> openShards(const std::vector<std::string>& files, int64_t vocab) {
  if (files.empty()) LB_THROW(DataError, "token loader: no shard files given");
  std::vector<TokenShard> shards;
  shards.reserve(files.size());
  for (const std::string& f : files) shards.emplace_back(f, vocab);
  return shards;
}

std::vector<int64_t> shardStarts(const std::vector<TokenShard>& shards) {
  std::vector<int64_t> starts{0};
  for (const TokenShard& s : shards) starts.push_back(starts.back() + s.size());
  return starts;
}

int64_t checkedWindows(const std::vector<std::string>& files, int64_t tokens, int64_t batch,
                       int64_t seq_len, int world) {
  if (seq_len < 1) LB_THROW(DataError, "token loader: seq_len " + std::to_string(seq_len) + " < 1");
  const int64_t windows = tokens / (seq_len + 1);
  if (batch >= 1 && world >= 1 && windows < batch * world)
    LB_THROW(DataError, describeFiles(files) + ": seq_len " + std::to_string(seq_len) +
                            " with batch " + std::to_string(batch) + " on " +
                            std::to_string(world) + " ranks needs (" + std::to_string(seq_len) +
                            "+1)*" + std::to_string(batch) + "*" + std::to_string(world) + "=" +
                            std::to_string((seq_len + 1) * batch * world) +
                            " tokens, the files have " + std::to_string(tokens));
  return windows;
}

}  // namespace

TokenLoader::TokenLoader(const std::vector<std::string>& files, int64_t vocab, int64_t batch,
                         int64_t seq_len, uint64_t seed, int rank, int world, Order order)
    : shards_(openShards(files, vocab)),
      starts_(shardStarts(shards_)),
      total_(starts_.back()),
      batch_(batch),
      seq_len_(seq_len),
      sampler_(checkedWindows(files, total_, batch, seq_len, world), batch, seed, rank, world,
               order),
      items_(static_cast<std::size_t>(batch)) {}

void TokenLoader::window(int64_t w, int32_t* inputs, int32_t* targets) const {
  int64_t g = w * (seq_len_ + 1);
  std::size_t s = std::upper_bound(starts_.begin(), starts_.end(), g) - starts_.begin() - 1;
  for (int64_t k = 0; k <= seq_len_; ++k, ++g) {
    while (g >= starts_[s + 1]) ++s;  // windows run on across shard boundaries
    const int32_t t = shards_[s].tokens()[g - starts_[s]];
    if (k < seq_len_) inputs[k] = t;
    if (k > 0) targets[k - 1] = t;
  }
}

void TokenLoader::next(int32_t* inputs, int32_t* targets) {
  sampler_.next(items_.data());
  for (int64_t b = 0; b < batch_; ++b)
    window(items_[b], inputs + b * seq_len_, targets + b * seq_len_);
}

// ---- IDX ----

IdxImages readIdxImages(const std::string& path) {
  FileSource file(path);
  return toImages(readIdx(file, file.size(), path, kIdxImagesMagic, "images"));
}

std::vector<uint8_t> readIdxLabels(const std::string& path) {
  FileSource file(path);
  return readIdx(file, file.size(), path, kIdxLabelsMagic, "labels").data;
}

IdxImages parseIdxImages(std::span<const uint8_t> file, const std::string& path) {
  MemorySource bytes(file);
  return toImages(
      readIdx(bytes, static_cast<int64_t>(file.size()), path, kIdxImagesMagic, "images"));
}

std::vector<uint8_t> parseIdxLabels(std::span<const uint8_t> file, const std::string& path) {
  MemorySource bytes(file);
  return readIdx(bytes, static_cast<int64_t>(file.size()), path, kIdxLabelsMagic, "labels").data;
}

namespace {

int64_t checkedImages(const std::string& images_path, const IdxImages& images,
                      const std::string& labels_path, const std::vector<uint8_t>& labels,
                      int64_t batch, int world) {
  if (static_cast<int64_t>(labels.size()) != images.count)
    LB_THROW(DataError, labels_path + ": " + std::to_string(labels.size()) + " labels, but " +
                            images_path + " has " + std::to_string(images.count) + " images");
  if (batch >= 1 && world >= 1 && images.count < batch * world)
    LB_THROW(DataError, images_path + ": " + std::to_string(images.count) + " images, batch " +
                            std::to_string(batch) + " on " + std::to_string(world) +
                            " ranks needs " + std::to_string(batch * world));
  return images.count;
}

}  // namespace

ImageLoader::ImageLoader(const std::string& images_path, const std::string& labels_path,
                         int64_t batch, uint64_t seed, int rank, int world, Order order)
    : labels_path_(labels_path),
      images_(readIdxImages(images_path)),
      labels_(readIdxLabels(labels_path)),
      batch_(batch),
      rank_(rank),
      world_(world),
      sampler_(checkedImages(images_path, images_, labels_path, labels_, batch, world), batch, seed,
               rank, world, order),
      items_(static_cast<std::size_t>(batch)) {}

void ImageLoader::copyExample(int64_t item, float* input, int32_t* label) const {
  const int64_t n = pixelsPerImage();
  const uint8_t* src = images_.pixels.data() + item * n;
  for (int64_t i = 0; i < n; ++i) input[i] = src[i] * (1.0f / 255.0f);
  *label = labels_[item];
}

void ImageLoader::next(float* inputs, int32_t* labels) {
  sampler_.next(items_.data());
  for (int64_t b = 0; b < batch_; ++b)
    copyExample(items_[b], inputs + b * pixelsPerImage(), labels + b);
}

int64_t ImageLoader::evalBatches() const {
  const int64_t lo = rank_ * size() / world_, hi = (rank_ + 1) * size() / world_;
  return (hi - lo + batch_ - 1) / batch_;
}

int64_t ImageLoader::evalBatch(int64_t index, float* inputs, int32_t* labels) const {
  if (index < 0 || index >= evalBatches())
    LB_THROW(DataError, "image loader: eval batch " + std::to_string(index) + " of " +
                            std::to_string(evalBatches()));
  const int64_t lo = rank_ * size() / world_, hi = (rank_ + 1) * size() / world_;
  const int64_t start = lo + index * batch_;
  const int64_t n = std::min(batch_, hi - start);
  for (int64_t b = 0; b < n; ++b) copyExample(start + b, inputs + b * pixelsPerImage(), labels + b);
  // Zero the unused tail so a short batch never feeds stale values.
  std::fill(inputs + n * pixelsPerImage(), inputs + batch_ * pixelsPerImage(), 0.0f);
  std::fill(labels + n, labels + batch_, 0);
  return n;
}

void ImageLoader::checkLabels(int64_t classes) const {
  for (std::size_t i = 0; i < labels_.size(); ++i)
    if (labels_[i] >= classes)
      LB_THROW(DataError, labels_path_ + ": byte " + std::to_string(8 + i) + ": label " +
                              std::to_string(labels_[i]) + " >= classes " +
                              std::to_string(classes));
}

}  // namespace lowband::nn
