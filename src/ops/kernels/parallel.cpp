#include "ops/kernels/parallel.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ember::ops {
namespace {

thread_local bool t_inside_parallel = false;

int default_threads() {
  if (const char* env = std::getenv("EMBER_NUM_THREADS")) {
    int v = std::atoi(env);
    if (v >= 1) return std::min(v, 256);
  }
  return std::min(available_cpus(), 64);
}

std::atomic<int> g_threads{0};

// Workers wait for a new generation, then claim chunk numbers until none are left.
class Pool {
 public:
  void run(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> call_lock(call_mutex_, std::try_to_lock);
    if (!call_lock.owns_lock()) {  // another thread is using the pool: run serially
      serial(n, fn);
      return;
    }
    ensure_workers(static_cast<int>(chunks) - 1);
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = &fn;
      n_ = n;
      chunks_ = chunks;
      next_ = 0;
      remaining_ = chunks;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return remaining_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  static void serial(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    bool was = t_inside_parallel;
    t_inside_parallel = true;
    try {
      fn(0, n);
    } catch (...) {
      t_inside_parallel = was;
      throw;
    }
    t_inside_parallel = was;
  }

 private:
  void ensure_workers(int count) {
    while (static_cast<int>(workers_.size()) < count) {
      workers_.push_back(start_thread([this] { loop(); }));
      workers_.back().detach();  // the pool lives until process exit
    }
  }

  void loop() {
    t_inside_parallel = true;
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
      }
      work();
    }
  }

  // Claims and runs chunks of the current job.
  void work() {
    bool was = t_inside_parallel;
    t_inside_parallel = true;
    for (;;) {
      const std::function<void(int64_t, int64_t)>* fn;
      int64_t c, n, chunks;
      {
        std::lock_guard<std::mutex> lk(m_);
        if (fn_ == nullptr || next_ >= chunks_) break;
        c = next_++;
        fn = fn_;
        n = n_;
        chunks = chunks_;
      }
      int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
      std::exception_ptr err;
      try {
        (*fn)(begin, end);
      } catch (...) {
        err = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(m_);
      if (err && !error_) error_ = err;
      if (--remaining_ == 0) done_cv_.notify_all();
    }
    t_inside_parallel = was;
  }

  std::mutex call_mutex_;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunks_ = 0, remaining_ = 0;
  int64_t next_ = 0;  // next unclaimed chunk (guarded by m_)
  uint64_t generation_ = 0;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: detached workers may still wait on it at exit
  return *p;
}

}  // namespace

int available_cpus() {
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

std::thread start_thread(std::function<void()> fn) {
#ifdef __linux__
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  const int cpu = sched_getcpu();
  if (cpu >= 0 && cpu < CPU_SETSIZE &&
      pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed) == 0 &&
      CPU_ISSET(cpu, &allowed) && CPU_COUNT(&allowed) > 1) {
    // The thread waits until it has been moved off this CPU, then takes the full set back.
    auto moved = std::make_shared<std::atomic<bool>>(false);
    std::thread t([fn = std::move(fn), allowed, moved] {
      moved->wait(false);
      (void)pthread_setaffinity_np(pthread_self(), sizeof(allowed), &allowed);
      fn();
    });
    cpu_set_t others = allowed;
    CPU_CLR(cpu, &others);
    (void)pthread_setaffinity_np(t.native_handle(), sizeof(others), &others);  // best effort
    moved->store(true);
    moved->notify_one();
    return t;
  }
#endif
  return std::thread(std::move(fn));
}

int num_threads() {
  int t = g_threads.load();
  if (t == 0) {
    t = default_threads();
    g_threads.store(t);
  }
  return t;
}

void set_num_threads(int n) { g_threads.store(std::clamp(n, 1, 256)); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t chunks = std::min<int64_t>(num_threads(), (n + grain - 1) / grain);
  if (chunks <= 1 || t_inside_parallel) {
    fn(0, n);
    return;
  }
  pool().run(n, chunks, fn);
}

}  // namespace ember::ops
