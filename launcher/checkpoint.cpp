#include "launcher/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <sstream>
#include <utility>

#include "launcher/agree.h"
#include "launcher/units.h"

namespace lowband::launcher {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMarker = "COMPLETE";
constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kConfigFile = "config.yaml";
constexpr const char* kMarkerHeader = "lowband-checkpoint 2";
constexpr const char* kLockFile = "lowband.lock";
// A marker lists one line per file (two plus one per rank): far below this for any world.
constexpr uint64_t kMaxMarkerBytes = 64 << 20;

std::string errnoText() { return std::strerror(errno); }

// Closes on every path; the close of a written file is checked by hand.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& other) noexcept : fd(other.release()) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

void fsyncDirectory(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.fd < 0 || ::fsync(fd.fd) != 0)
    LB_THROW(CheckpointError, "cannot sync directory " + dir.string() + ": " + errnoText());
}

// Step of a "step_00000500" directory name, or -1.
int64_t stepOf(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step_") != 0) return -1;
  int64_t step = 0;
  for (std::size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// Checkpoint directories under `root`, newest first.
std::vector<std::pair<int64_t, fs::path>> stepDirs(const fs::path& root) {
  std::vector<std::pair<int64_t, fs::path>> dirs;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const int64_t step = stepOf(e.path().filename().string());
    if (step >= 0 && e.is_directory(ec)) dirs.emplace_back(step, e.path());
  }
  std::sort(dirs.begin(), dirs.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  return dirs;
}

CheckpointMarker::File describe(const std::string& name, std::span<const uint8_t> bytes) {
  return {name, bytes.size(), runtime::crc32(bytes)};
}

// "outer local_sgd (this run: diloco), fragments 4 (this run: none)": every field that differs.
std::string layoutDifference(const Checkpoints::Layout& then, const Checkpoints::Layout& now) {
  auto value = [](const Checkpoints::Layout& l, const std::string& name) -> std::string {
    for (const auto& [n, v] : l)
      if (n == name) return v;
    return "none";
  };
  std::vector<std::string> names;
  for (const auto* l : {&then, &now})
    for (const auto& [n, v] : *l)
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  std::string text;
  for (const std::string& n : names) {
    const std::string a = value(then, n), b = value(now, n);
    if (a != b) text += (text.empty() ? "" : ", ") + n + " " + a + " (this run: " + b + ")";
  }
  return text.empty() ? "the same fields in another order" : text;
}

std::optional<CheckpointMarker> readMarker(const fs::path& dir, std::string& why) {
  std::error_code ec;
  if (!fs::exists(dir / kMarker, ec)) {
    why = "incomplete (no " + std::string(kMarker) + " marker: the job stopped while writing it)";
    return std::nullopt;
  }
  try {
    const std::vector<uint8_t> bytes = readWholeFile(dir / kMarker, kMaxMarkerBytes);
    return CheckpointMarker::parse(std::string(bytes.begin(), bytes.end()),
                                   (dir / kMarker).string());
  } catch (const runtime::Error& e) {
    why = e.what();
    return std::nullopt;
  }
}

}  // namespace

std::string checkpointName(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string rankStateName(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "rank_%05d.state", rank);
  return buf;
}

void writeFileAtomic(const fs::path& path, std::span<const uint8_t> bytes) {
  const fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  auto fail = [&](const std::string& what) {
    const std::string reason = errnoText();
    ::unlink(tmp.c_str());
    LB_THROW(CheckpointError, "cannot write " + path.string() + ": " + what + reason);
  };
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.fd < 0) fail("");
  for (std::size_t at = 0; at < bytes.size();) {
    const ssize_t n = ::write(fd.fd, bytes.data() + at, bytes.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("");
    at += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.fd) != 0) fail("fsync: ");
  if (::close(fd.release()) != 0) fail("close: ");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename: ");
  fsyncDirectory(path.parent_path());
}

namespace {

// An open regular file and its size; CheckpointError otherwise.
std::pair<Fd, uint64_t> openRegular(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) LB_THROW(CheckpointError, path.string() + ": cannot open: " + errnoText());
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode))
    LB_THROW(CheckpointError, path.string() + ": not a readable regular file");
  return {Fd(fd.release()), static_cast<uint64_t>(st.st_size)};
}

// CRC-32 of a file of `bytes` bytes, read in pieces (a model file may be many GB); "" or why not.
std::string checkFile(const fs::path& path, uint64_t bytes, uint32_t crc) {
  try {
    auto [fd, size] = openRegular(path);
    if (size != bytes)
      return path.filename().string() + " has " + std::to_string(size) +
             " bytes, the marker says " + std::to_string(bytes) + " (truncated or replaced?)";
    std::vector<uint8_t> buffer(4 << 20);
    uint32_t running = 0;
    for (uint64_t at = 0; at < size;) {
      const ssize_t n = ::read(fd.fd, buffer.data(), std::min<uint64_t>(buffer.size(), size - at));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return path.filename().string() + ": cannot read: " + errnoText();
      running = runtime::crc32({buffer.data(), static_cast<std::size_t>(n)}, running);
      at += static_cast<uint64_t>(n);
    }
    if (running != crc) return path.filename().string() + " fails its CRC-32 (corrupt)";
    return "";
  } catch (const runtime::Error& e) {
    return e.what();
  }
}

}  // namespace

std::vector<uint8_t> readWholeFile(const fs::path& path, uint64_t max_bytes) {
  auto [fd, size] = openRegular(path);
  if (size > max_bytes)
    LB_THROW(CheckpointError, path.string() + " has " + std::to_string(size) +
                                  " bytes, more than the " + std::to_string(max_bytes) +
                                  " expected");
  std::vector<uint8_t> bytes(static_cast<std::size_t>(size));
  for (std::size_t at = 0; at < bytes.size();) {
    const ssize_t n = ::read(fd.fd, bytes.data() + at, bytes.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) LB_THROW(CheckpointError, path.string() + ": cannot read: " + errnoText());
    if (n == 0) {
      bytes.resize(at);  // shrank while reading
      break;
    }
    at += static_cast<std::size_t>(n);
  }
  return bytes;
}

std::vector<uint8_t> encodeSafetensors(const std::vector<NamedTensor>& tensors,
                                       const std::map<std::string, std::string>& metadata) {
  std::string header = "{\"__metadata__\":{";
  bool first = true;
  for (const auto& [k, v] : metadata) {
    if (!first) header += ',';
    header += jsonString(k);
    header += ':';
    header += jsonString(v);
    first = false;
  }
  header += "}";
  uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    int64_t n = 1;
    std::string shape;
    for (const int64_t d : t.shape) {
      if (!shape.empty()) shape += ',';
      shape += std::to_string(d);
      n *= d;
    }
    const uint64_t end = offset + static_cast<uint64_t>(n) * sizeof(float);
    header += ',';
    header += jsonString(t.name);
    header += ":{\"dtype\":\"F32\",\"shape\":[" + shape + "],\"data_offsets\":[";
    header += std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // data 8-byte aligned, as the format asks
  std::vector<uint8_t> out(8 + header.size() + offset);
  const uint64_t len = header.size();
  std::memcpy(out.data(), &len, 8);  // little-endian hosts only (x86-64, aarch64)
  std::memcpy(out.data() + 8, header.data(), header.size());
  uint8_t* data = out.data() + 8 + header.size();
  for (const NamedTensor& t : tensors) {
    int64_t n = 1;
    for (const int64_t d : t.shape) n *= d;
    std::memcpy(data, t.data, static_cast<std::size_t>(n) * sizeof(float));
    data += n * sizeof(float);
  }
  return out;
}

std::string CheckpointMarker::text() const {
  std::ostringstream s;
  s << kMarkerHeader << "\nstep " << step << "\nworld " << world << "\n";
  for (const auto& [name, value] : layout) s << "layout " << name << "\t" << value << "\n";
  for (const File& f : files) {
    char crc[16];
    std::snprintf(crc, sizeof crc, "%08" PRIx32, f.crc);
    s << "file " << f.name << " " << f.bytes << " " << crc << "\n";
  }
  return s.str();
}

CheckpointMarker CheckpointMarker::parse(const std::string& text, const std::string& source) {
  CheckpointMarker m;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  auto fail = [&](const std::string& what) {
    LB_THROW(CheckpointError, source + ":" + std::to_string(number) + ": " + what);
  };
  auto integer = [&](const std::string& s, int64_t max) {
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
      fail("'" + s + "' is not a non-negative integer");
    const int64_t v = std::stoll(s);
    if (v > max) fail(s + " is larger than " + std::to_string(max));
    return v;
  };
  bool have_step = false, have_world = false, have_layout = false;
  while (std::getline(in, line)) {
    ++number;
    if (number == 1) {
      if (line == "lowband-checkpoint 1")
        fail(
            "checkpoint format 1 (written by lowband before 2026-11-30, with a prose layout); "
            "this lowband reads format 2: resume it with the lowband that wrote it, or start "
            "a new run.out_dir");
      if (line != kMarkerHeader) fail("expected '" + std::string(kMarkerHeader) + "'");
      continue;
    }
    const std::size_t space = line.find(' ');
    const std::string key = line.substr(0, space);
    const std::string rest = space == std::string::npos ? "" : line.substr(space + 1);
    if (key == "step") {
      m.step = integer(rest, INT64_MAX);
      have_step = true;
    } else if (key == "world") {
      m.world = static_cast<int>(integer(rest, 1 << 24));
      have_world = m.world > 0;
    } else if (key == "layout") {
      const std::size_t tab = rest.find('\t');
      if (tab == std::string::npos || tab == 0 || rest.find('\t', tab + 1) != std::string::npos)
        fail("expected 'layout NAME<TAB>VALUE'");
      m.layout.emplace_back(rest.substr(0, tab), rest.substr(tab + 1));
      have_layout = true;
    } else if (key == "file") {
      std::istringstream f(rest);
      std::string name, bytes, crc, extra;
      if (!(f >> name >> bytes >> crc) || (f >> extra) || crc.size() != 8 ||
          crc.find_first_not_of("0123456789abcdef") != std::string::npos ||
          name.find('/') != std::string::npos || name == "." || name == "..")
        fail("expected 'file NAME BYTES CRC32' with an 8-digit hex CRC and a plain file name");
      m.files.push_back({name, static_cast<uint64_t>(integer(bytes, INT64_MAX)),
                         static_cast<uint32_t>(std::stoul(crc, nullptr, 16))});
    } else if (!line.empty()) {
      fail("unknown line '" + key + "'");
    }
  }
  if (number == 0) fail("empty marker");
  if (!have_step || !have_world || !have_layout)
    fail("marker lacks its step, world or layout line (truncated?)");
  return m;
}

const CheckpointMarker::File* CheckpointMarker::file(const std::string& name) const {
  for (const File& f : files)
    if (f.name == name) return &f;
  return nullptr;
}

Checkpoints::Checkpoints(comm::Communicator& world, fs::path run_dir, Layout layout,
                         int64_t keep_last)
    : world_(world),
      root_(std::move(run_dir) / "checkpoints"),
      layout_(std::move(layout)),
      keep_last_(keep_last) {}

fs::path Checkpoints::write(int64_t step, const runtime::StateDict& state,
                            std::span<const uint8_t> model, const std::string& config_yaml) {
  const fs::path dir = root_ / checkpointName(step);
  const int rank = world_.rank();
  agreeOn(world_, [&] {
    if (rank != 0) return;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) LB_THROW(CheckpointError, "cannot create " + dir.string() + ": " + ec.message());
    // Rewriting a step (a resumed run passing it again): it is incomplete until the new marker.
    fs::remove(dir / kMarker, ec);
    if (ec) LB_THROW(CheckpointError, "cannot replace " + (dir / kMarker).string());
    fsyncDirectory(dir);
  });
  CheckpointMarker marker{step, world_.size(), layout_, {}};
  std::vector<uint8_t> entry(16, 0);
  try {
    agreeOn(world_, [&] {
      const std::vector<uint8_t> bytes = state.serialize();
      writeFileAtomic(dir / rankStateName(rank), bytes);
      const CheckpointMarker::File f = describe(rankStateName(rank), bytes);
      std::memcpy(entry.data(), &f.bytes, 8);
      std::memcpy(entry.data() + 8, &f.crc, 4);
      if (rank != 0) return;
      writeFileAtomic(dir / kModelFile, model);
      marker.files.push_back(describe(kModelFile, model));
      const std::span<const uint8_t> yaml(reinterpret_cast<const uint8_t*>(config_yaml.data()),
                                          config_yaml.size());
      writeFileAtomic(dir / kConfigFile, yaml);
      marker.files.push_back(describe(kConfigFile, yaml));
    });
    std::vector<uint8_t> entries(16 * static_cast<std::size_t>(world_.size()));
    world_.allGatherBytesAsync(entry.data(), entries.data(), 16)->wait();
    agreeOn(world_, [&] {
      if (rank != 0) return;
      for (int r = 0; r < world_.size(); ++r) {
        CheckpointMarker::File f{rankStateName(r), 0, 0};
        std::memcpy(&f.bytes, entries.data() + 16 * r, 8);
        std::memcpy(&f.crc, entries.data() + 16 * r + 8, 4);
        marker.files.push_back(f);
      }
      const std::string text = marker.text();
      writeFileAtomic(dir / kMarker, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
    });
  } catch (...) {
    // The step's files are useless without a marker: free their space (older checkpoints are
    // not touched).
    if (rank == 0) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
    throw;
  }
  if (rank == 0) prune(step);
  return dir;
}

void Checkpoints::prune(int64_t step) const {
  int64_t kept = 0;
  std::error_code ec;
  for (const auto& [s, dir] : stepDirs(root_)) {
    if (s > step) continue;  // from a later point of an earlier attempt: left alone
    const bool complete = fs::exists(dir / kMarker, ec);
    std::string why;
    const std::optional<CheckpointMarker> marker = complete ? readMarker(dir, why) : std::nullopt;
    if (complete && (!marker || marker->step != s)) continue;  // not one of ours: left alone
    if (complete && kept < keep_last_) {
      ++kept;
      continue;
    }
    fs::remove_all(dir, ec);  // beyond keep_last, or an incomplete leftover
  }
}

std::string Checkpoints::checkOwnFiles(const fs::path& dir, const CheckpointMarker& m,
                                       runtime::StateDict* state) const {
  const std::string own = rankStateName(world_.rank());
  std::vector<std::string> names = {own};
  if (world_.rank() == 0) {
    names.push_back(kModelFile);
    names.push_back(kConfigFile);
  }
  for (const std::string& name : names) {
    const CheckpointMarker::File* f = m.file(name);
    if (!f) return name + " is not listed in its marker";
    // Sizes first (a stat), so a file far larger than its marker says is never read.
    if (std::string why = checkFile(dir / name, f->bytes, f->crc); !why.empty()) return why;
  }
  try {
    const std::vector<uint8_t> bytes = readWholeFile(dir / own, m.file(own)->bytes);
    *state = runtime::StateDict::parse(bytes, (dir / own).string());
  } catch (const runtime::Error& e) {
    return e.what();
  }
  return "";
}

std::optional<Checkpoints::Found> Checkpoints::find(const std::string& spec, std::ostream& out,
                                                    const StateCheck& check) {
  const bool automatic = spec == "auto";
  std::vector<fs::path> candidates;
  if (automatic) {
    for (const auto& [s, dir] : stepDirs(root_)) candidates.push_back(dir);
  } else {
    // Say what PATH is when it is not a checkpoint directory.
    const fs::path path(spec);
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (!fs::exists(st))
      LB_THROW(CheckpointError, "cannot resume from " + spec + ": no such directory");
    if (!fs::is_directory(st))
      LB_THROW(CheckpointError, "cannot resume from " + spec +
                                    ": it is a file, not a checkpoint directory (RUN_DIR/"
                                    "checkpoints/step_NNNNNNNN)");
    if (fs::exists(path / "checkpoints", ec) && !fs::exists(path / kMarker, ec))
      LB_THROW(CheckpointError, "cannot resume from " + spec +
                                    ": it is a run directory; name one of its checkpoints (" +
                                    (path / "checkpoints" / "step_NNNNNNNN").string() +
                                    ") or use --resume auto with run.out_dir " + spec);
    candidates.push_back(path);
  }
  for (const fs::path& dir : candidates) {
    std::string why;
    std::optional<CheckpointMarker> marker = readMarker(dir, why);
    if (marker && marker->layout != layout_)
      LB_THROW(CheckpointError,
               dir.string() + " was written by a run of another layout: " +
                   layoutDifference(marker->layout, layout_) +
                   ". Resuming needs the same world size, replicas, model and methods (no "
                   "resharding); start a new run.out_dir or restore the old settings");
    // A directory's name gives its step (the newest is taken, pruning counts by it): a copy
    // renamed to another step is not that step's checkpoint.
    const int64_t named = stepOf(dir.filename().string());
    if (marker && named >= 0 && named != marker->step) {
      why = "its marker is for step " + std::to_string(marker->step) + ", not its name's " +
            std::to_string(named) + " (a renamed or copied checkpoint)";
      marker.reset();
    }
    runtime::StateDict state;
    if (marker) why = checkOwnFiles(dir, *marker, &state);
    if (marker && why.empty()) why = check(state, *marker);
    // Every rank walks the same candidates and learns why any rank's files failed.
    const std::vector<std::string> reasons = gatherText(world_, why.substr(0, 127));
    std::string reason = why;
    for (int r = 0; r < world_.size() && reason.empty(); ++r)
      if (!reasons[r].empty()) reason = "rank " + std::to_string(r) + ": " + reasons[r];
    if (reason.empty()) return Found{dir, *marker, std::move(state)};
    if (!automatic) LB_THROW(CheckpointError, "cannot resume from " + dir.string() + ": " + reason);
    if (world_.rank() == 0) out << "resume: skipping " << dir.string() << ": " << reason << "\n";
  }
  return std::nullopt;
}

RunDirLock::~RunDirLock() {
  if (fd_ < 0) return;
  // The run ended: an empty file tells the next run that nobody died holding it.
  if (::ftruncate(fd_, 0) != 0) {
  }
  ::close(fd_);  // releases the lock
}

std::string RunDirLock::acquire(const fs::path& dir, std::string* stale) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) LB_THROW(CheckpointError, "cannot create " + dir.string() + ": " + ec.message());
  const fs::path path = dir / kLockFile;
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (fd.fd < 0) LB_THROW(CheckpointError, "cannot open " + path.string() + ": " + errnoText());
  auto contents = [&] {
    std::string text(512, '\0');
    const ssize_t n = ::pread(fd.fd, text.data(), text.size(), 0);
    text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
    return text;
  };
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(fd.fd, F_SETLK, &lock) != 0) {
    if (errno != EACCES && errno != EAGAIN)
      LB_THROW(CheckpointError, "cannot lock " + path.string() + ": " + errnoText());
    const std::string holder = contents();
    return holder.empty() ? "a process that has not yet written its name" : holder;
  }
  *stale = contents();
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  const std::string me =
      "pid " + std::to_string(::getpid()) + " on host " + host + " since " + when + "\n";
  if (::ftruncate(fd.fd, 0) != 0 || ::pwrite(fd.fd, me.data(), me.size(), 0) < 0)
    LB_THROW(CheckpointError, "cannot write " + path.string() + ": " + errnoText());
  fd_ = fd.release();
  return "";
}

}  // namespace lowband::launcher
