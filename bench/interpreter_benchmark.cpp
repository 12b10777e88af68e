// Interpreter run time on the fixtures (reference kernels, no engines): ResNet-18 and the
// small CNN at their fixture batch sizes. Load time is measured separately.
//
//   ./bench/interpreter_benchmark --benchmark_filter=ResNet18
// EMBER_NUM_THREADS sets the kernel thread count.
#include <benchmark/benchmark.h>

#include <string>

#include "ember/runtime.h"
#include "ember/safetensors.h"
#include "ops/kernels/parallel.h"

namespace {

std::string fixture(const std::string& name) { return std::string(EMBER_FIXTURES_DIR) + "/" + name; }

void run_fixture(benchmark::State& state, const std::string& name) {
  ember::Program program = ember::Program::load(fixture(name + ".pt2"));
  ember::SafetensorsFile io = ember::read_safetensors(fixture(name + ".io.safetensors"));
  const ember::Tensor& x = *io.find("case0.in.0");
  program.run_flat({x});  // warm-up
  for (auto _ : state) {
    auto out = program.run_flat({x});
    benchmark::DoNotOptimize(out);
  }
  state.counters["threads"] = ember::ops::num_threads();
  state.SetLabel(x.to_string());
}

void BM_ResNet18Batch1(benchmark::State& state) { run_fixture(state, "resnet18"); }
void BM_CnnSmallBatch2(benchmark::State& state) { run_fixture(state, "cnn_small"); }
void BM_TransformerLayer(benchmark::State& state) { run_fixture(state, "transformer_layer"); }

void BM_LoadResNet18(benchmark::State& state) {
  for (auto _ : state) {
    ember::Program p = ember::Program::load(fixture("resnet18.pt2"));
    benchmark::DoNotOptimize(p);
  }
}

BENCHMARK(BM_ResNet18Batch1)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_CnnSmallBatch2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TransformerLayer)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LoadResNet18)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
