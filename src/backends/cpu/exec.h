// Executing a plan: kernels instantiated for one concrete shape ("Prepared"), run on a
// per-call arena. Shared by the builder (which times candidate steps with exactly the
// kernels the runtime will create) and by Engine (load / run).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "backends/cpu/plan.h"
#include "ember/tensor.h"

namespace ember::cpu {

// The process-wide oneDNN CPU engine.
const dnnl::engine& cpu_engine();

// Everything a running step may touch.
struct RunState {
  dnnl::stream* stream = nullptr;
  std::vector<uint8_t*> ptr;  // per value id (nullptr: not placed)
  uint8_t* scratch = nullptr; // per-step temporary space (scratchpads, statistics)
};

class StepExec {
 public:
  virtual ~StepExec() = default;
  virtual void run(RunState& state) const = 0;
  size_t scratch_bytes = 0;  // temporary bytes the step needs during run()
  std::string impl;          // kernel name (oneDNN impl_info_str, "reference:<target>")
};

// What kernels of one concrete shape need to know.
struct ExecEnv {
  const Plan* plan = nullptr;
  std::vector<Shape> dims;                   // per value
  std::vector<dnnl::memory::desc> descs;     // per value (empty desc for !has_desc)
  std::map<std::string, int64_t> symbols;    // symbol values of this shape
  // Bytes of blob k (read-only; kernels never write weights).
  std::function<const uint8_t*(int blob)> blob_ptr;
  std::shared_ptr<const void> keepalive;     // keeps the blob bytes alive
};

// Creates the kernel of `step`. dnnl errors become ember::Error naming the step.
std::unique_ptr<StepExec> make_step_exec(const PlanStep& step, const ExecEnv& env);

// Kernels and memory layout for one concrete shape.
struct Prepared {
  ExecEnv env;
  std::vector<int64_t> offsets;  // per value (arena values)
  int64_t arena_size = 0;
  size_t scratch_bytes = 0;
  std::vector<std::unique_ptr<StepExec>> steps;
};

// Dims of every value for `symbols` (build dims with symbols substituted).
std::vector<Shape> value_dims(const Plan& plan, const std::map<std::string, int64_t>& symbols);
// Layouts and memory plan for `symbols`, no kernel yet (`steps` empty). Uses the stored descs
// and arena offsets when the shape is the build shape; otherwise relays the stored layouts out
// and re-plans the arena.
std::shared_ptr<Prepared> prepare_layout(const Plan& plan, const std::map<std::string, int64_t>& symbols,
                                         std::function<const uint8_t*(int)> blob_ptr,
                                         std::shared_ptr<const void> keepalive);

// Creates the kernel of every step of `p`, one step per call to step(), from any number of
// threads at once: each call takes the next step not yet taken and returns false once none is
// left. Kernel creation reads descriptors and weight addresses, never weight bytes. A step's
// error is recorded, not thrown; finish(), called once every caller of step() is done, installs
// the kernels in `p` (`p.steps`, `p.scratch_bytes`) or rethrows the first failing step's error.
// Threads other than the one that made `p` must first set the OpenMP thread count `p` is for
// (omp_set_num_threads): oneDNN sizes some kernels for the thread count at creation.
class KernelCreation {
 public:
  explicit KernelCreation(Prepared& p);
  KernelCreation(const KernelCreation&) = delete;
  KernelCreation& operator=(const KernelCreation&) = delete;

  bool step();
  // How many kernels there are; whether one is left for step() to create.
  size_t size() const { return execs_.size(); }
  bool pending() const { return next_.load() < execs_.size(); }
  void finish();

 private:
  Prepared& p_;
  std::vector<std::unique_ptr<StepExec>> execs_;
  std::vector<std::exception_ptr> errors_;
  // Each step's creation, for the debug log: when it started (from the constructor), how
  // long it took, on which thread.
  struct Timing {
    double at_ms = 0;
    double ms = 0;
    std::thread::id thread;
  };
  std::vector<Timing> times_;
  std::chrono::steady_clock::time_point start_;
  std::atomic<size_t> next_{0};
};

// prepare_layout + KernelCreation on the calling thread only.
std::shared_ptr<Prepared> prepare(const Plan& plan, const std::map<std::string, int64_t>& symbols,
                                  std::function<const uint8_t*(int)> blob_ptr, std::shared_ptr<const void> keepalive);

// Runs all steps. `inputs` / `outputs` point to the engine I/O buffers (plain, contiguous).
void execute(const Prepared& p, const std::vector<const uint8_t*>& inputs, const std::vector<uint8_t*>& outputs,
             uint8_t* arena, uint8_t* scratch);

// A run buffer (the arena, the kernel scratch) of `nbytes`, writable and 64-byte aligned.
// From 2 MiB up it is its own mapping, 2 MiB aligned and rounded up to whole 2 MiB pages,
// with transparent huge pages requested (madvise(MADV_HUGEPAGE); the host's THP policy
// decides): the first run then faults the buffer in 2 MiB at a time instead of 4 KiB at a
// time, and every run takes fewer TLB misses. Smaller buffers, or a refused mapping, come from
// Storage::allocate.
std::shared_ptr<Storage> allocate_run_buffer(size_t nbytes);

// Populates about `bytes` of the calling thread's malloc arena with one system call
// (madvise(MADV_POPULATE_WRITE)) and frees it again, so that the allocations that follow on
// this thread (the plan's parse, oneDNN's primitives and kernel objects) land on pages that
// are already mapped instead of taking one page fault per fresh 4 KiB page. Where a page fault
// is expensive (on a paravirtualized host, about 10-15 us against under 1 us per page populated
// in bulk) that is a large part of what a load spends outside oneDNN's code generation. glibc
// only: a block above the mmap threshold is freed with munmap, but freeing it raises glibc's
// dynamic mmap threshold to its size and the trim threshold to twice that (mallopt(3)), so a
// second block of the same size comes from the arena and stays in it once freed. So the block
// is allocated and freed once, then allocated again and populated. Where the thresholds were
// fixed with mallopt the populated block may go back to the system (wasted work, nothing
// else); before Linux 5.14 (no MADV_POPULATE_WRITE), with another C library or in a
// sanitizer build (which replaces malloc) nothing is populated. Sizes up to 16 MiB stay
// within glibc's dynamic range (32 MiB). Never changes memory contents; returns whether the
// populate call succeeded.
bool warm_allocator(size_t bytes) noexcept;
// Whether this build can populate at all (glibc's malloc, not replaced by a sanitizer, and
// MADV_POPULATE_WRITE known to the headers); the kernel may still refuse it.
bool warm_allocator_built() noexcept;

// ISA features an oneDNN implementation name implies on this host ("jit:avx2" -> avx, avx2, fma).
std::vector<std::string> isa_features_of_impl(const std::string& impl);

}  // namespace ember::cpu
