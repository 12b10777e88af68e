// A tiny shared thread pool for reference kernels.
//
// parallel_for splits [0, n) into contiguous chunks and runs them on the pool's threads and
// the caller. Kernels give it only work whose per-index results do not depend on how the
// range is split, so results never depend on the thread count. Calls from inside a running
// chunk (nested parallelism) and concurrent calls from other threads run serially.
#pragma once

#include <cstdint>
#include <functional>
#include <thread>

namespace ember::ops {

// CPUs this process may run on (its affinity mask: taskset, cpusets), at least 1; the
// hardware concurrency where the mask cannot be read.
int available_cpus();
// Threads used by parallel_for: EMBER_NUM_THREADS if set, else available_cpus() (at most 64).
int num_threads();
// Overrides the thread count (>= 1); for tests and benchmarks. Not thread-safe against
// concurrent parallel_for calls.
void set_num_threads(int n);

// Starts fn on a new thread, placed on a CPU other than the caller's when the process may run
// on several. Linux queues a new thread on its creator's CPU and moves it to an idle one only at
// the next load-balancing tick (up to 4 ms at HZ=250); a helper started for a few milliseconds
// of work would spend them sharing one CPU with its creator while another sits idle. The new
// thread is started with the caller's CPU set minus the caller's current CPU, and restores the
// full set as its first step, so an affinity the user set (taskset, cpusets) still holds.
// Throws std::system_error like std::thread when no thread can be started.
std::thread start_thread(std::function<void()> fn);

// Calls fn(begin, end) over disjoint chunks covering [0, n). Chunks hold at least `grain`
// indices (except possibly the last). Exceptions thrown by fn are rethrown in the caller
// (the first one; the other chunks still finish).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace ember::ops
