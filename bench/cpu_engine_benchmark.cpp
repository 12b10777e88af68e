// CPU engine benchmarks on a ResNet-18-shaped network (random weights, batch-norm folded
// into the convolutions, residual adds as sum post-ops): build time (with tactic timing),
// load time (parse + kernel creation, no timing, no weight reordering) and run latency.
//
//   cpu_engine_benchmark --benchmark_filter=Run
//
// The LoadStage benchmarks split the load into its parts. They load the engine from a file
// (EMBER_BENCH_ENGINE=model.engine, e.g. from `ember extract model.ep -o model.engine`;
// otherwise the hand-built network, written to a temporary file), mapped afresh for every
// iteration as `ember run` does, so page-table faults of the mapping are counted:
//   0 map + header, table, meta checksum, meta JSON, target check (EngineVerification::kMinimal)
//   1 + XXH3-64 of the weights section (the mapping's page faults included)
//   2 + madvise(MADV_POPULATE_READ) of the weights first, then XXH3-64
//   3 + plan JSON parse and validation (plan_from_json)
//   4 + every kernel created on one thread (no weights checksum)
//   5 Engine::load with one thread (weights checksum, then kernels: the old sequence)
//   6 Engine::load as shipped (weights checksum concurrent with kernel creation)
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/exec.h"
#include "backends/cpu/plan.h"
#include "ember/file.h"

namespace {

using ember::DType;
using ember::Shape;
using ember::Tensor;
using namespace ember::cpu;

Tensor random_tensor(const Shape& shape, uint32_t seed, float scale) {
  Tensor t = Tensor::empty(shape, DType::kFloat32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
  return t;
}

struct Net {
  EngineGraph g;
  uint32_t seed = 1;
  int value(const std::string& name, Shape dims) {
    EngineValue v;
    v.name = name;
    v.dims = std::move(dims);
    v.symbols.assign(v.dims.size(), "");
    g.values.push_back(std::move(v));
    return static_cast<int>(g.values.size()) - 1;
  }
  // conv (+ folded BN bias) [+ residual sum] [+ relu]
  int conv(const std::string& name, int x, int64_t out_c, int64_t k, int64_t stride, int64_t pad, bool relu,
           int residual = -1) {
    const Shape& xd = g.values[x].dims;
    int64_t h = (xd[2] + 2 * pad - k) / stride + 1, w = (xd[3] + 2 * pad - k) / stride + 1;
    int y = value(name, {xd[0], out_c, h, w});
    FusedOp op;
    op.op = "conv2d";
    op.name = name;
    op.inputs = {x};
    op.outputs = {y};
    float fan_in = static_cast<float>(xd[1] * k * k);
    op.constants = {random_tensor({out_c, xd[1], k, k}, seed++, std::sqrt(2.f / fan_in)),
                    random_tensor({out_c}, seed++, 0.1f)};
    op.attrs = {{"stride", {stride, stride}}, {"padding", {pad, pad}}};
    if (residual >= 0) {
      PostOp s;
      s.kind = PostOp::Kind::kSum;
      s.value = residual;
      op.post_ops.push_back(s);
    }
    if (relu) {
      PostOp r;
      r.alg = "relu";
      op.post_ops.push_back(r);
    }
    g.ops.push_back(std::move(op));
    return y;
  }
  int block(const std::string& name, int x, int64_t out_c, int64_t stride) {
    int identity = x;
    if (stride != 1 || g.values[x].dims[1] != out_c) identity = conv(name + ".downsample", x, out_c, 1, stride, 0, false);
    int y = conv(name + ".conv1", x, out_c, 3, stride, 1, true);
    return conv(name + ".conv2", y, out_c, 3, 1, 1, true, identity);
  }
};

EngineGraph resnet18(int64_t batch) {
  Net n;
  n.g.name = "resnet18";
  int x = n.value("x", {batch, 3, 224, 224});
  int y = n.conv("conv1", x, 64, 7, 2, 3, true);
  int p = n.value("maxpool", {batch, 64, 56, 56});
  FusedOp mp;
  mp.op = "max_pool2d";
  mp.name = "maxpool";
  mp.inputs = {y};
  mp.outputs = {p};
  mp.attrs = {{"kernel", {3, 3}}, {"stride", {2, 2}}, {"padding", {1, 1}}};
  n.g.ops.push_back(mp);
  int h = p;
  int64_t channels[] = {64, 128, 256, 512};
  for (int l = 0; l < 4; ++l) {
    std::string name = "layer" + std::to_string(l + 1);
    h = n.block(name + ".0", h, channels[l], l == 0 ? 1 : 2);
    h = n.block(name + ".1", h, channels[l], 1);
  }
  int gp = n.value("avgpool", {batch, 512, 1, 1});
  FusedOp ap;
  ap.op = "adaptive_avg_pool2d";
  ap.name = "avgpool";
  ap.inputs = {h};
  ap.outputs = {gp};
  ap.attrs = {{"output_size", {1, 1}}};
  n.g.ops.push_back(ap);
  int flat = n.value("flatten", {batch, 512});
  FusedOp fl;
  fl.op = "reference";
  fl.name = "flatten";
  fl.inputs = {gp};
  fl.outputs = {flat};
  fl.attrs = {{"target", "torch.ops.aten.view.default"},
              {"args", nlohmann::json::array({{{"name", "self"}, {"arg", {{"as_tensor", {{"name", "%" + std::to_string(gp)}}}}}},
                                              {{"name", "size"}, {"arg", {{"as_ints", {batch, 512}}}}}})}};
  n.g.ops.push_back(fl);
  int out = n.value("fc", {batch, 1000});
  FusedOp fc;
  fc.op = "linear";
  fc.name = "fc";
  fc.inputs = {flat};
  fc.outputs = {out};
  fc.constants = {random_tensor({1000, 512}, 999, 0.04f), random_tensor({1000}, 998, 0.1f)};
  n.g.ops.push_back(fc);
  n.g.inputs = {x};
  n.g.outputs = {out};
  return n.g;
}

std::shared_ptr<ember::Storage> built_engine(bool timed) {
  static std::shared_ptr<ember::Storage> cache[2];
  if (!cache[timed]) {
    BuildOptions o;
    o.threads = 2;
    o.time_tactics = timed;
    cache[timed] = build_engine(resnet18(1), o);
  }
  return cache[timed];
}

void BM_Build(benchmark::State& state) {
  EngineGraph g = resnet18(1);
  BuildOptions o;
  o.threads = 2;
  o.time_tactics = state.range(0) != 0;
  for (auto _ : state) benchmark::DoNotOptimize(build_engine(g, o));
}
BENCHMARK(BM_Build)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(1);

void BM_Load(benchmark::State& state) {
  auto bytes = built_engine(true);
  for (auto _ : state) benchmark::DoNotOptimize(Engine::load(bytes, "resnet18.engine"));
  state.counters["engine_MB"] = static_cast<double>(bytes->nbytes()) / 1e6;
}
BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond);

void BM_Run(benchmark::State& state) {
  auto engine = Engine::load(built_engine(state.range(1) != 0), "resnet18.engine");
  Tensor x = random_tensor({1, 3, 224, 224}, 7, 1.f);
  RunOptions o;
  o.threads = static_cast<int>(state.range(0));
  engine->run({x}, o);  // warm-up (kernels for this thread count)
  for (auto _ : state) benchmark::DoNotOptimize(engine->run({x}, o));
}
BENCHMARK(BM_Run)->ArgNames({"threads", "timed"})->Args({2, 1})->Args({1, 1})->Args({2, 0})->Unit(benchmark::kMillisecond)->UseRealTime();

std::string engine_path() {
  static std::string path;
  if (path.empty()) {
    if (const char* env = std::getenv("EMBER_BENCH_ENGINE"); env != nullptr && *env != 0) {
      path = env;
    } else {
      path = "/tmp/ember_cpu_engine_benchmark_" + std::to_string(getpid()) + ".engine";
      auto bytes = built_engine(true);
      FILE* f = std::fopen(path.c_str(), "wb");
      if (f == nullptr || std::fwrite(bytes->data(), 1, bytes->nbytes(), f) != bytes->nbytes()) std::abort();
      std::fclose(f);
      std::atexit([] { std::remove(path.c_str()); });
    }
  }
  return path;
}

void BM_LoadStage(benchmark::State& state) {
  const int stage = static_cast<int>(state.range(0));
  const std::string path = engine_path();
  auto set_threads = [](const char* v) { setenv("EMBER_LOAD_THREADS", v, 1); };
  for (auto _ : state) {
    if (stage == 5 || stage == 6) {
      if (stage == 5) set_threads("1");
      benchmark::DoNotOptimize(Engine::load(ember::map_file_readonly(path), path));
      unsetenv("EMBER_LOAD_THREADS");
      continue;
    }
    ember::EngineView view = ember::load_engine(ember::map_file_readonly(path), path, ember::host_target(),
                                                ember::EngineVerification::kMinimal);
    std::shared_ptr<ember::Storage> weights = view.section(ember::kSectionWeights);
    if (stage == 2) {
      const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
      const uintptr_t begin = reinterpret_cast<uintptr_t>(weights->data()) / page * page;
      madvise(reinterpret_cast<void*>(begin), reinterpret_cast<uintptr_t>(weights->data()) + weights->nbytes() - begin,
              MADV_POPULATE_READ);
    }
    if (stage == 1 || stage == 2) view.verify_section(ember::kSectionWeights);
    if (stage >= 3) {
      std::shared_ptr<ember::Storage> plan_bytes = view.section(ember::kSectionPlan);
      Plan plan = plan_from_json(
          std::string_view(reinterpret_cast<const char*>(plan_bytes->data()), plan_bytes->nbytes()),
          static_cast<int64_t>(weights->nbytes()), path);
      if (stage == 4) {
        auto blob = [&](int b) { return weights->data() + plan.blobs.at(b).offset; };
        benchmark::DoNotOptimize(prepare(plan, {}, blob, weights));
      }
      benchmark::DoNotOptimize(plan);
    }
    benchmark::DoNotOptimize(view);
  }
}
BENCHMARK(BM_LoadStage)->DenseRange(0, 6)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
