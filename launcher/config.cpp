// Config schema and loader. The schema is written once, as describe(visitor, struct) functions;
// three visitors walk it: KeyCollector (the keys a section accepts, for unknown-key errors),
// Reader (YAML -> struct with type/range checks and locations) and Writer (struct -> YAML).
#include "launcher/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <type_traits>

#include "schedules/methods.h"

namespace lowband::launcher {

using runtime::DeviceMode;

int64_t ModelConfig::layers() const {
  return kind == ModelKind::Gpt ? n_layer : static_cast<int64_t>(hidden.size()) + 1;
}

// ------------------------------------------------------------------------------------------
// Suggestions

namespace {
std::size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t sub = prev[j - 1] + (std::tolower(a[i - 1]) != std::tolower(b[j - 1]));
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}
}  // namespace

std::string closestMatch(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const std::string& c : candidates) {
    std::size_t d = editDistance(word, c);
    // A prefix ("streaming" for "streaming_diloco") is as good as a near miss.
    if (word.size() >= 3 && c.rfind(word, 0) == 0) d = std::min<std::size_t>(d, 1);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

namespace {

std::string didYouMean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string m = closestMatch(word, candidates);
  return m.empty() ? "" : " (did you mean '" + m + "'?)";
}

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string s;
  for (const std::string& i : items) s += (s.empty() ? "" : sep) + i;
  return s;
}

// ------------------------------------------------------------------------------------------
// Scalar values: parse from a YAML node, format back, and a numeric view for range rules.

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

const char* nodeKind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "nothing";
    default:
      return "a value";
  }
}

const std::string& scalar(const YAML::Node& n, const std::string& expected) {
  if (!n.IsScalar()) throw ValueError("expected " + expected + ", got " + nodeKind(n));
  return n.Scalar();
}

int64_t parseInt(const std::string& s, const std::string& expected) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size())
    throw ValueError("expected " + expected + ", got '" + s + "'");
  return v;
}

template <class T, class = void>
struct Value;

template <>
struct Value<std::string> {
  static std::string parse(const YAML::Node& n) { return scalar(n, "a string"); }
  static std::string format(const std::string& v) { return v; }
  static std::optional<double> number(const std::string&) { return std::nullopt; }
};

template <>
struct Value<int64_t> {
  static int64_t parse(const YAML::Node& n) {
    return parseInt(scalar(n, "an integer"), "an integer");
  }
  static std::string format(int64_t v) { return std::to_string(v); }
  static std::optional<double> number(int64_t v) { return static_cast<double>(v); }
};

template <>
struct Value<double> {
  static double parse(const YAML::Node& n) {
    const std::string& s = scalar(n, "a number");
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(v))
      throw ValueError("expected a number, got '" + s + "'");
    return v;
  }
  static std::string format(double v) { return formatNumber(v); }
  static std::optional<double> number(double v) { return v; }
};

template <>
struct Value<bool> {
  static bool parse(const YAML::Node& n) {
    std::string s = scalar(n, "true or false");
    std::transform(s.begin(), s.end(), s.begin(), ::tolower);
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
    throw ValueError("expected true or false, got '" + n.Scalar() + "'");
  }
  static std::string format(bool v) { return v ? "true" : "false"; }
  static std::optional<double> number(bool) { return std::nullopt; }
};

template <class E>
struct Value<E, std::enable_if_t<std::is_enum_v<E>>> {
  static std::vector<std::string> names() {
    return {std::begin(EnumNames<E>::values), std::end(EnumNames<E>::values)};
  }
  static E parse(const YAML::Node& n) {
    auto all = names();
    const std::string& s = scalar(n, "one of " + join(all));
    for (std::size_t i = 0; i < all.size(); ++i)
      if (s == all[i]) return static_cast<E>(i);
    throw ValueError("expected one of " + join(all) + ", got '" + s + "'" + didYouMean(s, all));
  }
  static std::string format(E v) { return enumName(v); }
  static std::optional<double> number(E) { return std::nullopt; }
};

template <class Q, Q (*Parse)(const std::string&), class Num>
struct Quantity {
  static Q parse(const YAML::Node& n) {
    try {
      return Parse(scalar(n, "a value with a unit"));
    } catch (const UnitError& e) {
      throw ValueError(e.what());
    }
  }
  static std::string format(const Q& v) { return launcher::format(v); }
  static std::optional<double> number(const Q& v) { return Num{}(v); }
};

struct BandwidthNum {
  double operator()(const Bandwidth& b) const { return b.bytes_per_s; }
};
struct ByteSizeNum {
  double operator()(const ByteSize& b) const { return static_cast<double>(b.bytes); }
};
struct DurationNum {
  double operator()(const Duration& d) const { return d.seconds; }
};

template <>
struct Value<Bandwidth> : Quantity<Bandwidth, parseBandwidth, BandwidthNum> {};
template <>
struct Value<ByteSize> : Quantity<ByteSize, parseByteSize, ByteSizeNum> {};
template <>
struct Value<Duration> : Quantity<Duration, parseDuration, DurationNum> {};

// An integer >= 1 or a keyword (`rest`, `auto`) stored as 0.
template <class T, int64_t T::*Field>
struct CountOrKeyword {
  static T parse(const YAML::Node& n, const char* keyword) {
    std::string expected = std::string("a positive integer or '") + keyword + "'";
    const std::string& s = scalar(n, expected);
    if (s == keyword) return T{};
    int64_t v = parseInt(s, expected);
    if (v < 1) throw ValueError("expected " + expected + ", got " + s);
    T t;
    t.*Field = v;
    return t;
  }
  static std::string format(const T& v, const char* keyword) {
    return v.*Field == 0 ? keyword : std::to_string(v.*Field);
  }
  static std::optional<double> number(const T&) { return std::nullopt; }
};

template <>
struct Value<TierSize> : CountOrKeyword<TierSize, &TierSize::ranks> {
  static TierSize parse(const YAML::Node& n) { return CountOrKeyword::parse(n, "rest"); }
  static std::string format(const TierSize& v) { return CountOrKeyword::format(v, "rest"); }
};

template <>
struct Value<FragmentCount> : CountOrKeyword<FragmentCount, &FragmentCount::count> {
  static FragmentCount parse(const YAML::Node& n) { return CountOrKeyword::parse(n, "auto"); }
  static std::string format(const FragmentCount& v) { return CountOrKeyword::format(v, "auto"); }
};

// ------------------------------------------------------------------------------------------
// Rules attached to a key.

struct Rule {
  std::optional<double> min{};
  std::optional<double> max{};
  bool min_open = false;  // min itself is not allowed
  bool max_open = false;
  bool required = false;
  bool active = true;          // false: the key does not apply under the current settings
  const char* when = nullptr;  // when it applies, for the "ignored" warning
};

// A rule's limit as values of type T are written: "1s" for a duration, "1" for a count.
template <class T>
std::string boundText(double b) {
  if (b == 0) return "0";  // the same in every unit
  if constexpr (std::is_same_v<T, Duration>)
    return launcher::format(Duration{b});
  else if constexpr (std::is_same_v<T, ByteSize>)
    return launcher::format(ByteSize{static_cast<uint64_t>(b)});
  else if constexpr (std::is_same_v<T, Bandwidth>)
    return launcher::format(Bandwidth{b});
  else
    return formatNumber(b);
}

// `bound` formats a limit as values of the key are written.
template <class Bound>
std::string rangeViolation(double v, const Rule& r, Bound bound) {
  if (r.min && (v < *r.min || (r.min_open && v == *r.min)))
    return std::string("must be ") + (r.min_open ? "> " : ">= ") + bound(*r.min);
  if (r.max && (v > *r.max || (r.max_open && v == *r.max)))
    return std::string("must be ") + (r.max_open ? "< " : "<= ") + bound(*r.max);
  return "";
}

// ------------------------------------------------------------------------------------------
// Parse context: file name, --set overrides, and where to record locations and warnings.

// `path` is `prefix` or lies under it ("a.b" and "a[0]" under "a").
bool within(const std::string& path, const std::string& prefix) {
  return path == prefix || path.rfind(prefix + ".", 0) == 0 || path.rfind(prefix + "[", 0) == 0;
}

class Context {
 public:
  Context(std::string file, Config& config) : file_(std::move(file)), config_(config) {}

  // `created`: the outermost key the override added to the file ("" if none), so that errors
  // about a section only a --set made (an unknown `foo` of `--set foo.bar=1`) name it too.
  void addOverride(const std::string& path, const std::string& text, const std::string& created) {
    overrides_.push_back({path, text, created});
  }

  std::string locate(const std::string& path, const YAML::Node& node) const {
    // The last override of a key is the one whose value stands.
    for (auto o = overrides_.rbegin(); o != overrides_.rend(); ++o)
      if (within(path, o->path)) return file_ + " (--set " + o->text + ")";
    for (const Override& o : overrides_)
      if (!o.created.empty() && within(path, o.created)) return file_ + " (--set " + o.text + ")";
    if (node.IsDefined()) {
      YAML::Mark m = node.Mark();
      if (!m.is_null())
        return file_ + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
    }
    return file_;
  }

  [[noreturn]] void fail(const std::string& path, const YAML::Node& node,
                         const std::string& what) const {
    throw ConfigError(locate(path, node) + ": " + (path.empty() ? "" : path + ": ") + what);
  }

  void record(const std::string& path, const YAML::Node& key) {
    config_.locations[path] = locate(path, key);
  }

  void warn(const std::string& path, const YAML::Node& node, const std::string& what) {
    config_.warnings.push_back(locate(path, node) + ": " + path + ": " + what);
  }

 private:
  struct Override {
    std::string path, text, created;
  };
  std::string file_;
  Config& config_;
  std::vector<Override> overrides_;
};

std::string childPath(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

// ------------------------------------------------------------------------------------------
// Visitors

class KeyCollector {
 public:
  std::vector<std::string> keys;
  template <class T>
  void value(const char* key, T&, Rule = {}) {
    keys.push_back(key);
  }
  template <class S>
  void section(const char* key, S&, Rule = {}) {
    keys.push_back(key);
  }
  template <class S>
  void sections(const char* key, std::vector<S>&, Rule = {}) {
    keys.push_back(key);
  }
};

template <class S>
void readSection(Context& ctx, const YAML::Node& node, const std::string& path, S& out);

class Reader {
 public:
  Reader(Context& ctx, const YAML::Node& map, std::string path)
      : ctx_(ctx), map_(map), path_(std::move(path)) {}

  template <class T>
  void value(const char* key, T& out, Rule rule = {}) {
    YAML::Node k, v;
    if (!find(key, k, v, rule)) return;
    parseInto(childPath(path_, key), v, out, rule);
  }

  template <class S>
  void section(const char* key, S& out, Rule rule = {}) {
    YAML::Node k, v;
    if (find(key, k, v, rule)) readSection(ctx_, v, childPath(path_, key), out);
  }

  template <class S>
  void sections(const char* key, std::vector<S>& out, Rule rule = {}) {
    YAML::Node k, v;
    if (!find(key, k, v, rule)) return;
    const std::string path = childPath(path_, key);
    if (!v.IsSequence())
      ctx_.fail(path, v, std::string("expected a list of maps, got ") + nodeKind(v));
    out.clear();
    for (std::size_t i = 0; i < v.size(); ++i) {
      S item;
      readSection(ctx_, v[i], path + "[" + std::to_string(i) + "]", item);
      out.push_back(std::move(item));
    }
  }

 private:
  // Finds `key`; handles missing-but-required and present-but-inactive keys. True when the
  // value should be parsed.
  bool find(const char* key, YAML::Node& k, YAML::Node& v, const Rule& rule) {
    const std::string path = childPath(path_, key);
    bool found = false;
    for (auto it = map_.begin(); it != map_.end() && !found; ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == key) {
        k.reset(it->first);
        v.reset(it->second);
        found = true;
      }
    }
    if (!found) {
      if (rule.required && rule.active)
        ctx_.fail(path, map_,
                  std::string("missing required key") +
                      (rule.when ? std::string(" (required when ") + rule.when + ")" : ""));
      return false;
    }
    ctx_.record(path, k);
    if (!rule.active) {
      ctx_.warn(path, k, std::string("ignored: only used when ") + (rule.when ? rule.when : "?"));
      return false;
    }
    return true;
  }

  template <class T>
  T parseScalar(const std::string& path, const YAML::Node& v, const Rule& rule) {
    T out;
    try {
      out = Value<T>::parse(v);
    } catch (const ValueError& e) {
      ctx_.fail(path, v, e.what());
    }
    if (auto num = Value<T>::number(out)) {
      std::string bad = rangeViolation(*num, rule, boundText<T>);
      if (!bad.empty()) ctx_.fail(path, v, Value<T>::format(out) + " " + bad);
    }
    return out;
  }

  template <class T>
  void parseInto(const std::string& path, const YAML::Node& v, T& out, const Rule& rule) {
    out = parseScalar<T>(path, v, rule);
  }

  template <class T>
  void parseInto(const std::string& path, const YAML::Node& v, std::vector<T>& out,
                 const Rule& rule) {
    if (!v.IsSequence()) ctx_.fail(path, v, std::string("expected a list, got ") + nodeKind(v));
    out.clear();
    for (std::size_t i = 0; i < v.size(); ++i)
      out.push_back(parseScalar<T>(path + "[" + std::to_string(i) + "]", v[i], rule));
  }

  template <class T, std::size_t N>
  void parseInto(const std::string& path, const YAML::Node& v, std::array<T, N>& out,
                 const Rule& rule) {
    if (!v.IsSequence() || v.size() != N)
      ctx_.fail(path, v,
                "expected a list of " + std::to_string(N) + " values, got " +
                    (v.IsSequence() ? std::to_string(v.size()) + " values" : nodeKind(v)));
    for (std::size_t i = 0; i < N; ++i)
      out[i] = parseScalar<T>(path + "[" + std::to_string(i) + "]", v[i], rule);
  }

  template <class T>
  void parseInto(const std::string& path, const YAML::Node& v, std::map<std::string, T>& out,
                 const Rule& rule) {
    if (v.IsNull()) return;
    if (!v.IsMap()) ctx_.fail(path, v, std::string("expected a map, got ") + nodeKind(v));
    out.clear();
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!it->first.IsScalar()) ctx_.fail(path, it->first, "keys must be plain names");
      const std::string name = it->first.Scalar();
      const std::string item = childPath(path, name);
      if (out.count(name)) ctx_.fail(item, it->first, "duplicate key");
      ctx_.record(item, it->first);
      out[name] = parseScalar<T>(item, it->second, rule);
    }
  }

  Context& ctx_;
  const YAML::Node& map_;
  std::string path_;
};

class Writer {
 public:
  explicit Writer(YAML::Emitter& e) : e_(e) {}

  template <class T>
  void value(const char* key, T& v, Rule rule = {}) {
    if (!rule.active) return;
    e_ << YAML::Key << key << YAML::Value;
    emit(v);
  }

  template <class S>
  void section(const char* key, S& s, Rule rule = {}) {
    if (!rule.active) return;
    e_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    describe(*this, s);
    e_ << YAML::EndMap;
  }

  template <class S>
  void sections(const char* key, std::vector<S>& items, Rule rule = {}) {
    if (!rule.active) return;
    e_ << YAML::Key << key << YAML::Value << YAML::BeginSeq;
    for (S& s : items) {
      e_ << YAML::Flow << YAML::BeginMap;
      describe(*this, s);
      e_ << YAML::EndMap;
    }
    e_ << YAML::EndSeq;
  }

 private:
  template <class T>
  void emit(const T& v) {
    e_ << Value<T>::format(v);
  }
  template <class T>
  void emit(const std::vector<T>& v) {
    e_ << YAML::Flow << YAML::BeginSeq;
    for (const T& x : v) emit(x);
    e_ << YAML::EndSeq;
  }
  template <class T, std::size_t N>
  void emit(const std::array<T, N>& v) {
    e_ << YAML::Flow << YAML::BeginSeq;
    for (const T& x : v) emit(x);
    e_ << YAML::EndSeq;
  }
  template <class T>
  void emit(const std::map<std::string, T>& v) {
    e_ << YAML::Flow << YAML::BeginMap;
    for (const auto& [k, x] : v) {
      e_ << YAML::Key << k << YAML::Value;
      emit(x);
    }
    e_ << YAML::EndMap;
  }

  YAML::Emitter& e_;
};

// ------------------------------------------------------------------------------------------
// The schema. Keys are read in the order written here, so a key that decides which others
// apply (model.kind, sync.outer.method) comes first.

template <class V>
void describe(V& v, RunConfig& c) {
  v.value("name", c.name);
  v.value("seed", c.seed, {.min = 0});
  v.value("steps", c.steps, {.min = 1});
  v.value("out_dir", c.out_dir);
  v.value("log_every", c.log_every, {.min = 1});
  v.value("eval_every", c.eval_every, {.min = 0});
  v.value("eval_batches", c.eval_batches, {.min = 1});
  v.value("checkpoint_every", c.checkpoint_every, {.min = 0});
  v.value("keep_last", c.keep_last, {.min = 1});
  v.value("max_bad_steps", c.max_bad_steps, {.min = 1});
}

template <class V>
void describe(V& v, ModelConfig& c) {
  v.value("kind", c.kind, {.required = true});
  v.value("precision", c.precision);
  const bool gpt = c.kind == ModelKind::Gpt;
  const Rule g{.min = 1, .active = gpt, .when = "model.kind is gpt"};
  v.value("n_layer", c.n_layer, g);
  v.value("d_model", c.d_model, g);
  v.value("n_head", c.n_head, g);
  v.value("seq_len", c.seq_len, g);
  // Token shards store uint16 tokens.
  v.value("vocab", c.vocab, {.min = 2, .max = 65536, .active = gpt, .when = "model.kind is gpt"});
  const Rule m{.min = 1, .active = !gpt, .when = "model.kind is mlp"};
  v.value("hidden", c.hidden, m);
  v.value("activation", c.activation, m);
  v.value("input", c.input, m);
  v.value("classes", c.classes, {.min = 2, .active = !gpt, .when = "model.kind is mlp"});
}

template <class V>
void describe(V& v, DataConfig& c, const ModelConfig& model) {
  v.value("train", c.train, {.required = true});
  v.value("val", c.val);
  const bool mlp = model.kind == ModelKind::Mlp;
  v.value("train_labels", c.train_labels,
          {.required = mlp, .active = mlp, .when = "model.kind is mlp"});
  v.value("val_labels", c.val_labels, {.active = mlp, .when = "model.kind is mlp"});
  v.value("batch_size", c.batch_size, {.min = 1});
}

template <class V>
void describe(V& v, OptimizerConfig& c) {
  v.value("kind", c.kind);
  const bool adamw = c.kind == OptimizerKind::AdamW;
  v.value("lr", c.lr, {.min = 0, .min_open = true});
  v.value(
      "betas", c.betas,
      {.min = 0, .max = 1, .max_open = true, .active = adamw, .when = "optimizer.kind is adamw"});
  v.value("eps", c.eps,
          {.min = 0, .min_open = true, .active = adamw, .when = "optimizer.kind is adamw"});
  v.value("weight_decay", c.weight_decay, {.min = 0});
  v.value(
      "momentum", c.momentum,
      {.min = 0, .max = 1, .max_open = true, .active = !adamw, .when = "optimizer.kind is sgd"});
  v.value("nesterov", c.nesterov, {.active = !adamw, .when = "optimizer.kind is sgd"});
  v.value("warmup", c.warmup, {.min = 0});
  v.value("schedule", c.schedule);
  v.value("min_lr_ratio", c.min_lr_ratio, {.min = 0, .max = 1});
  v.value("grad_clip", c.grad_clip, {.min = 0});
}

template <class V>
void describe(V& v, ClassLink& c) {
  v.value("nic", c.nic, {.required = true});
  v.value("bandwidth", c.bandwidth, {.min = 0, .min_open = true, .required = true});
  v.value("latency", c.latency, {.min = 0, .required = true});
}

template <class V>
void describe(V& v, TierConfig& c) {
  v.value("name", c.name, {.required = true});
  v.value("size", c.size);
  v.value("bandwidth", c.bandwidth, {.min = 0, .min_open = true, .required = true});
  v.value("latency", c.latency, {.min = 0, .required = true});
  v.value("nic", c.nic);
  v.sections("classes", c.classes);
}

template <class V>
void describe(V& v, HostRule& c) {
  v.value("match", c.match, {.required = true});
  v.value("nic", c.nic, {.required = true});
}

template <class V>
void describe(V& v, TopologyConfig& c) {
  v.value("emulate", c.emulate);
  v.value("ranks_per_host", c.ranks_per_host, {.min = 0});
  v.sections("hosts", c.hosts);
  v.sections("tiers", c.tiers);
}

template <class V>
void describe(V& v, PlanConfig& c) {
  v.value("target_utilization", c.target_utilization, {.min = 0, .max = 1, .min_open = true});
}

template <class V>
void describe(V& v, CommConfig& c) {
  v.value("backend", c.backend);
  // Below a second, ordinary jitter (a slow rank, a page fault storm) trips the watchdog.
  v.value("timeout", c.timeout, {.min = 1});
  v.value("bucket", c.bucket, {.min = 1});
}

template <class V>
void describe(V& v, ShardPlacement& c) {
  v.value("optimizer", c.optimizer);
  v.value("grads", c.grads);
  v.value("secondary_params", c.secondary_params);
}

template <class V>
void describe(V& v, InnerSyncConfig& c) {
  v.value("method", c.method);
  v.section("shard", c.shard,
            {.active = schedules::innerMethod(c.method).shards,
             .when = "sync.inner.method is zero1 or zero2"});
  v.value("codec", c.codec);
  v.value("error_feedback", c.error_feedback,
          {.active = !c.codec.empty(), .when = "sync.inner.codec names a tier"});
}

template <class V>
void describe(V& v, OuterOptimizerConfig& c) {
  v.value("kind", c.kind);
  v.value("lr", c.lr, {.min = 0, .min_open = true});
  v.value("momentum", c.momentum, {.min = 0, .max = 1, .max_open = true});
}

template <class V>
void describe(V& v, ClipConfig& c) {
  v.value("mode", c.mode);
  v.value("threshold", c.threshold, {.min = 0, .min_open = true});
}

// Which keys apply is the method's descriptor's (schedules/methods.h).
template <class V>
void describe(V& v, OuterSyncConfig& c) {
  v.value("method", c.method);
  const schedules::OuterMethodSpec& m = schedules::outerMethod(c.method);
  // A key's rule: active for the methods that read it, and the warning names them.
  auto by = [&](uint32_t key, Rule rule = {}) {
    rule.active = m.reads(key);
    rule.when = schedules::methodsReading(key);
    return rule;
  };
  const bool syncs = m.reads(schedules::kKeyCodec);
  const bool co2 = m.reads(schedules::kKeyPenalty);
  v.value("tier", c.tier, by(schedules::kKeyTier));
  v.value("H", c.H, by(schedules::kKeyH, {.min = 1}));
  v.value("fragments", c.fragments, by(schedules::kKeyFragments));
  v.value("pattern", c.pattern, by(schedules::kKeyFragments));
  v.value("embeddings", c.embeddings, by(schedules::kKeyFragments));
  v.value("overlap", c.overlap, by(schedules::kKeyOverlap, {.min = 0}));
  v.value("overlap_per_replica", c.overlap_per_replica, by(schedules::kKeyOverlap, {.min = 0}));
  v.value("alpha", c.alpha, by(schedules::kKeyAlpha, {.min = 0, .max = 1}));
  v.value("codec", c.codec, by(schedules::kKeyCodec));
  const bool blockwise = c.codec == CodecKind::Int8 || c.codec == CodecKind::Int4 ||
                         c.codec == CodecKind::Fp4 || c.codec == CodecKind::Fp8;
  v.value("codec_block", c.codec_block,
          {.min = 1,
           .max = 1 << 20,
           .active = syncs && blockwise,
           .when = "sync.outer.codec is int8, int4, fp4 or fp8"});
  v.value("topk_ratio", c.topk_ratio,
          {.min = 0,
           .max = 1,
           .min_open = true,
           .active = syncs && c.codec == CodecKind::Topk,
           .when = "sync.outer.codec is topk"});
  v.value("error_feedback", c.error_feedback, by(schedules::kKeyCodec));
  v.section("optimizer", c.optimizer, by(schedules::kKeyOuterOptimizer));
  v.value("penalty", c.penalty, by(schedules::kKeyPenalty));
  v.value("penalty_divisor", c.penalty_divisor,
          {.min = 0,
           .min_open = true,
           .active = co2 && c.penalty == GapPenalty::Constant,
           .when = "sync.outer.penalty is constant"});
  v.value("penalty_eps", c.penalty_eps,
          {.min = 0,
           .min_open = true,
           .active = co2 && c.penalty == GapPenalty::Gap,
           .when = "sync.outer.penalty is gap"});
  v.section("clip", c.clip, by(schedules::kKeyClip));
}

template <class V>
void describe(V& v, SyncConfig& c) {
  v.section("inner", c.inner);
  v.section("outer", c.outer);
}

// DataConfig's rules depend on the model section; a small adapter carries it.
struct DataSection {
  DataConfig& data;
  const ModelConfig& model;
};
template <class V>
void describe(V& v, DataSection& s) {
  describe(v, s.data, s.model);
}

template <class V>
void describe(V& v, Config& c) {
  v.section("run", c.run);
  v.value("device", c.device);
  v.section("model", c.model, {.required = true});
  DataSection data{c.data, c.model};
  v.section("data", data, {.required = true});
  v.section("optimizer", c.optimizer);
  v.section("topology", c.topology);
  v.section("comm", c.comm);
  v.section("sync", c.sync);
  v.section("plan", c.plan);
}

template <class S>
void readSection(Context& ctx, const YAML::Node& node, const std::string& path, S& out) {
  if (node.IsNull()) return;  // `run:` with nothing under it keeps the defaults
  if (!node.IsMap())
    ctx.fail(path, node, std::string("expected a map of keys, got ") + nodeKind(node));
  KeyCollector collector;
  S scratch = out;
  describe(collector, scratch);
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) ctx.fail(path, it->first, "keys must be plain names");
    const std::string& key = it->first.Scalar();
    const std::string kp = childPath(path, key);
    if (!seen.insert(key).second) ctx.fail(kp, it->first, "duplicate key");
    if (std::find(collector.keys.begin(), collector.keys.end(), key) == collector.keys.end())
      ctx.fail(kp, it->first, "unknown key" + didYouMean(key, collector.keys));
  }
  Reader reader(ctx, node, path);
  describe(reader, out);
}

// ------------------------------------------------------------------------------------------
// --set key.path=value

// "topology.tiers[1].bandwidth" and "topology.tiers.1.bandwidth" name the same key: names
// separated by dots, each optionally followed by [N] indexes. Empty if the path is malformed
// (an empty name, as in "run..steps", would otherwise be skipped and set another key).
std::vector<std::string> splitKeyPath(const std::string& key) {
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (true) {
    const std::size_t begin = i;
    while (i < key.size() && key[i] != '.' && key[i] != '[' && key[i] != ']') ++i;
    if (i == begin) return {};
    parts.push_back(key.substr(begin, i - begin));
    while (i < key.size() && key[i] == '[') {
      const std::size_t close = key.find(']', i);
      if (close == std::string::npos || close == i + 1) return {};
      const std::string index = key.substr(i + 1, close - i - 1);
      if (index.find_first_not_of("0123456789") != std::string::npos) return {};
      parts.push_back(index);
      i = close + 1;
    }
    if (i == key.size()) return parts;
    if (key[i] != '.') return {};
    ++i;
  }
}

namespace {
// Whether a YAML document holds anything but a null, and where that starts.
struct ContentMark : YAML::EventHandler {
  bool content = false;
  YAML::Mark mark;
  void note(const YAML::Mark& m) {
    if (!content) mark = m;
    content = true;
  }
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { note(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    note(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    note(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    note(m);
  }
  void OnMapEnd() override {}
};

// The first YAML document of `text`; *second gets where a second document with content starts
// (false when there is none, or only an empty one after a trailing `---`). YAML::Load alone
// would drop later documents without a word; the parser is asked for two documents at most
// (yaml-cpp's LoadAll loops forever on some malformed input). Throws YAML::Exception.
YAML::Node loadOneDocument(const std::string& text, std::optional<YAML::Mark>* second) {
  YAML::Node root = YAML::Load(text);
  std::istringstream in(text);
  YAML::Parser parser(in);
  ContentMark first, next;
  second->reset();
  if (parser.HandleNextDocument(first) && parser.HandleNextDocument(next) && next.content)
    *second = next.mark;
  return root;
}
}  // namespace

void applyOverride(YAML::Node& root, const std::string& text, Context& ctx,
                   const std::string& file) {
  auto bad = [&](const std::string& what) -> ConfigError {
    return ConfigError(file + " (--set " + text + "): " + what);
  };
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw bad("expected key.path=value");
  const std::string key = text.substr(0, eq);
  YAML::Node value;
  try {
    std::optional<YAML::Mark> second;
    value = loadOneDocument(text.substr(eq + 1), &second);
    if (second) throw bad("the value is more than one YAML document");
  } catch (const YAML::Exception& e) {
    throw bad("the value is not valid YAML: " + e.msg);
  }
  const std::vector<std::string> parts = splitKeyPath(key);
  if (parts.empty())
    throw bad(
        "expected key.path=value with no empty name between dots, e.g. run.steps=5 or "
        "topology.tiers.1.bandwidth=1Gbit; got key '" +
        key + "'");
  YAML::Node cur;
  cur.reset(root);
  std::string path, created;
  auto isIndex = [](const std::string& p) {
    return p.find_first_not_of("0123456789") == std::string::npos;
  };
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    YAML::Node next;
    if (cur.IsSequence()) {
      std::size_t index = 0;
      auto [end, ec] = std::from_chars(parts[i].data(), parts[i].data() + parts[i].size(), index);
      if (ec != std::errc() || end != parts[i].data() + parts[i].size())
        throw bad(path + " is a list: index it with a number, e.g. " + path + ".0");
      if (index >= cur.size())
        throw bad(path + " has " + std::to_string(cur.size()) + " items; index " + parts[i] +
                  " is out of range");
      path += "[" + parts[i] + "]";
      if (last) {
        cur[index] = value;
      } else {
        next.reset(cur[index]);
      }
    } else if (cur.IsMap() || cur.IsNull()) {
      path = childPath(path, parts[i]);
      const bool missing = !cur[parts[i]].IsDefined() || cur[parts[i]].IsNull();
      if (missing && created.empty()) created = path;
      if (last) {
        cur[parts[i]] = value;
      } else {
        // A number after a key the config lacks is meant as a list index: there is no list.
        if (missing && isIndex(parts[i + 1]))
          throw bad(path + " is not in the config, so it has no item " + parts[i + 1] +
                    " to set; give the whole list (--set " + path + "=[...])");
        if (missing) cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
        next.reset(cur[parts[i]]);
      }
    } else {
      throw bad(path + " is a single value, it has no key '" + parts[i] + "'");
    }
    if (!last) cur.reset(next);
  }
  ctx.addOverride(path, text, created);
}

// ------------------------------------------------------------------------------------------
// Defaults that depend on other keys, and checks across keys.

class Checker {
 public:
  explicit Checker(const Config& c) : c_(c) {}

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw ConfigError(keyMessage(c_, path, what));
  }
  std::string warning(const std::string& path, const std::string& what) const {
    return keyMessage(c_, path, what);
  }

 private:
  const Config& c_;
};

std::vector<std::string> tierNames(const Config& c) {
  std::vector<std::string> names;
  for (const TierConfig& t : c.topology.tiers) names.push_back(t.name);
  return names;
}

void resolveAndCheck(Config& c) {
  Checker check(c);
  auto set = [&](const char* path) { return c.locations.count(path) > 0; };

  // The name becomes a directory under runs/ (and labels the run): a path such as ../../x
  // would put the run anywhere. An explicit out_dir may be any path.
  const std::string& name = c.run.name;
  if (name.empty() || name[0] == '.' ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos)
    check.fail("run.name",
               "expected a plain name (letters, digits, '.', '_', '-', not starting "
               "with '.'), got '" +
                   name + "'; put the run elsewhere with run.out_dir");
  if (c.run.out_dir.empty()) c.run.out_dir = "runs/" + c.run.name;
  if (c.topology.tiers.empty())
    c.topology.tiers.push_back(
        {"world", TierSize{}, Bandwidth{10e9 / 8}, parseDuration("10us"), NicClass::Ethernet, {}});
  OuterSyncConfig& outer = c.sync.outer;
  // Defaults that differ by method are the methods' (schedules/methods.h).
  schedules::outerMethod(outer.method).defaults(outer, [&](const std::string& key) {
    return set(("sync.outer." + key).c_str());
  });
  schedules::innerMethod(c.sync.inner.method).defaults(c.sync.inner, [&](const std::string& key) {
    return set(("sync.inner." + key).c_str());
  });
  if (outer.tier.empty()) outer.tier = c.topology.tiers.back().name;

  // model
  if (c.model.kind == ModelKind::Gpt && c.model.d_model % c.model.n_head != 0)
    check.fail("model.n_head", "d_model " + std::to_string(c.model.d_model) +
                                   " is not divisible by n_head " + std::to_string(c.model.n_head));
  if (c.model.kind == ModelKind::Mlp && c.model.precision == runtime::Precision::Bf16)
    check.fail("model.precision",
               "bf16 is implemented for gpt models; an mlp trains in fp32 or tf32");
  if (c.model.kind == ModelKind::Mlp && !c.data.val.empty() && c.data.val_labels.empty())
    check.fail("data.val_labels",
               "missing: model.kind mlp with data.val needs the matching "
               "IDX label file");

  // topology
  const auto names = tierNames(c);
  for (std::size_t i = 0; i < c.topology.tiers.size(); ++i) {
    const TierConfig& t = c.topology.tiers[i];
    const std::string p = "topology.tiers[" + std::to_string(i) + "]";
    if (t.name.empty()) check.fail(p + ".name", "must not be empty");
    if (tierIndex(c, t.name) != static_cast<int>(i))
      check.fail(p + ".name", "tier name '" + t.name + "' is used twice");
    if (t.size.isRest() && i + 1 != c.topology.tiers.size())
      check.fail(p + ".size", "only the last (outermost) tier may be `rest`; give tier '" + t.name +
                                  "' a rank count");
    for (std::size_t j = 0; j < t.classes.size(); ++j) {
      const std::string q = p + ".classes[" + std::to_string(j) + "].nic";
      if (c.topology.hosts.empty())
        check.fail(q,
                   "per-class links need topology.hosts rules that give each host its NIC "
                   "class");
      for (std::size_t k = 0; k < j; ++k)
        if (t.classes[k].nic == t.classes[j].nic)
          check.fail(q, std::string("class '") + enumName(t.classes[j].nic) + "' is listed twice");
    }
  }
  auto requireTier = [&](const std::string& path, const std::string& name) {
    if (tierIndex(c, name) < 0)
      check.fail(path, "unknown tier '" + name + "' (tiers: " + join(names) + ")" +
                           didYouMean(name, names));
  };

  // sync
  const bool outer_syncs = outer.method != OuterMethod::None;
  if (outer_syncs) requireTier("sync.outer.tier", outer.tier);
  const int outer_index = outer_syncs ? tierIndex(c, outer.tier) : static_cast<int>(names.size());
  // Inside a replica the inner method exchanges every step: never over a WAN link (Holmes:
  // keep each parallel group on one kind of fast NIC; slow links are for the outer method).
  if (outer_syncs && outer_index > 0)
    for (int i = 0; i < outer_index && i < static_cast<int>(c.topology.tiers.size()); ++i)
      if (c.topology.tiers[i].nic == NicClass::Wan)
        check.fail("sync.outer.tier",
                   "replicas span tier '" + names[i] + "' (nic wan), but inner " +
                       enumName(c.sync.inner.method) +
                       " exchanges every step inside a replica; set sync.outer.tier: " + names[i] +
                       " (or a tier below it) so the WAN carries only the outer "
                       "method");
  std::vector<schedules::MethodProblem> problems;
  if (schedules::innerMethod(c.sync.inner.method).shards) {
    ShardPlacement& s = c.sync.inner.shard;
    for (auto [key, value] : {std::pair<const char*, const std::string*>{"optimizer", &s.optimizer},
                              {"grads", &s.grads}}) {
      const std::string path = std::string("sync.inner.shard.") + key;
      if (*value == "replica") continue;
      requireTier(path, *value);
      if (tierIndex(c, *value) >= outer_index)
        check.fail(path, "tier '" + *value + "' is at or outside the outer tier '" + outer.tier +
                             "'; inner sharding stays inside a replica (use a tier below it or "
                             "`replica`)");
    }
  }
  // `replica` = the gradient group's outermost tier below the outer one.
  schedules::innerMethod(c.sync.inner.method)
      .check(
          c.sync.inner,
          [&](const std::string& v) { return v == "replica" ? outer_index : tierIndex(c, v); },
          problems);
  // Gradient codecs on tiers the gradients cross: inside a replica, or anywhere under outer
  // ddp (the gradients are averaged over the world).
  for (const auto& [tier, codec] : c.sync.inner.codec) {
    requireTier("sync.inner.codec." + tier, tier);
    if (outer.method != OuterMethod::Ddp && tierIndex(c, tier) >= outer_index)
      check.fail("sync.inner.codec." + tier,
                 "gradients are averaged inside replicas, below tier '" + outer.tier + "', so '" +
                     tier + "' carries only the outer method; encode that with sync.outer.codec");
  }

  schedules::outerMethod(outer.method).check(outer, c.model.layers(), problems);
  for (const schedules::MethodProblem& p : problems) check.fail(p.key, p.what);

  // comm / device
  if (c.comm.backend == CommBackend::Nccl && c.device == DeviceMode::Cpu)
    check.fail("comm.backend", "nccl moves device memory; with device: cpu use mpi or auto");

  // Legal but probably not meant: say so, do not refuse.
  if (c.run.eval_every > 0 && c.data.val.empty())
    c.warnings.push_back(
        check.warning("run.eval_every", "no data.val is given, so no evaluation will run"));
  if (c.optimizer.warmup >= c.run.steps)
    c.warnings.push_back(check.warning(
        "optimizer.warmup", "warmup " + std::to_string(c.optimizer.warmup) + " >= run.steps " +
                                std::to_string(c.run.steps) + ": the lr never reaches its peak"));
}

// Far more than any config needs; reading stops there.
constexpr std::size_t kMaxConfigBytes = std::size_t{1} << 20;

// A config is a regular file of at most kMaxConfigBytes. Opened non-blocking so that a FIFO
// cannot hang the open, and checked on the open descriptor before any byte is read (a device
// such as /dev/zero would never end).
std::string readFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw ConfigError(path + ": cannot open: " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw ConfigError(path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) {
    const char* kind = S_ISDIR(st.st_mode)                          ? "a directory"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                       : S_ISFIFO(st.st_mode)                       ? "a FIFO"
                       : S_ISSOCK(st.st_mode)                       ? "a socket"
                                                                    : "a special file";
    throw ConfigError(path + ": not a regular file (" + kind + "); a config is a YAML file");
  }
  const std::string too_big = path + ": larger than the 1 MiB a config may have";
  if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) throw ConfigError(too_big);
  // st_size can be 0 (procfs) or stale: read to the limit, not to the size.
  std::string text;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ConfigError(path + ": read error: " + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxConfigBytes) throw ConfigError(too_big);
  }
  return text;
}

}  // namespace

int tierIndex(const Config& c, const std::string& name) {
  for (std::size_t i = 0; i < c.topology.tiers.size(); ++i)
    if (c.topology.tiers[i].name == name) return static_cast<int>(i);
  return -1;
}

// ------------------------------------------------------------------------------------------

Config parseConfig(const std::string& yaml, const std::string& source, const LoadOptions& options) {
  Config config;
  config.source = source;
  Context ctx(source, config);
  YAML::Node root;
  // yaml-cpp stops reading at a NUL byte and would report the rest as missing.
  if (const std::size_t nul = yaml.find('\0'); nul != std::string::npos) {
    const std::size_t line_start = yaml.rfind('\n', nul);
    const auto line =
        std::count(yaml.begin(), yaml.begin() + static_cast<std::ptrdiff_t>(nul), '\n');
    throw ConfigError(
        source + ":" + std::to_string(line + 1) + ":" +
        std::to_string(nul - (line_start == std::string::npos ? 0 : line_start + 1) + 1) +
        ": a NUL byte; a config is YAML text");
  }
  std::optional<YAML::Mark> second;
  try {
    root = loadOneDocument(yaml, &second);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                      std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  }
  if (second)
    throw ConfigError(source + ":" + std::to_string(second->line + 1) + ":" +
                      std::to_string(second->column + 1) +
                      ": a second YAML document starts here, but a config is one document "
                      "(remove the '---' before it, or put it in a file of its own)");
  if (root.IsNull() && options.overrides.empty())
    throw ConfigError(source + ": the config is empty (expected a map with run, model, data, ...)");
  for (const std::string& o : options.overrides) applyOverride(root, o, ctx, source);
  if (!root.IsMap())
    throw ConfigError(source + ":1:1: expected a map of sections (run, model, data, ...), got " +
                      nodeKind(root));
  readSection(ctx, root, "", config);
  resolveAndCheck(config);
  if (options.world) checkWorld(config, *options.world);
  return config;
}

Config loadConfig(const std::string& path, const LoadOptions& options) {
  return parseConfig(readFile(path), path, options);
}

std::string keyMessage(const Config& c, std::string path, const std::string& what) {
  const std::string key = path;
  std::string where = c.source;
  while (true) {
    auto it = c.locations.find(path);
    if (it != c.locations.end()) {
      where = it->second;
      break;
    }
    auto cut = path.find_last_of(".[");
    if (cut == std::string::npos) break;
    path.resize(cut);
  }
  return where + ": " + key + ": " + what;
}

void checkWorld(const Config& c, int64_t world) {
  Checker check(c);
  if (world < 1) throw ConfigError("world size must be >= 1, got " + std::to_string(world));
  const auto& tiers = c.topology.tiers;
  int64_t fixed = 1;
  std::string product;
  for (const TierConfig& t : tiers) {
    if (t.size.isRest()) continue;
    fixed *= t.size.ranks;
    product += (product.empty() ? "" : " x ") + t.name + "=" + std::to_string(t.size.ranks);
  }
  const std::string last = "topology.tiers[" + std::to_string(tiers.size() - 1) + "].size";
  if (tiers.back().size.isRest()) {
    if (world % fixed != 0)
      check.fail(last, "tier sizes " + product + " = " + std::to_string(fixed) +
                           " do not divide the world of " + std::to_string(world) + " ranks");
  } else if (fixed != world) {
    check.fail(last, "tier sizes " + product + " = " + std::to_string(fixed) +
                         " but the world has " + std::to_string(world) +
                         " ranks; make the outermost tier `size: rest`");
  }
  if (c.topology.ranks_per_host > 0 && world % c.topology.ranks_per_host != 0)
    check.fail("topology.ranks_per_host",
               "ranks_per_host " + std::to_string(c.topology.ranks_per_host) +
                   " does not divide the world of " + std::to_string(world) + " ranks");
  const auto& per_replica = c.sync.outer.overlap_per_replica;
  if (c.sync.outer.method == OuterMethod::StreamingDiloco && !per_replica.empty()) {
    int64_t replica_ranks = 1;
    for (int i = 0; i < tierIndex(c, c.sync.outer.tier); ++i)
      replica_ranks *= tiers[i].size.isRest() ? world / fixed : tiers[i].size.ranks;
    const int64_t replicas = world / replica_ranks;
    if (static_cast<int64_t>(per_replica.size()) != replicas)
      check.fail("sync.outer.overlap_per_replica",
                 "has " + std::to_string(per_replica.size()) + " entries but " +
                     std::to_string(world) + " ranks form " + std::to_string(replicas) +
                     " replicas across tier '" + c.sync.outer.tier + "'");
  }
}

std::string toYaml(const Config& config) {
  Config copy = config;
  YAML::Emitter e;
  e << YAML::BeginMap;
  Writer writer(e);
  describe(writer, copy);
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

namespace {
void flatten(const YAML::Node& node, const std::string& path,
             std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node)
      flatten(kv.second, (path.empty() ? "" : path + ".") + kv.first.as<std::string>(), out);
  } else if (node.IsSequence()) {
    for (std::size_t i = 0; i < node.size(); ++i)
      flatten(node[i], path + "[" + std::to_string(i) + "]", out);
    if (node.size() == 0) out[path] = "[]";
  } else {
    out[path] = node.IsScalar() ? node.Scalar() : "";
  }
}
}  // namespace

std::map<std::string, std::string> flatKeys(const Config& config) {
  std::map<std::string, std::string> out;
  flatten(YAML::Load(toYaml(config)), "", out);
  return out;
}

std::string summary(const Config& c) {
  std::string s;
  if (c.model.kind == ModelKind::Gpt) {
    s = "gpt " + std::to_string(c.model.n_layer) + "x" + std::to_string(c.model.d_model) +
        " (vocab " + std::to_string(c.model.vocab) + ", seq " + std::to_string(c.model.seq_len) +
        ")";
  } else {
    s = "mlp " + std::to_string(c.model.input);
    for (int64_t h : c.model.hidden) s += "-" + std::to_string(h);
    s += "-" + std::to_string(c.model.classes);
  }
  s += ", " + std::to_string(c.run.steps) + " steps, inner " + enumName(c.sync.inner.method) +
       ", outer " + enumName(c.sync.outer.method);
  const OuterSyncConfig& o = c.sync.outer;
  if (o.method != OuterMethod::None) s += " over '" + o.tier + "'";
  switch (o.method) {
    case OuterMethod::StreamingDiloco:
      s += " (H " + std::to_string(o.H) + ", " + std::to_string(o.resolvedFragments(c.model)) +
           " fragments, overlap " + std::to_string(o.overlap) + ", " + enumName(o.codec) + ")";
      break;
    case OuterMethod::LocalSgd:
    case OuterMethod::Diloco:
    case OuterMethod::Co2:
      s += " (H " + std::to_string(o.H) + ", " + enumName(o.codec) + ")";
      break;
    default:
      break;
  }
  return s;
}

}  // namespace lowband::launcher
