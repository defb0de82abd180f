#include "launcher/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "nn/data.h"
#include "nn/gpt.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"
#include "runtime/kernels.h"

namespace lowband::launcher {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A JSON number, or null for NaN/Inf (which JSON cannot carry).
std::string json(double v, const char* format) {
  if (!std::isfinite(v)) return "null";
  char buf[48];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string duration(double s) {
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s / 3600),
                  static_cast<int>(s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  return buf;
}

// The data of one run: training batches, and evaluation on the validation split.
class RunData {
 public:
  virtual ~RunData() = default;
  virtual nn::Batch next() = 0;
  virtual int64_t positionsPerBatch() const = 0;  // predicted tokens / classified images
  struct Eval {
    double loss = 0;
    double accuracy = -1;
  };
  virtual bool hasValidation() const = 0;
  virtual Eval evaluate(nn::Model& model, const runtime::Stream& s, int64_t max_batches) = 0;
  virtual std::string describe() const = 0;
};

class TokenData : public RunData {
 public:
  TokenData(const Config& c)
      : batch_(c.data.batch_size),
        seq_(c.model.seq_len),
        train_(nn::expandGlob(c.data.train), c.model.vocab, batch_, seq_, c.run.seed, 0, 1),
        inputs_(batch_ * seq_),
        targets_(batch_ * seq_) {
    if (!c.data.val.empty())
      val_ = std::make_unique<nn::TokenLoader>(nn::expandGlob(c.data.val), c.model.vocab, batch_,
                                               seq_, c.run.seed, 0, 1, nn::Order::Sequential);
  }
  nn::Batch next() override {
    train_.next(inputs_.data(), targets_.data());
    return {inputs_.data(), nullptr, targets_.data(), batch_, seq_};
  }
  int64_t positionsPerBatch() const override { return batch_ * seq_; }
  bool hasValidation() const override { return val_ != nullptr; }
  Eval evaluate(nn::Model& model, const runtime::Stream& s, int64_t max_batches) override {
    val_->restore({});  // the same leading batches every time
    const int64_t n = std::min(max_batches, val_->batchesPerEpoch());
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      val_->next(inputs_.data(), targets_.data());
      total += model.forward(s, {inputs_.data(), nullptr, targets_.data(), batch_, seq_});
    }
    return {total / static_cast<double>(n), -1};
  }
  std::string describe() const override {
    std::string s = std::to_string(train_.tokens()) + " train tokens (" +
                    std::to_string(train_.windows()) + " windows of " + std::to_string(seq_ + 1) +
                    ")";
    if (val_) s += ", " + std::to_string(val_->tokens()) + " val tokens";
    return s + "; batch " + std::to_string(batch_) + " x " + std::to_string(seq_) + " = " +
           std::to_string(batch_ * seq_) + " tokens/step";
  }

 private:
  int64_t batch_, seq_;
  nn::TokenLoader train_;
  std::unique_ptr<nn::TokenLoader> val_;
  std::vector<int32_t> inputs_, targets_;
};

class ImageData : public RunData {
 public:
  ImageData(const Config& c)
      : batch_(c.data.batch_size),
        train_(c.data.train, c.data.train_labels, batch_, c.run.seed, 0, 1),
        inputs_(batch_ * train_.pixelsPerImage()),
        labels_(batch_) {
    check(train_, c, "data.train");
    if (!c.data.val.empty()) {
      val_ = std::make_unique<nn::ImageLoader>(c.data.val, c.data.val_labels, batch_, c.run.seed, 0,
                                               1, nn::Order::Sequential);
      check(*val_, c, "data.val");
    }
  }
  nn::Batch next() override {
    train_.next(inputs_.data(), labels_.data());
    return {nullptr, inputs_.data(), labels_.data(), batch_, 1};
  }
  int64_t positionsPerBatch() const override { return batch_; }
  bool hasValidation() const override { return val_ != nullptr; }
  Eval evaluate(nn::Model& model, const runtime::Stream& s, int64_t) override {
    // Classifiers are scored on the whole test set.
    double loss = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t b = 0; b < val_->evalBatches(); ++b) {
      const int64_t n = val_->evalBatch(b, inputs_.data(), labels_.data());
      loss += n * model.forward(s, {nullptr, inputs_.data(), labels_.data(), n, 1});
      const std::vector<float> logits = model.logits(s);
      const int64_t k = static_cast<int64_t>(logits.size()) / n;
      for (int64_t i = 0; i < n; ++i) {
        const float* row = logits.data() + i * k;
        correct += std::max_element(row, row + k) - row == labels_[i];
      }
      seen += n;
    }
    return {loss / static_cast<double>(seen),
            static_cast<double>(correct) / static_cast<double>(seen)};
  }
  std::string describe() const override {
    std::string s = std::to_string(train_.size()) + " train images";
    if (val_) s += ", " + std::to_string(val_->size()) + " test images";
    return s + " of " + std::to_string(train_.rows()) + "x" + std::to_string(train_.cols()) +
           "; batch " + std::to_string(batch_);
  }

 private:
  static void check(const nn::ImageLoader& l, const Config& c, const char* key) {
    if (l.pixelsPerImage() != c.model.input) {
      throw ConfigError(keyMessage(c, "model.input",
                                   std::to_string(c.model.input) + " inputs, but the " + key +
                                       " images have " + std::to_string(l.pixelsPerImage()) +
                                       " pixels"));
    }
    l.checkLabels(c.model.classes);
  }
  int64_t batch_;
  nn::ImageLoader train_;
  std::unique_ptr<nn::ImageLoader> val_;
  std::vector<float> inputs_;
  std::vector<int32_t> labels_;
};

std::unique_ptr<nn::Model> buildModel(const Config& c, runtime::Device device) {
  if (c.model.kind == ModelKind::Gpt)
    return std::make_unique<nn::Gpt>(nn::GptShape{c.model.n_layer, c.model.d_model, c.model.n_head,
                                                  c.model.seq_len, c.model.vocab},
                                     device);
  return std::make_unique<nn::Mlp>(
      nn::MlpShape{c.model.input, c.model.hidden, c.model.classes,
                   c.model.activation == Activation::Relu ? nn::MlpActivation::Relu
                                                          : nn::MlpActivation::Gelu},
      device);
}

nn::OptimizerSettings optimizerSettings(const Config& c) {
  const OptimizerConfig& o = c.optimizer;
  nn::OptimizerSettings s;
  s.type = o.kind == OptimizerKind::AdamW ? nn::OptimizerType::AdamW : nn::OptimizerType::Sgd;
  s.lr = static_cast<float>(o.lr);
  s.beta1 = static_cast<float>(o.betas[0]);
  s.beta2 = static_cast<float>(o.betas[1]);
  s.eps = static_cast<float>(o.eps);
  s.weight_decay = static_cast<float>(o.weight_decay);
  s.momentum = static_cast<float>(o.momentum);
  s.nesterov = o.nesterov;
  s.grad_clip = static_cast<float>(o.grad_clip);
  s.warmup = o.warmup;
  s.schedule = o.schedule == LrSchedule::Cosine   ? nn::Schedule::Cosine
               : o.schedule == LrSchedule::Linear ? nn::Schedule::Linear
                                                  : nn::Schedule::Constant;
  s.min_lr_ratio = static_cast<float>(o.min_lr_ratio);
  s.total_steps = c.run.steps;
  return s;
}

// Files a run writes; --overwrite removes exactly these, nothing else in the directory.
const char* const kRunFiles[] = {"config.yaml", "metrics.jsonl"};

// Refuses, before any work, to write over a run that is already there.
void checkRunDir(const Config& c, bool overwrite) {
  const fs::path dir(c.run.out_dir);
  bool existing = false;
  std::error_code ec;
  for (const char* f : kRunFiles) existing |= fs::exists(dir / f, ec);
  if (existing && !overwrite)
    throw ConfigError(keyMessage(c, "run.out_dir",
                                 c.run.out_dir +
                                     " already holds a run (config.yaml/metrics.jsonl); pass "
                                     "--overwrite to replace it, or set another run.out_dir "
                                     "(e.g. --set run.out_dir=runs/new)"));
}

void prepareRunDir(const Config& c) {
  const fs::path dir(c.run.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw ConfigError(
        keyMessage(c, "run.out_dir", "cannot create " + c.run.out_dir + ": " + ec.message()));
  for (const char* f : kRunFiles) {
    fs::remove(dir / f, ec);
    if (ec)
      throw ConfigError(keyMessage(c, "run.out_dir",
                                   "cannot replace " + (dir / f).string() + ": " + ec.message()));
  }
  // The resolved config, written whole before it replaces anything.
  const fs::path tmp = dir / ".config.yaml.tmp";
  {
    std::ofstream o(tmp);
    o << "# resolved from " << c.source << "\n" << toYaml(c);
    if (!o) throw ConfigError(keyMessage(c, "run.out_dir", "cannot write " + tmp.string()));
  }
  fs::rename(tmp, dir / "config.yaml", ec);
  if (ec)
    throw ConfigError(keyMessage(
        c, "run.out_dir", "cannot write " + (dir / "config.yaml").string() + ": " + ec.message()));
}

}  // namespace

TrainResult train(const Config& c, const TrainOptions& options, std::ostream& out) {
  const auto start = Clock::now();
  if (!options.dry_run) checkRunDir(c, options.overwrite);
  const runtime::DeviceSelection device = runtime::selectDevice(c.device);
  out << "device: " << device.reason << "\n";
  runtime::Stream stream(device.device);

  std::unique_ptr<RunData> data;
  if (c.model.kind == ModelKind::Gpt)
    data = std::make_unique<TokenData>(c);
  else
    data = std::make_unique<ImageData>(c);
  std::unique_ptr<nn::Model> model = buildModel(c, device.device);
  model->params().initialize(static_cast<uint64_t>(c.run.seed), stream);
  nn::Optimizer optimizer(model->params(), optimizerSettings(c));
  const double peak = runtime::measureGemmPeak(stream);

  out << "model: " << model->describe() << "\n";
  out << "data: " << data->describe() << "\n";
  out << "optimizer: " << enumName(c.optimizer.kind) << " lr " << c.optimizer.lr << ", warmup "
      << c.optimizer.warmup << ", " << enumName(c.optimizer.schedule) << " to "
      << c.optimizer.min_lr_ratio << " x lr, grad clip " << c.optimizer.grad_clip << "\n";
  out << "threads: " << omp_get_max_threads() << ", GEMM peak " << static_cast<int>(peak)
      << " GFLOP/s; run: " << c.run.steps << " steps -> " << c.run.out_dir << "\n";
  TrainResult result;
  result.gemm_peak_gflops = peak;
  if (options.dry_run) return result;

  prepareRunDir(c);
  const fs::path metrics_path = fs::path(c.run.out_dir) / "metrics.jsonl";
  std::ofstream metrics(metrics_path);
  if (!metrics)
    throw ConfigError(keyMessage(c, "run.out_dir", "cannot write " + metrics_path.string()));
  // Lines go out whole; a failed write (disk full) ends the run with its reason.
  auto writeMetrics = [&](const char* line) {
    metrics << line << "\n" << std::flush;
    if (!metrics)
      LB_THROW(TrainingError,
               "cannot write " + metrics_path.string() + ": " + std::strerror(errno));
  };
  const double flops_per_step =
      model->flopsPerPosition() * static_cast<double>(data->positionsPerBatch());
  auto evaluate = [&](int64_t step) {
    if (!data->hasValidation()) return;
    const RunData::Eval e = data->evaluate(*model, stream, c.run.eval_batches);
    result.val_loss = e.loss;
    result.val_accuracy = e.accuracy;
    char line[160];
    if (e.accuracy >= 0)
      std::snprintf(line, sizeof line, "{\"step\":%lld,\"val_loss\":%s,\"val_accuracy\":%s}",
                    static_cast<long long>(step), json(e.loss, "%.6f").c_str(),
                    json(e.accuracy, "%.6f").c_str());
    else
      std::snprintf(line, sizeof line, "{\"step\":%lld,\"val_loss\":%s}",
                    static_cast<long long>(step), json(e.loss, "%.6f").c_str());
    writeMetrics(line);
    out << "eval step " << step << ": val loss " << e.loss;
    if (e.accuracy >= 0) out << ", accuracy " << e.accuracy * 100 << "%";
    out << "\n";
  };

  const auto train_start = Clock::now();
  auto window_start = Clock::now();
  int64_t window_steps = 0, window_all = 0, bad_in_a_row = 0;  // updated / all steps
  double window_loss = 0;
  for (int64_t step = 0; step < c.run.steps; ++step) {
    runtime::fill(stream, model->params().grads(), 0.0f);
    const float loss = model->forward(stream, data->next());
    model->backward(stream);
    const double norm = optimizer.gradientNorm(stream);
    ++window_all;
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      ++result.skipped_steps;
      out << "step " << step + 1 << ": skipped, "
          << (std::isfinite(loss) ? "gradient norm" : "loss") << " is not finite\n";
      if (++bad_in_a_row >= c.run.max_bad_steps)
        LB_THROW(TrainingError, "training diverged: " + std::to_string(bad_in_a_row) +
                                    " steps in a row with a NaN/Inf loss or gradient "
                                    "(run.max_bad_steps). HINT: lower optimizer.lr or raise "
                                    "optimizer.warmup");
    } else {
      bad_in_a_row = 0;
      optimizer.apply(stream, step, norm);
      result.final_loss = loss;
      window_loss += loss;
      ++window_steps;
      ++result.steps;
    }
    // Logging and evaluation happen on their steps even when that step was skipped.
    const bool last = step + 1 == c.run.steps;
    if (((step + 1) % c.run.log_every == 0 || last) && window_steps > 0) {
      stream.synchronize();
      const double dt = secondsSince(window_start);
      const double per_step = dt / static_cast<double>(window_all);
      const double tokens_per_s = static_cast<double>(data->positionsPerBatch()) / per_step;
      const double mfu = flops_per_step / per_step / (peak * 1e9);
      const double eta = per_step * static_cast<double>(c.run.steps - step - 1);
      char line[256];
      std::snprintf(
          line, sizeof line,
          "{\"step\":%lld,\"loss\":%s,\"lr\":%s,\"grad_norm\":%s,\"tokens_per_s\":%s,"
          "\"mfu\":%s,\"elapsed_s\":%.3f}",
          static_cast<long long>(step + 1), json(window_loss / window_steps, "%.6f").c_str(),
          json(optimizer.lrAt(step), "%.6g").c_str(), json(norm, "%.6g").c_str(),
          json(tokens_per_s, "%.1f").c_str(), json(mfu, "%.4f").c_str(), secondsSince(train_start));
      writeMetrics(line);
      std::snprintf(
          line, sizeof line,
          "step %lld/%lld | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | MFU %.0f%% | ETA %s",
          static_cast<long long>(step + 1), static_cast<long long>(c.run.steps),
          window_loss / window_steps, optimizer.lrAt(step), norm, tokens_per_s, mfu * 100,
          duration(eta).c_str());
      out << line << "\n" << std::flush;
      result.tokens_per_s = tokens_per_s;
      result.mfu = mfu;
      window_start = Clock::now();
      window_steps = 0;
      window_all = 0;
      window_loss = 0;
    }
    if ((c.run.eval_every > 0 && (step + 1) % c.run.eval_every == 0 && !last)) evaluate(step + 1);
  }
  evaluate(c.run.steps);
  result.wall_s = secondsSince(start);
  out << "done: " << result.steps << " steps in " << duration(result.wall_s) << ", final loss "
      << result.final_loss;
  if (result.val_loss >= 0) out << ", val loss " << result.val_loss;
  if (result.val_accuracy >= 0) out << ", accuracy " << result.val_accuracy * 100 << "%";
  out << "; metrics in " << (fs::path(c.run.out_dir) / "metrics.jsonl").string() << "\n";
  return result;
}

}  // namespace lowband::launcher
