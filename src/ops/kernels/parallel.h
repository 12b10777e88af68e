// A tiny shared thread pool for reference kernels.
//
// parallel_for splits [0, n) into contiguous chunks and runs them on the pool's threads and
// the caller. Kernels give it only work whose per-index results do not depend on how the
// range is split, so results never depend on the thread count. Calls from inside a running
// chunk (nested parallelism) and concurrent calls from other threads run serially.
#pragma once

#include <cstdint>
#include <functional>

namespace ember::ops {

// CPUs this process may run on (its affinity mask: taskset, cpusets), at least 1; the
// hardware concurrency where the mask cannot be read.
int available_cpus();
// Threads used by parallel_for: EMBER_NUM_THREADS if set, else available_cpus() (at most 64).
int num_threads();
// Overrides the thread count (>= 1); for tests and benchmarks. Not thread-safe against
// concurrent parallel_for calls.
void set_num_threads(int n);

// Calls fn(begin, end) over disjoint chunks covering [0, n). Chunks hold at least `grain`
// indices (except possibly the last). Exceptions thrown by fn are rethrown in the caller
// (the first one; the other chunks still finish).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace ember::ops
