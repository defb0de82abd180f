#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "nn/data.h"
#include "tests/test_support.h"

namespace lowband::nn {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// Runs `fn`, expects a DataError, and checks that its message has every one of `parts`.
void expectDataError(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no DataError thrown";
  } catch (const DataError& e) {
    for (const std::string& part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message lacks '" << part << "': " << e.what();
  }
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void writeBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A shard built by hand (not by writeTokenShard) so refusals can be made of any header.
std::string shardBytes(int32_t magic, int32_t version, int32_t count,
                       const std::vector<uint16_t>& tokens) {
  std::vector<int32_t> header(256, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  std::string bytes(reinterpret_cast<const char*>(header.data()), 1024);
  bytes.append(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
  return bytes;
}

std::vector<uint16_t> iota16(std::size_t n, uint16_t first = 0) {
  std::vector<uint16_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

// ---- token shards ----

TEST(TokenShard, RoundTrip) {
  TempDir dir;
  const std::string path = (dir.path() / "train_000000.bin").string();
  std::vector<uint16_t> tokens = iota16(1000);
  tokens.push_back(65535);
  writeTokenShard(path, tokens);
  EXPECT_EQ(fs::file_size(path), 1024u + 2 * tokens.size());
  EXPECT_EQ(readTokenShard(path, 65536), tokens);
  // The header is the llm.c one, byte for byte.
  const std::string bytes = readFile(path);
  int32_t header[3];
  std::memcpy(header, bytes.data(), sizeof header);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 1001);
  // No temp file is left behind, and a rewrite replaces the file.
  writeTokenShard(path, iota16(3, 7));
  EXPECT_EQ(readTokenShard(path, 10), (std::vector<uint16_t>{7, 8, 9}));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

TEST(TokenShard, EmptyShardIsValid) {
  TempDir dir;
  const std::string path = (dir.path() / "empty.bin").string();
  writeTokenShard(path, {});
  TokenShard shard(path, 256);
  EXPECT_EQ(shard.size(), 0);
  EXPECT_TRUE(readTokenShard(path, 256).empty());
}

TEST(TokenShard, MapStaysValidAfterMove) {
  TempDir dir;
  const std::string path = (dir.path() / "a.bin").string();
  writeTokenShard(path, iota16(50));
  std::vector<TokenShard> shards;
  shards.emplace_back(path, 256);
  shards.emplace_back(path, 256);  // may reallocate: moves the first
  EXPECT_EQ(shards[0].tokens()[49], 49);
  EXPECT_EQ(shards[1].path(), path);
}

TEST(TokenShard, RefusesShortHeader) {
  TempDir dir;
  const std::string path = (dir.path() / "short.bin").string();
  writeBytes(path, shardBytes(20240520, 1, 0, {}).substr(0, 100));
  expectDataError([&] { readTokenShard(path, 256); },
                  {path + ": byte 100: file ends inside the 1024-byte token shard header"});
  writeBytes(path, "");
  expectDataError([&] { readTokenShard(path, 256); }, {path + ": byte 0:"});
}

TEST(TokenShard, RefusesWrongMagic) {
  TempDir dir;
  const std::string path = (dir.path() / "magic.bin").string();
  writeBytes(path, shardBytes(20240521, 1, 2, {1, 2}));
  expectDataError([&] { readTokenShard(path, 256); },
                  {path + ": byte 0: magic 20240521, expected 20240520"});
}

TEST(TokenShard, RefusesWrongVersion) {
  TempDir dir;
  const std::string path = (dir.path() / "version.bin").string();
  writeBytes(path, shardBytes(20240520, 2, 2, {1, 2}));
  expectDataError([&] { readTokenShard(path, 256); }, {path + ": byte 4: version 2, expected 1"});
}

TEST(TokenShard, RefusesSizeMismatch) {
  TempDir dir;
  const std::string path = (dir.path() / "size.bin").string();
  writeBytes(path, shardBytes(20240520, 1, 17, iota16(18)));  // one token too many
  expectDataError(
      [&] { readTokenShard(path, 256); },
      {path + ": byte 8: token count 17 needs 1024+2*17=1058 bytes, the file has 1060"});
  writeBytes(path, shardBytes(20240520, 1, 17, iota16(16)) + "x");  // short and odd
  expectDataError([&] { readTokenShard(path, 256); }, {path + ": byte 8:", "the file has 1057"});
  writeBytes(path, shardBytes(20240520, 1, -1, {}));
  expectDataError([&] { readTokenShard(path, 256); }, {path + ": byte 8: token count -1"});
}

TEST(TokenShard, RefusesTokenOutsideVocab) {
  TempDir dir;
  const std::string path = (dir.path() / "train_000000.bin").string();
  std::vector<uint16_t> tokens = iota16(20);
  tokens[17] = 300;
  tokens[19] = 400;  // only the first culprit is named
  writeTokenShard(path, tokens);
  expectDataError([&] { readTokenShard(path, 256); },
                  {path + ": byte 1024+2*17=1058: token 300 >= vocab 256"});
  EXPECT_NO_THROW(readTokenShard(path, 401));
  expectDataError([&] { readTokenShard(path, 0); }, {"vocab 0"});
}

TEST(TokenShard, RefusesMissingFile) {
  expectDataError([] { readTokenShard("/nonexistent/x.bin", 256); },
                  {"/nonexistent/x.bin: cannot open"});
  expectDataError([] { writeTokenShard("/nonexistent/x.bin", iota16(3)); }, {"/nonexistent/x.bin"});
}

TEST(ExpandGlob, SortedMatchesAndNamedPattern) {
  TempDir dir;
  for (const char* name : {"train_000002.bin", "train_000000.bin", "train_000001.bin", "val.bin"})
    writeTokenShard((dir.path() / name).string(), iota16(4));
  const std::string pattern = (dir.path() / "train_*.bin").string();
  auto files = expandGlob(pattern);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_TRUE(std::is_sorted(files.begin(), files.end()));
  EXPECT_EQ(fs::path(files[0]).filename(), "train_000000.bin");
  const std::string missing = (dir.path() / "test_*.bin").string();
  expectDataError([&] { expandGlob(missing); }, {missing + ": no file matches"});
}

// ---- batch order ----

TEST(EpochSampler, OrderIsPinned) {
  // The order must not depend on the standard library; these values come from the
  // seed_seq + mt19937_64 + rejection draw in nn/data.cpp and must never change.
  EpochSampler s(10, 1, 1234, 0, 1);
  const std::vector<int64_t> p0 = s.permutation(0), p1 = s.permutation(1);
  std::vector<int64_t> sorted = p0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_NE(p0, p1);
  EXPECT_EQ(p0, (std::vector<int64_t>{3, 1, 6, 5, 8, 4, 7, 0, 2, 9}));
  EXPECT_EQ(p1, (std::vector<int64_t>{2, 5, 4, 9, 6, 3, 0, 8, 7, 1}));
}

TEST(EpochSampler, RanksTakeStridedItemsOfOneOrder) {
  const int world = 3;
  const int64_t count = 50, batch = 4;  // 16 per rank -> 4 batches, 2 dropped items
  std::vector<std::vector<int64_t>> got(world);
  for (int r = 0; r < world; ++r) {
    EpochSampler s(count, batch, 7, r, world);
    EXPECT_EQ(s.batchesPerEpoch(), 4);
    std::vector<int64_t> items(batch);
    for (int i = 0; i < 4; ++i) {
      s.next(items.data());
      got[r].insert(got[r].end(), items.begin(), items.end());
    }
    EXPECT_EQ(s.position(), (LoaderPosition{1, 0}));
  }
  const std::vector<int64_t> perm = EpochSampler(count, batch, 7, 0, world).permutation(0);
  for (int r = 0; r < world; ++r)
    for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(got[r][i], perm[r + i * world]);
}

TEST(EpochSampler, SequentialOrder) {
  EpochSampler s(10, 2, 99, 1, 2, Order::Sequential);
  std::vector<int64_t> items(2);
  s.next(items.data());
  EXPECT_EQ(items, (std::vector<int64_t>{1, 3}));
  s.next(items.data());
  EXPECT_EQ(items, (std::vector<int64_t>{5, 7}));
  s.next(items.data());  // 5 per rank: batches of 2 drop the fifth, so epoch 1 starts over
  EXPECT_EQ(items, (std::vector<int64_t>{1, 3}));
}

TEST(EpochSampler, RefusesBadArguments) {
  expectDataError([] { EpochSampler(7, 4, 1, 0, 2); }, {"7 items", "needs 8"});
  expectDataError([] { EpochSampler(100, 4, 1, 2, 2); }, {"rank 2 of world 2"});
  EpochSampler s(100, 4, 1, 0, 2);
  expectDataError([&] { s.restore({0, 49}); }, {"cursor 49", "48 items per rank"});
  expectDataError([&] { s.restore({-1, 0}); }, {"epoch -1"});
}

// ---- token loader ----

// Shards holding the global token index (mod 65536), so every window names itself.
std::vector<std::string> countingShards(const TempDir& dir, const std::vector<int64_t>& sizes) {
  std::vector<std::string> files;
  int64_t next = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::vector<uint16_t> tokens(sizes[i]);
    for (uint16_t& t : tokens) t = static_cast<uint16_t>(next++);
    char name[32];
    std::snprintf(name, sizeof name, "train_%06zu.bin", i);
    files.push_back((dir.path() / name).string());
    writeTokenShard(files.back(), tokens);
  }
  return files;
}

struct TokenBatch {
  std::vector<int32_t> inputs, targets;
  bool operator==(const TokenBatch&) const = default;
};

TokenBatch nextBatch(TokenLoader& loader, int64_t batch) {
  TokenBatch b{std::vector<int32_t>(batch * loader.seqLen()),
               std::vector<int32_t>(batch * loader.seqLen())};
  loader.next(b.inputs.data(), b.targets.data());
  return b;
}

std::vector<TokenBatch> nextBatches(TokenLoader& loader, int64_t batch, int n) {
  std::vector<TokenBatch> out;
  for (int i = 0; i < n; ++i) out.push_back(nextBatch(loader, batch));
  return out;
}

TEST(TokenLoader, WindowsAreShiftedPairsAcrossShards) {
  TempDir dir;
  // 12 + 0 + 31 = 43 tokens: 8 windows of 5; windows 2 and 3 straddle the empty shard.
  auto files = countingShards(dir, {12, 0, 31});
  TokenLoader loader(files, 65536, 2, 4, 1, 0, 1);
  EXPECT_EQ(loader.tokens(), 43);
  EXPECT_EQ(loader.windows(), 8);
  EXPECT_EQ(loader.batchesPerEpoch(), 4);
  for (int64_t w = 0; w < loader.windows(); ++w) {
    int32_t in[4], tg[4];
    loader.window(w, in, tg);
    for (int k = 0; k < 4; ++k) {
      EXPECT_EQ(in[k], w * 5 + k) << "window " << w;
      EXPECT_EQ(tg[k], w * 5 + k + 1) << "window " << w;
    }
  }
}

TEST(TokenLoader, SameSeedSameBatches) {
  TempDir dir;
  auto files = countingShards(dir, {3000, 1000});
  TokenLoader a(files, 65536, 4, 16, 42, 0, 1), b(files, 65536, 4, 16, 42, 0, 1),
      c(files, 65536, 4, 16, 43, 0, 1);
  // 235 windows -> 58 batches per epoch; 130 batches run into the third epoch.
  auto ba = nextBatches(a, 4, 130);
  EXPECT_EQ(ba, nextBatches(b, 4, 130));
  EXPECT_NE(ba, nextBatches(c, 4, 130));
}

TEST(TokenLoader, RanksReadDisjointWindows) {
  TempDir dir;
  auto files = countingShards(dir, {5000, 2000});  // 7000 / 17 = 411 windows
  for (int world : {2, 4}) {
    const int64_t batch = 3, seq = 16;
    std::set<int32_t> seen;
    int64_t total = 0;
    for (int r = 0; r < world; ++r) {
      TokenLoader loader(files, 65536, batch, seq, 5, r, world);
      const int64_t per_epoch = loader.batchesPerEpoch();
      EXPECT_EQ(per_epoch, 411 / world / batch);
      for (const TokenBatch& b : nextBatches(loader, batch, static_cast<int>(per_epoch)))
        for (int64_t i = 0; i < batch; ++i) {
          const int32_t first = b.inputs[i * seq];
          EXPECT_EQ(first % (seq + 1), 0);
          EXPECT_EQ(b.targets[i * seq + seq - 1], first + seq);
          EXPECT_TRUE(seen.insert(first).second)
              << "window at token " << first << " read twice (world " << world << ")";
          ++total;
        }
    }
    EXPECT_EQ(total, world * (411 / world / batch) * batch);
  }
}

TEST(TokenLoader, RestoreGivesTheSameNextBatches) {
  TempDir dir;
  auto files = countingShards(dir, {2000});  // 117 windows of 17 -> 14 batches of 4 per rank
  for (int skip : {0, 5, 13, 14, 20}) {
    TokenLoader a(files, 65536, 4, 16, 9, 1, 2);
    nextBatches(a, 4, skip);
    const LoaderPosition pos = a.position();
    const auto expected = nextBatches(a, 4, 20);  // crosses at least one epoch boundary
    TokenLoader b(files, 65536, 4, 16, 9, 1, 2);
    b.restore(pos);
    EXPECT_EQ(b.position(), pos);
    EXPECT_EQ(nextBatches(b, 4, 20), expected) << "after " << skip << " batches";
    a.restore(pos);  // the same loader can go back too
    EXPECT_EQ(nextBatches(a, 4, 20), expected);
  }
}

TEST(TokenLoader, EpochWrap) {
  TempDir dir;
  auto files = countingShards(dir, {17 * 12});  // exactly 12 windows of 17
  TokenLoader loader(files, 65536, 3, 16, 11, 0, 1);
  ASSERT_EQ(loader.batchesPerEpoch(), 4);
  auto firstWindows = [&](const std::vector<TokenBatch>& batches) {
    std::vector<int32_t> firsts;
    for (const TokenBatch& b : batches)
      for (int i = 0; i < 3; ++i) firsts.push_back(b.inputs[i * 16] / 17);
    return firsts;
  };
  auto e0 = firstWindows(nextBatches(loader, 3, 4));
  EXPECT_EQ(loader.position(), (LoaderPosition{1, 0}));
  auto e1 = firstWindows(nextBatches(loader, 3, 4));
  EXPECT_EQ(loader.position(), (LoaderPosition{2, 0}));
  EXPECT_NE(e0, e1);  // a new order each epoch ...
  std::sort(e0.begin(), e0.end());
  std::sort(e1.begin(), e1.end());
  std::vector<int32_t> all(12);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(e0, all);  // ... of every window once
  EXPECT_EQ(e1, all);
}

TEST(TokenLoader, RefusesTooLittleData) {
  TempDir dir;
  auto files = countingShards(dir, {1000});
  expectDataError([&] { TokenLoader(files, 65536, 2, 256, 1, 0, 2); },
                  {files[0], "seq_len 256", "(256+1)*2*2=1028 tokens", "the files have 1000"});
  TempDir other;
  auto more = countingShards(other, {500, 500});
  expectDataError([&] { TokenLoader(more, 65536, 2, 256, 1, 0, 2); }, {"(+1 more files)"});
  expectDataError([&] { TokenLoader({}, 256, 2, 16, 1, 0, 1); }, {"no shard files"});
  expectDataError([&] { TokenLoader(files, 256, 2, 16, 1, 0, 1); }, {"token 256 >= vocab 256"});
}

// ---- IDX ----

std::string be32(uint32_t v) { return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; }

std::string idxImages(uint32_t n, uint32_t rows, uint32_t cols) {
  std::string s = be32(0x803) + be32(n) + be32(rows) + be32(cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) s += char(i % 251);
  return s;
}

std::string idxLabels(uint32_t n, uint32_t classes = 10) {
  std::string s = be32(0x801) + be32(n);
  for (uint32_t i = 0; i < n; ++i) s += char((i * 7) % classes);
  return s;
}

void writeGzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

TEST(Idx, ReadsPlainAndGzip) {
  TempDir dir;
  const std::string plain = (dir.path() / "images").string(),
                    gz = (dir.path() / "images.gz").string(),
                    labels = (dir.path() / "labels.gz").string();
  writeBytes(plain, idxImages(5, 3, 2));
  writeGzip(gz, idxImages(5, 3, 2));
  writeGzip(labels, idxLabels(5));
  for (const std::string& path : {plain, gz}) {
    IdxImages im = readIdxImages(path);
    EXPECT_EQ(im.count, 5);
    EXPECT_EQ(im.rows, 3);
    EXPECT_EQ(im.cols, 2);
    ASSERT_EQ(im.pixels.size(), 30u);
    EXPECT_EQ(im.pixels[29], 29);
  }
  EXPECT_EQ(readIdxLabels(labels), (std::vector<uint8_t>{0, 7, 4, 1, 8}));
}

TEST(Idx, Refusals) {
  TempDir dir;
  const std::string path = (dir.path() / "bad.gz").string();
  writeGzip(path, idxImages(2, 2, 2).substr(0, 10));
  expectDataError([&] { readIdxImages(path); },
                  {path + ": byte 10: file ends inside the 16-byte IDX header"});
  writeGzip(path, idxLabels(4));
  expectDataError([&] { readIdxImages(path); },
                  {path + ": byte 0: magic 0x00000801 (IDX labels), expected 0x00000803"});
  writeGzip(path, idxImages(3, 2, 2).substr(0, 27));
  expectDataError([&] { readIdxImages(path); },
                  {path + ": byte 4: dimensions 3*2*2 need 16+3*2*2=28 bytes, the file has 27"});
  writeBytes(path, idxLabels(4) + "xx");
  expectDataError([&] { readIdxLabels(path); }, {path + ": byte 4:", "the file has 14"});
  // A gzip stream cut short.
  writeGzip(path, idxImages(50, 4, 4));
  const std::string whole = readFile(path);
  writeBytes(path, whole.substr(0, whole.size() / 2));
  expectDataError([&] { readIdxImages(path); }, {path, "gzip data is truncated"});
  expectDataError([] { readIdxLabels("/nonexistent/labels.gz"); },
                  {"/nonexistent/labels.gz: cannot open"});
}

// The bytes of one gzip member holding `bytes`.
std::string gzipBytes(const std::string& bytes) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&zs, bytes.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

TEST(Idx, GzipBombStopsAtWhatTheHeaderPromises) {
  // A valid 100x28x28 file followed by 512 MiB of zeros in 1 KB gzip members (each 1 MiB):
  // read no further than the header's 16+78400 bytes.
  TempDir dir;
  const std::string images = (dir.path() / "bomb-images.gz").string(),
                    labels = (dir.path() / "bomb-labels.gz").string();
  const std::string zeros = gzipBytes(std::string(1 << 20, '\0'));
  std::string tail;
  for (int i = 0; i < 512; ++i) tail += zeros;
  writeBytes(images, gzipBytes(idxImages(100, 28, 28)) + tail);
  writeBytes(labels, gzipBytes(idxLabels(100)) + tail);
  expectDataError([&] { readIdxImages(images); },
                  {images + ": byte 78416: the file has more data than its header's dimensions "
                            "100*28*28 promise (16+100*28*28=78416 bytes)"});
  expectDataError([&] { readIdxLabels(labels); },
                  {labels + ": byte 108: the file has more data than its header's dimensions "
                            "100 promise"});
  // The same with the extra data inside the first member.
  writeGzip(images, idxImages(2, 2, 2) + std::string(1 << 20, '\0'));
  expectDataError([&] { readIdxImages(images); },
                  {images + ": byte 24: the file has more data than", "2*2*2"});
  // Several members that together hold exactly the promised data are one file (as gzip -d).
  const std::string whole = idxImages(5, 3, 2);
  writeBytes(images, gzipBytes(whole.substr(0, 7)) + gzipBytes(whole.substr(7)));
  EXPECT_EQ(readIdxImages(images).pixels.size(), 30u);
}

TEST(Idx, HeadersPromisingTooMuchAreRefusedUpFront) {
  TempDir dir;
  const std::string plain = (dir.path() / "huge").string(), gz = (dir.path() / "huge.gz").string();
  const std::string limit = "over the limit of 4294967296 (4 GiB)";
  struct Case {
    uint32_t n, rows, cols;
    std::string promise;
  };
  for (const Case& c : {Case{1000000000, 1000000000, 1, "promise 1000000000000000000 bytes"},
                        Case{1000000000, 1000000000, 28, "promise more than 2^64 bytes"},
                        Case{4294967295u, 4294967295u, 4294967295u, "more than 2^64"},
                        Case{65536, 256, 257, "promise 4311744512 bytes"}}) {
    const std::string header = be32(0x803) + be32(c.n) + be32(c.rows) + be32(c.cols);
    writeBytes(plain, header + "some data");
    writeGzip(gz, header + "some data");
    for (const std::string& path : {plain, gz})
      expectDataError([&] { readIdxImages(path); }, {path + ": byte 4: dimensions ", c.promise,
                                                     "bytes of uint8 images, " + limit});
  }
  // A zero dimension does not excuse the others (callers multiply rows by cols).
  writeBytes(plain, be32(0x803) + be32(4194238350u) + be32(4041241847u) + be32(0));
  expectDataError([&] { readIdxImages(plain); },
                  {plain +
                   ": byte 4: dimensions 4194238350*4041241847*0 hold no data, but their "
                   "nonzero product 16949931536312232450 is " +
                   limit});
  writeBytes(plain, be32(0x803) + be32(0) + be32(28) + be32(28));
  EXPECT_EQ(readIdxImages(plain).rows, 28);
  // Within the limit but far more than the file holds: refused, without holding the promise.
  writeGzip(gz, be32(0x801) + be32(4000000000u) + "0123456789");
  expectDataError([&] { readIdxLabels(gz); },
                  {gz + ": byte 4: dimensions 4000000000 need 8+4000000000=4000000008 bytes, "
                        "the file has 18 (decompressed)"});
}

TEST(Idx, PlainSizeIsCheckedBeforeReading) {
  // A sparse 1 GiB file behind a 100x28x28 header: refused from its size, not read.
  TempDir dir;
  const std::string path = (dir.path() / "images").string();
  writeBytes(path, idxImages(100, 28, 28));
  fs::resize_file(path, std::uintmax_t{1} << 30);
  expectDataError([&] { readIdxImages(path); },
                  {path + ": byte 4: dimensions 100*28*28 need 16+100*28*28=78416 bytes, the file "
                          "has 1073741824"});
  writeBytes(path, idxImages(100, 28, 28).substr(0, 5000));
  expectDataError([&] { readIdxImages(path); },
                  {"need 16+100*28*28=78416 bytes, the file has 5000"});
}

TEST(Idx, DamagedGzipIsRefused) {
  TempDir dir;
  const std::string path = (dir.path() / "bad.gz").string();
  const std::string good = gzipBytes(idxImages(50, 4, 4));
  // Cut inside the header's member: the stream ends early.
  writeBytes(path, good.substr(0, 12));
  expectDataError([&] { readIdxImages(path); }, {path + ": byte ", "gzip data is truncated"});
  // A flipped CRC in the trailer.
  std::string crc = good;
  crc[crc.size() - 8] ^= 0x55;
  writeBytes(path, crc);
  expectDataError([&] { readIdxImages(path); },
                  {path + ": byte 816 (decompressed), compressed byte ", "gzip data is corrupt"});
  // Bytes after the gzip stream that are not another member.
  writeBytes(path, good + "trailing");
  expectDataError([&] { readIdxImages(path); },
                  {path + ": byte 816 (decompressed), compressed byte " +
                   std::to_string(good.size()) + ": data after the end of the gzip stream"});
}

TEST(Idx, ParsesFromMemoryLikeFromFiles) {
  const std::string images = idxImages(5, 3, 2), labels = idxLabels(5);
  auto span = [](const std::string& s) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  for (const std::string& bytes : {images, gzipBytes(images)}) {
    const IdxImages im = parseIdxImages(span(bytes), "mem");
    EXPECT_EQ(im.count, 5);
    EXPECT_EQ(im.rows, 3);
    EXPECT_EQ(im.cols, 2);
    EXPECT_EQ(im.pixels, std::vector<uint8_t>(images.begin() + 16, images.end()));
  }
  for (const std::string& bytes : {labels, gzipBytes(labels)})
    EXPECT_EQ(parseIdxLabels(span(bytes), "mem"), (std::vector<uint8_t>{0, 7, 4, 1, 8}));
  const std::string bomb = gzipBytes(labels + std::string(1 << 20, '\0'));
  expectDataError([&] { parseIdxLabels(span(bomb), "mem"); },
                  {"mem: byte 13: the file has more data than"});
  expectDataError([&] { parseIdxLabels(span(labels.substr(0, 10)), "mem"); },
                  {"mem: byte 4: dimensions 5 need 8+5=13 bytes, the file has 10"});
  expectDataError([&] { parseIdxImages(span(labels), "mem"); }, {"mem: byte 0: magic"});
}

struct ImageSet {
  TempDir dir;
  std::string images, labels;
  explicit ImageSet(uint32_t n) {
    images = (dir.path() / "images.gz").string();
    labels = (dir.path() / "labels.gz").string();
    writeGzip(images, idxImages(n, 2, 3));
    writeGzip(labels, idxLabels(n));
  }
};

// The image behind a batch row, from its first pixel (i*6 % 251 identifies i < 41).
int64_t imageIndex(const float* pixels) {
  const int first = static_cast<int>(pixels[0] * 255.0f + 0.5f);
  for (int64_t i = 0; i < 41; ++i)
    if (i * 6 % 251 == first) return i;
  return -1;
}

TEST(ImageLoader, BatchesAreScaledDisjointAndRestorable) {
  ImageSet set(41);
  const int64_t batch = 4;
  std::set<int64_t> seen;
  for (int r = 0; r < 2; ++r) {
    ImageLoader loader(set.images, set.labels, batch, 3, r, 2);
    EXPECT_EQ(loader.pixelsPerImage(), 6);
    EXPECT_EQ(loader.batchesPerEpoch(), 5);  // 20 per rank
    std::vector<float> x(batch * 6);
    std::vector<int32_t> y(batch);
    for (int i = 0; i < 5; ++i) {
      loader.next(x.data(), y.data());
      for (int b = 0; b < batch; ++b) {
        const int64_t img = imageIndex(&x[b * 6]);
        ASSERT_GE(img, 0);
        EXPECT_FLOAT_EQ(x[b * 6 + 5], ((img * 6 + 5) % 251) / 255.0f);
        EXPECT_EQ(y[b], (img * 7) % 10);
        EXPECT_TRUE(seen.insert(img).second) << "image " << img << " read twice";
      }
    }
    // Restore: same next batches as a fresh loader restored to the same position.
    const LoaderPosition pos = loader.position();
    std::vector<float> x1(x.size()), x2(x.size());
    loader.next(x1.data(), y.data());
    ImageLoader other(set.images, set.labels, batch, 3, r, 2);
    other.restore(pos);
    other.next(x2.data(), y.data());
    EXPECT_EQ(x1, x2);
  }
  EXPECT_EQ(seen.size(), 40u);
}

TEST(ImageLoader, EvalCoversEverySampleOnce) {
  ImageSet set(41);
  std::vector<int64_t> all;
  for (int r = 0; r < 3; ++r) {
    ImageLoader loader(set.images, set.labels, 4, 3, r, 3, Order::Sequential);
    std::vector<float> x(4 * 6);
    std::vector<int32_t> y(4);
    for (int64_t i = 0; i < loader.evalBatches(); ++i) {
      const int64_t n = loader.evalBatch(i, x.data(), y.data());
      EXPECT_TRUE(n == 4 || i == loader.evalBatches() - 1);
      for (int64_t b = 0; b < n; ++b) all.push_back(imageIndex(&x[b * 6]));
      for (int64_t b = n; b < 4; ++b) EXPECT_EQ(x[b * 6], 0.0f);  // zeroed tail
    }
  }
  std::vector<int64_t> expected(41);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected);  // in file order, rank blocks one after another
}

TEST(ImageLoader, Refusals) {
  ImageSet set(10);
  const std::string labels9 = (set.dir.path() / "labels9.gz").string();
  writeGzip(labels9, idxLabels(9));
  expectDataError([&] { ImageLoader(set.images, labels9, 2, 1, 0, 1); },
                  {labels9 + ": 9 labels, but " + set.images + " has 10 images"});
  expectDataError([&] { ImageLoader(set.images, set.labels, 4, 1, 0, 3); },
                  {set.images + ": 10 images, batch 4 on 3 ranks needs 12"});
  ImageLoader loader(set.images, set.labels, 2, 1, 0, 1);
  EXPECT_NO_THROW(loader.checkLabels(10));
  expectDataError([&] { loader.checkLabels(5); }, {set.labels + ": byte 9: label 7 >= classes 5"});
}

TEST(ImageLoader, FashionMnist) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  if (!fs::exists(dir + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "no " << dir << " (apt-get install dataset-fashion-mnist)";
  IdxImages images = readIdxImages(dir + "train-images-idx3-ubyte.gz");
  EXPECT_EQ(images.count, 60000);
  EXPECT_EQ(images.rows, 28);
  EXPECT_EQ(images.cols, 28);
  ImageLoader loader(dir + "t10k-images-idx3-ubyte.gz", dir + "t10k-labels-idx1-ubyte.gz", 64, 1, 0,
                     1);
  EXPECT_EQ(loader.size(), 10000);
  EXPECT_NO_THROW(loader.checkLabels(10));
}

// ---- scripts/prepare_text.py ----

std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return "popen failed";
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return status == 0 ? out : "exit status " + std::to_string(status) + ": " + out;
}

std::string concatShards(const std::string& pattern) {
  std::string bytes;
  for (const std::string& f : expandGlob(pattern))
    for (uint16_t t : readTokenShard(f, 256)) bytes += static_cast<char>(t);
  return bytes;
}

TEST(PrepareText, ShardsLoadAndConcatenateToTheInput) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
  TempDir dir;
  std::string text;
  for (int i = 0; i < 5000; ++i) text += static_cast<char>((i * 37 + i / 256) % 256);
  const std::string input = dir.write("input.txt", text);
  const std::string out = (dir.path() / "out").string();
  const std::string cmd = "/usr/bin/python3 " + test::sourceDir() + "/scripts/prepare_text.py " +
                          input + " " + out + " --val-fraction 0.1 --shard-tokens 1000";
  std::string log = run(cmd);
  ASSERT_EQ(log.find("exit status"), std::string::npos) << log;
  EXPECT_EQ(expandGlob(out + "/train_*.bin").size(), 5u);  // 4500 bytes
  EXPECT_EQ(expandGlob(out + "/val_*.bin").size(), 1u);    // 500 bytes
  EXPECT_EQ(concatShards(out + "/train_*.bin") + concatShards(out + "/val_*.bin"), text);
  EXPECT_EQ(concatShards(out + "/train_*.bin"), text.substr(0, 4500));

  // A second run with the same input writes nothing.
  const auto stamp = fs::last_write_time(out + "/train_000000.bin");
  log = run(cmd);
  EXPECT_NE(log.find("up to date"), std::string::npos) << log;
  EXPECT_EQ(fs::last_write_time(out + "/train_000000.bin"), stamp);

  // A shorter input: shards are rewritten and the stale ones removed.
  dir.write("input.txt", text.substr(0, 1500));
  log = run(cmd);
  ASSERT_EQ(log.find("exit status"), std::string::npos) << log;
  EXPECT_EQ(expandGlob(out + "/train_*.bin").size(), 2u);  // 1350 bytes
  EXPECT_EQ(concatShards(out + "/train_*.bin") + concatShards(out + "/val_*.bin"),
            text.substr(0, 1500));
}

}  // namespace
}  // namespace lowband::nn
