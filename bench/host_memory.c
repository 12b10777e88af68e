/* host_memory: what memory management costs on this host, the numbers behind Ember's
 * "heap populated ahead" at load (docs/cpu-backend.md, "Loading"; docs/performance.md).
 *
 *   host_memory [MIB] [ROUNDS]        (default 8 MiB, 3 rounds)
 *
 * Each round maps MIB MiB of fresh anonymous memory four times and reports, in microseconds:
 *   fault_4k:     writing one byte per 4 KiB page (one page fault per page),
 *   populate_4k:  madvise(MADV_POPULATE_WRITE) over the whole range (one system call),
 *   fault_huge:   writing one byte per 4 KiB page of a 2 MiB-aligned range with
 *                 MADV_HUGEPAGE (one fault per 2 MiB page where the host grants huge pages),
 *   populate_huge: the same range populated with one call,
 * and the per-page costs of the first two. Where fault_4k per page is many times
 * populate_4k per page (a paravirtualized guest, say), populating ahead pays. Prints one JSON
 * line per round.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* One measurement on `len` bytes of fresh anonymous memory, 2 MiB aligned, huge pages
 * requested if `huge`: touched page by page, or populated with one call (-1 where the kernel
 * refuses MADV_POPULATE_WRITE). Microseconds. */
static double measure(size_t len, int huge, int by_populate) {
  const size_t align = (size_t)2 << 20;
  char* raw = mmap(NULL, len + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  char* p = (char*)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
  madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  const double t = now_us();
  double us;
  if (by_populate) {
    us = madvise(p, len, MADV_POPULATE_WRITE) == 0 ? now_us() - t : -1;
  } else {
    for (size_t i = 0; i < len; i += 4096) p[i] = 1;
    us = now_us() - t;
  }
  munmap(raw, len + align);
  return us;
}

int main(int argc, char** argv) {
  const long mib = argc > 1 ? atol(argv[1]) : 8;
  const long rounds = argc > 2 ? atol(argv[2]) : 3;
  if (mib < 1 || mib > 4096 || rounds < 1 || rounds > 1000) {
    fprintf(stderr, "usage: %s [MIB 1..4096] [ROUNDS 1..1000]\n", argv[0]);
    return 2;
  }
  const size_t len = (size_t)mib << 20;
  const double pages = (double)(len / 4096);
  for (long r = 0; r < rounds; ++r) {
    const double fault_4k = measure(len, 0, 0);
    const double populate_4k = measure(len, 0, 1);
    const double fault_huge = measure(len, 1, 0);
    const double populate_huge = measure(len, 1, 1);
    printf("{\"mib\": %ld, \"fault_4k_us\": %.0f, \"populate_4k_us\": %.0f, \"fault_huge_us\": %.0f, "
           "\"populate_huge_us\": %.0f, \"fault_4k_us_per_page\": %.2f, \"populate_4k_us_per_page\": %.2f}\n",
           mib, fault_4k, populate_4k, fault_huge, populate_huge, fault_4k / pages,
           populate_4k < 0 ? -1.0 : populate_4k / pages);
  }
  return 0;
}
