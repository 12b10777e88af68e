// Engine::load / run: replays a stored plan. Never times, never reorders weights, never
// chooses a kernel: every decision comes from the plan.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/exec.h"
#include "backends/cpu/plan.h"
#include "ember/error.h"
#include "ember/log.h"
#include "ops/kernels/parallel.h"

namespace ember::cpu {

namespace {

bool has_dynamic_inputs(const EngineMeta& meta) {
  for (const EngineIoBinding& b : meta.inputs)
    for (const EngineDim& d : b.shape)
      if (!d.is_static()) return true;
  return false;
}

// How much heap a load populates before it allocates (warm_allocator; the numbers were
// measured on resnet18's engine, 29 steps). The loading thread, before the plan parse: per byte
// of the plan's JSON, 12 bytes for the parse (simdjson's buffers, the Plan), and for a static
// engine 20 more for the kernels it creates next (its plan holds ~1.2 KB of JSON per step, and
// the loading thread's kernels grew the heap by ~1 MiB, ~36 KiB per step). Each helper, before
// its first kernel: 24 KiB per step (it starts on kernels only once its weights pieces are
// hashed, and made a third of resnet18's ~1.5 MiB). A dynamic engine's first run of a shape:
// 48 KiB per step. Populating too much costs under 0.2 ms per MiB on the hosts measured (and
// the memory stays with the allocator for later allocations); too little leaves the rest to
// page faults.
constexpr size_t kWarmPerPlanByte = 12;
constexpr size_t kWarmPerPlanByteWithKernels = 32;
constexpr size_t kWarmPerStepHelper = size_t{24} << 10;
constexpr size_t kWarmPerStep = size_t{48} << 10;
constexpr size_t kMaxWarm = size_t{16} << 20;

size_t warm_bytes(size_t units, size_t per_unit) { return std::min(kMaxWarm, units * per_unit); }

class ScopedThreads {
 public:
  explicit ScopedThreads(int threads) : saved_(omp_get_max_threads()) {
    if (threads > 0) omp_set_num_threads(threads);
  }
  ~ScopedThreads() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

struct Buffers {
  std::shared_ptr<Storage> arena, scratch;
};

class CpuEngine final : public Engine {
 public:
  CpuEngine(EngineView view, Plan plan, std::shared_ptr<Storage> weights)
      : view_(std::move(view)), plan_(std::move(plan)), weights_(std::move(weights)) {}

  const EngineMeta& meta() const override { return view_.meta(); }

  std::shared_ptr<Prepared> prepared_uncached(const std::map<std::string, int64_t>& symbols) const {
    return prepare(plan_, symbols, [this](int b) { return blob(b); }, weights_);
  }
  // Layouts and memory plan only; the caller creates the kernels (KernelCreation).
  std::shared_ptr<Prepared> layout_uncached(const std::map<std::string, int64_t>& symbols) const {
    return prepare_layout(plan_, symbols, [this](int b) { return blob(b); }, weights_);
  }

  // Kernels for a shape and thread count, created once and cached.
  std::shared_ptr<const Prepared> prepared(const std::map<std::string, int64_t>& symbols, int threads) const {
    Key key{symbols, threads};
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = cache_.find(key);
      if (it != cache_.end()) return it->second;
    }
    warm_allocator(warm_bytes(plan_.steps.size(), kWarmPerStep));
    std::shared_ptr<Prepared> p = prepared_uncached(symbols);
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = cache_.emplace(key, p);
    return it->second;
  }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs, const RunOptions& options) const override {
    const EngineMeta& m = meta();
    const std::string& src = view_.source();
    EMBER_CHECK(inputs.size() == m.inputs.size(), ErrorCode::kInvalidArgument, src, ": engine '", m.name,
                "' expects ", m.inputs.size(), " inputs, got ", inputs.size());
    std::map<std::string, int64_t> symbols;
    std::vector<Tensor> contiguous(inputs.size());
    for (size_t k = 0; k < inputs.size(); ++k) {
      const EngineIoBinding& b = m.inputs[k];
      const Tensor& t = inputs[k];
      EMBER_CHECK(t.defined(), ErrorCode::kInvalidArgument, src, ": engine '", m.name, "' input ", k, " ('", b.name,
                  "') is undefined");
      EMBER_CHECK(t.dtype() == b.dtype, ErrorCode::kDTypeMismatch, src, ": engine '", m.name, "' input ", k, " ('",
                  b.name, "'): expected ", dtype_name(b.dtype), ", got ", dtype_name(t.dtype()));
      EMBER_CHECK(t.dim() == static_cast<int64_t>(b.shape.size()), ErrorCode::kShapeMismatch, src, ": engine '",
                  m.name, "' input ", k, " ('", b.name, "'): expected rank ", b.shape.size(), ", got ",
                  shape_str(t.sizes()));
      for (size_t i = 0; i < b.shape.size(); ++i) {
        const EngineDim& d = b.shape[i];
        int64_t got = t.size(static_cast<int64_t>(i));
        EMBER_CHECK(got >= d.min && got <= d.max, ErrorCode::kShapeMismatch, src, ": engine '", m.name, "' input ", k,
                    " ('", b.name, "') dim ", i, ": expected ",
                    d.is_static() ? std::to_string(d.min)
                                  : cat(d.symbol, " in ", d.min, "..",
                                        d.max == kDimUnbounded ? std::string("inf") : std::to_string(d.max)),
                    ", got ", got, " (shape ", shape_str(t.sizes()), ")");
        if (!d.symbol.empty() && !d.is_static()) {
          auto [it, inserted] = symbols.emplace(d.symbol, got);
          EMBER_CHECK(it->second == got, ErrorCode::kShapeMismatch, src, ": engine '", m.name, "' input ", k, " ('",
                      b.name, "') dim ", i, ": symbol ", d.symbol, " is ", it->second,
                      " from an earlier input, got ", got);
        }
      }
      contiguous[k] = t.contiguous();
    }
    for (const auto& [sym, v] : plan_.build_symbols)
      EMBER_CHECK(symbols.count(sym), ErrorCode::kInvalidArgument, src, ": engine '", m.name, "': symbol ", sym,
                  " is not bound by any input");

    ScopedThreads scoped(options.threads);
    int threads = omp_get_max_threads();
    std::shared_ptr<const Prepared> p = prepared(symbols, threads);

    std::vector<Tensor> outputs;
    std::vector<uint8_t*> out_ptrs;
    for (size_t k = 0; k < plan_.outputs.size(); ++k) {
      const PlanValue& v = plan_.values[plan_.outputs[k]];
      outputs.push_back(Tensor::empty(p->env.dims[plan_.outputs[k]], v.dtype));
      out_ptrs.push_back(static_cast<uint8_t*>(outputs.back().raw_data()));
    }
    std::vector<const uint8_t*> in_ptrs;
    for (const Tensor& t : contiguous) in_ptrs.push_back(static_cast<const uint8_t*>(t.raw_data()));
    Buffers buf = acquire(p->arena_size, p->scratch_bytes);
    try {
      execute(*p, in_ptrs, out_ptrs, buf.arena->data(), buf.scratch->data());
    } catch (...) {
      release(std::move(buf));
      throw;
    }
    release(std::move(buf));
    return outputs;
  }

  std::string describe() const override {
    std::string s = cat("engine '", plan_.engine_name, "' (cpu): ", plan_.steps.size(), " steps, arena ",
                        plan_.arena_size, " bytes, weights ", weights_->nbytes(), " bytes, requires ",
                        target_str(meta().target), "\n");
    for (size_t k = 0; k < plan_.steps.size(); ++k) {
      const PlanStep& st = plan_.steps[k];
      s += cat("  [", k, "] ", st.kind, " '", st.name, "'");
      if (!st.tactic.empty()) s += cat(" tactic=", st.tactic);
      if (!st.impl.empty()) s += cat(" impl=", st.impl);
      if (st.kind == "reference") s += cat(" target=", st.target);
      for (int o : st.outputs) {
        const PlanValue& v = plan_.values[o];
        s += cat(" -> ", v.name, " ", dtype_name(v.dtype), shape_str(v.dims));
        if (v.has_desc) s += cat(" ", desc_str(v.desc));
      }
      if (!st.post_ops.empty()) {
        s += " post-ops:";
        for (const PlanPostOp& po : st.post_ops) s += cat(" ", po.kind, po.alg.empty() ? "" : ":" + po.alg);
      }
      s += "\n";
    }
    return s;
  }

  // Caches kernels created at load for the calling thread's thread count.
  void adopt(const std::map<std::string, int64_t>& symbols, std::shared_ptr<Prepared> p) const {
    std::lock_guard<std::mutex> lock(mu_);
    cache_.emplace(Key{symbols, omp_get_max_threads()}, std::move(p));
  }

  // Bound blob pointer: weights base + blob offset (validated by plan_from_json).
  const uint8_t* blob(int b) const { return weights_->data() + plan_.blobs.at(b).offset; }
  const Plan& plan() const { return plan_; }

 private:
  struct Key {
    std::map<std::string, int64_t> symbols;
    int threads;
    bool operator<(const Key& o) const { return std::tie(symbols, threads) < std::tie(o.symbols, o.threads); }
  };

  Buffers acquire(int64_t arena, size_t scratch) const {
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      for (size_t i = 0; i < pool_.size(); ++i) {
        if (pool_[i].arena->nbytes() >= static_cast<size_t>(std::max<int64_t>(arena, 1)) &&
            pool_[i].scratch->nbytes() >= std::max<size_t>(scratch, 1)) {
          Buffers b = std::move(pool_[i]);
          pool_.erase(pool_.begin() + static_cast<long>(i));
          return b;
        }
      }
    }
    return {allocate_run_buffer(static_cast<size_t>(std::max<int64_t>(arena, 1))), allocate_run_buffer(scratch)};
  }
  void release(Buffers b) const {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (pool_.size() < 8) pool_.push_back(std::move(b));
  }

  EngineView view_;
  Plan plan_;
  std::shared_ptr<Storage> weights_;
  mutable std::mutex mu_;
  mutable std::map<Key, std::shared_ptr<Prepared>> cache_;
  mutable std::mutex pool_mu_;
  mutable std::vector<Buffers> pool_;
};

// Kernel-creation threads at load when EMBER_LOAD_THREADS is not set: one per CPU this process
// may run on, at most this.
constexpr unsigned kMaxLoadThreads = 4;

// The work of a load that can spread over threads: the weights section's checksum, in pieces
// (EngineView::checksum_piece), and, once the plan is parsed, the kernels of a static engine
// (KernelCreation). Helper threads start before the plan is parsed and hash weights pieces,
// then take kernels once no piece is left; the loading thread, once it has published the
// kernels, takes kernels first and pieces after, so no thread idles while another still has
// work. (Kernels are not spread over all threads from the start: oneDNN kernel creation on
// several threads at once contends inside oneDNN and the kernel's memory map, and measured
// slower on two cores than creating them on one thread while the other hashes.) finish()
// does the rest on the calling thread, joins the helpers, then reports corruption before any
// kernel error. The destructor stops and joins the helpers on an error path before
// publication.
class LoadWork {
 public:
  LoadWork(const EngineView& view, bool verify_weights)
      : view_(view), digests_(verify_weights ? view.checksum_pieces(kSectionWeights) : 0), verify_(verify_weights) {}
  LoadWork(const LoadWork&) = delete;
  LoadWork& operator=(const LoadWork&) = delete;
  ~LoadWork() {
    next_piece_.store(digests_.size());
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    join();
  }

  // Up to `count` helpers, each running kernels for `omp_threads` OpenMP threads.
  void start_helpers(int count, int omp_threads) {
    try {
      for (int i = 0; i < count; ++i)
        helpers_.push_back(ops::start_thread([this, omp_threads] {
          omp_set_num_threads(omp_threads);
          help();
        }));
    } catch (const std::system_error&) {
      // Fewer threads: the ones started and the loading thread do all of it.
    }
  }
  size_t helpers() const { return helpers_.size(); }
  size_t pieces() const { return digests_.size(); }

  // Hands the kernels to the helpers (nullptr: none to create). Call finish() next: nothing
  // between may throw, since the helpers use `kernels` until finish() has joined them.
  void publish(KernelCreation* kernels) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      kernels_.store(kernels);
      published_ = true;
    }
    cv_.notify_all();
  }

  void finish() {
    KernelCreation* kernels = kernels_.load();
    while ((kernels != nullptr && kernels->step()) || hash_step()) {
    }
    join();
    if (hash_error_) std::rethrow_exception(hash_error_);
    if (verify_) view_.check_pieces(kSectionWeights, digests_);
    if (kernels != nullptr) kernels->finish();
  }

 private:
  // One weights piece; false when none was left. Records the first error instead of throwing.
  bool hash_step() {
    const size_t i = next_piece_.fetch_add(1);
    if (i >= digests_.size()) return false;
    try {
      digests_[i] = view_.checksum_piece(kSectionWeights, i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!hash_error_) hash_error_ = std::current_exception();
      next_piece_.store(digests_.size());
    }
    return true;
  }

  void help() {
    bool warmed = false;
    for (;;) {
      KernelCreation* kernels = kernels_.load();
      if (hash_step()) continue;
      if (kernels != nullptr && !warmed && kernels->pending()) {
        warm_allocator(warm_bytes(kernels->size(), kWarmPerStepHelper));
        warmed = true;
      }
      if (kernels != nullptr && kernels->step()) continue;
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return published_ || closing_; });
      // Done unless the kernels were published after this thread last looked.
      if (closing_ || kernels != nullptr || kernels_.load() == nullptr) return;
    }
  }

  void join() {
    for (std::thread& t : helpers_)
      if (t.joinable()) t.join();
  }

  const EngineView& view_;
  std::vector<uint64_t> digests_;
  const bool verify_;
  std::atomic<size_t> next_piece_{0};
  std::atomic<KernelCreation*> kernels_{nullptr};
  std::mutex mu_;
  std::condition_variable cv_;
  bool published_ = false;
  bool closing_ = false;
  std::exception_ptr hash_error_;
  std::vector<std::thread> helpers_;
};

int load_threads() {
  if (const char* env = std::getenv("EMBER_LOAD_THREADS"); env != nullptr && *env != 0) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    EMBER_CHECK(end != env && *end == 0 && v >= 1 && v <= 256, ErrorCode::kInvalidArgument,
                "EMBER_LOAD_THREADS: expected an integer from 1 to 256, found '", env, "'");
    return static_cast<int>(v);
  }
  return std::clamp(ops::available_cpus(), 1, static_cast<int>(kMaxLoadThreads));
}

}  // namespace

std::shared_ptr<const Engine> Engine::load(std::shared_ptr<Storage> bytes, const std::string& source,
                                           EngineVerification verification) {
  EMBER_CHECK(bytes != nullptr, ErrorCode::kInvalidArgument, source, ": no engine bytes");
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  const auto t_start = Clock::now();
  // Header, section table and meta (checksums included); format version and target are
  // enforced here, before anything else is read or any kernel is created.
  EngineView view = load_engine(std::move(bytes), source, host_target(), EngineVerification::kMinimal);
  EMBER_CHECK(view.meta().backend == "cpu", ErrorCode::kUnsupported, source, ": engine '", view.meta().name,
              "' was built for backend '", view.meta().backend, "', not 'cpu'");
  const bool full = verification == EngineVerification::kFull;
  // Every section but the weights is verified before it is parsed; the weights (almost all
  // of the bytes) are verified concurrently with the plan parse and kernel creation, which
  // never read them: helper threads start on their checksum pieces now and take kernels once
  // the plan is parsed. load() returns only after that verification passed.
  const bool dynamic = has_dynamic_inputs(view.meta());
  LoadWork work(view, full);
  const int threads = load_threads();
  const int omp_threads = omp_get_max_threads();
  if (full) {
    view.verify_padding();
    for (const EngineSectionInfo& sec : view.sections())
      if (sec.name != kSectionMeta && sec.name != kSectionWeights) view.verify_section(sec.name);
  }
  std::shared_ptr<Storage> plan_bytes = view.section(kSectionPlan);
  warm_allocator(warm_bytes(plan_bytes->nbytes(), dynamic ? kWarmPerPlanByte : kWarmPerPlanByteWithKernels));
  if (threads > 1 && (work.pieces() > 1 || !dynamic)) work.start_helpers(threads - 1, omp_threads);
  const auto t_view = Clock::now();
  std::shared_ptr<Storage> weights = view.section(kSectionWeights);
  Plan plan = plan_from_json(std::string_view(reinterpret_cast<const char*>(plan_bytes->data()), plan_bytes->nbytes()),
                             static_cast<int64_t>(weights->nbytes()), cat(source, ": engine '", view.meta().name, "'"));
  const EngineMeta& m = view.meta();
  EMBER_CHECK(plan.inputs.size() == m.inputs.size() && plan.outputs.size() == m.outputs.size(), ErrorCode::kCorrupt,
              source, ": engine '", m.name, "': the plan has ", plan.inputs.size(), " inputs and ",
              plan.outputs.size(), " outputs, the meta binds ", m.inputs.size(), " and ", m.outputs.size());
  auto check_binding = [&](const EngineIoBinding& b, const PlanValue& v, const char* what, size_t k) {
    bool ok = b.dtype == v.dtype && b.shape.size() == v.dims.size();
    for (size_t i = 0; ok && i < v.dims.size(); ++i) {
      const EngineDim& d = b.shape[i];
      if (d.is_static()) ok = v.symbols[i].empty() && v.dims[i] == d.min;
      else ok = !v.symbols[i].empty() && v.symbols[i] == d.symbol;
    }
    EMBER_CHECK(ok, ErrorCode::kCorrupt, source, ": engine '", m.name, "': ", what, " ", k, " ('", b.name,
                "') disagrees between meta and plan");
  };
  for (size_t k = 0; k < plan.inputs.size(); ++k) check_binding(m.inputs[k], plan.values[plan.inputs[k]], "input", k);
  for (size_t k = 0; k < plan.outputs.size(); ++k)
    check_binding(m.outputs[k], plan.values[plan.outputs[k]], "output", k);
  const auto t_plan = Clock::now();

  auto engine = std::make_shared<CpuEngine>(view, std::move(plan), std::move(weights));
  std::shared_ptr<Prepared> p;
  std::optional<KernelCreation> kernels;
  if (!dynamic) {
    // Static engines: create every kernel now (primitive creation only) so the first run is
    // fast; dynamic engines create kernels on the first run of each shape.
    p = engine->layout_uncached({});
    kernels.emplace(*p);
  }
  work.publish(kernels ? &*kernels : nullptr);
  work.finish();  // corruption is reported before a kernel error
  if (p != nullptr) {
    log_debug(source, ": engine '", m.name, "': arena ", p->arena_size, " bytes, kernel scratch ", p->scratch_bytes,
              " bytes per run");
    engine->adopt({}, std::move(p));
  }
  const auto t_end = Clock::now();
  log_debug(source, ": engine '", m.name, "' loaded in ", ms(t_start, t_end), " ms: header, meta, target and small ",
            "sections ", ms(t_start, t_view), " ms, plan ", ms(t_view, t_plan), " ms (weights checksum running), ",
            dynamic ? "weights verified " : "kernels + weights verified ", "(", work.helpers() + 1,
            " threads, ", work.pieces(), " checksum pieces) ", ms(t_plan, t_end), " ms");
  return engine;
}

}  // namespace ember::cpu
