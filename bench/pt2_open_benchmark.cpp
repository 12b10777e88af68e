// Opening resnet18.pt2 (47 MB): mmap + index (zero-copy views) vs. reading the whole file
// into memory first. Counters report resident memory growth (RSS, from /proc/self/statm)
// after opening, after touching every weight page, and for the whole-file read.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "ember/archive.h"
#include "ember/pt2.h"

namespace {

const std::string& resnet_path() {
  static const std::string p = std::string(EMBER_FIXTURES_DIR) + "/resnet18.pt2";
  return p;
}

double rss_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

// Reads one byte per 4 KiB of every weight.
uint64_t touch_weights(const ember::Pt2Archive& a) {
  uint64_t sum = 0;
  for (const auto& m : a.models) {
    for (const auto& e : m.weights) {
      if (!e.tensor.defined()) continue;
      const auto& s = e.tensor.storage();
      for (size_t off = 0; off < s->nbytes(); off += 4096) sum += s->data()[off];
    }
  }
  return sum;
}

size_t weight_bytes(const ember::Pt2Archive& a) {
  size_t n = 0;
  for (const auto& m : a.models)
    for (const auto& e : m.weights)
      if (e.tensor.defined()) n += e.tensor.storage()->nbytes();
  return n;
}

// The zip layer alone: mmap, central directory and local headers, name index.
void BM_ZipOpenIndex(benchmark::State& state) {
  for (auto _ : state) {
    auto zip = ember::ZipReader::open(resnet_path());
    benchmark::DoNotOptimize(zip->find("resnet18/models/model.json"));
  }
}
BENCHMARK(BM_ZipOpenIndex)->Unit(benchmark::kMicrosecond);

// Parsing models/model.json into the IR (most of read_pt2's time).
void BM_ParseModelJson(benchmark::State& state) {
  auto zip = ember::ZipReader::open(resnet_path());
  const std::string text = zip->read_string(*zip->find("resnet18/models/model.json"));
  for (auto _ : state) {
    auto program = ember::ir::parse_exported_program(text, "model.json");
    benchmark::DoNotOptimize(program.graph_module.graph.nodes.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParseModelJson)->Unit(benchmark::kMillisecond);

// mmap + parse the index, configs and model JSON; tensors are views into the mapping.
void BM_OpenMmap(benchmark::State& state) {
  ember::Pt2ReadOptions options;
  options.validate = state.range(0) != 0;
  double rss_growth = 0;
  for (auto _ : state) {
    const double before = rss_mib();
    ember::Pt2Archive a = ember::read_pt2(resnet_path(), options);
    benchmark::DoNotOptimize(a.models.size());
    rss_growth = rss_mib() - before;
  }
  state.counters["rss_after_open_MiB"] = rss_growth;
  state.SetLabel(options.validate ? "with ir::validate" : "no validate");
}
BENCHMARK(BM_OpenMmap)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// Open, then read one byte per 4 KiB page of every weight.
void BM_OpenMmapTouchWeights(benchmark::State& state) {
  double open_growth = 0, touch_growth = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    const double before = rss_mib();
    ember::Pt2Archive a = ember::read_pt2(resnet_path(), {false, false});
    const double after_open = rss_mib();
    benchmark::DoNotOptimize(touch_weights(a));
    touch_growth = rss_mib() - before;
    open_growth = after_open - before;
    bytes = weight_bytes(a);
  }
  state.counters["rss_after_open_MiB"] = open_growth;
  state.counters["rss_after_touch_MiB"] = touch_growth;
  state.counters["weights_MiB"] = static_cast<double>(bytes) / (1024.0 * 1024.0);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_OpenMmapTouchWeights)->Unit(benchmark::kMillisecond);

// Side by side: read the whole file with std::ifstream, then parse from memory.
void BM_ReadWholeFileThenParse(benchmark::State& state) {
  double growth = 0;
  for (auto _ : state) {
    const double before = rss_mib();
    std::ifstream in(resnet_path(), std::ios::binary);
    in.seekg(0, std::ios::end);
    const size_t n = static_cast<size_t>(in.tellg());
    in.seekg(0);
    auto bytes = ember::Storage::allocate(n);
    in.read(reinterpret_cast<char*>(bytes->data()), static_cast<std::streamsize>(n));
    ember::Pt2Archive a = ember::read_pt2_from_memory(bytes, resnet_path(), {false, false});
    benchmark::DoNotOptimize(touch_weights(a));
    growth = rss_mib() - before;
  }
  state.counters["rss_whole_file_MiB"] = growth;
}
BENCHMARK(BM_ReadWholeFileThenParse)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
