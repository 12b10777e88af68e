#include "ops/kernels/gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/kernels/parallel.h"

// On x86-64 with GCC, the block kernel is compiled for AVX-512, AVX2+FMA and baseline
// SSE2; the loader picks the best one the CPU supports.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define EMBER_GEMM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define EMBER_GEMM_CLONES
#endif

namespace ember::ops {
namespace {

constexpr int64_t kMR = 6;    // rows of the register tile
constexpr int64_t kNR = 16;   // columns of the register tile
constexpr int64_t kKC = 256;  // K slice
constexpr int64_t kMC = 96;   // rows of C per block (a multiple of kMR)
constexpr int64_t kNC = 256;  // columns of C per block (a multiple of kNR)

// Packs rows [i0, i0 + mc) x K slice [k0, k0 + kc) of A into strips of kMR rows:
// dst[strip][k][r], zero-padded past mc.
void pack_a(MatView A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  for (int64_t s = 0; s < mc; s += kMR) {
    int64_t rows = std::min(kMR, mc - s);
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = A.data + (i0 + s) * A.rs + (k0 + k) * A.cs;
      float* d = dst + k * kMR;
      for (int64_t r = 0; r < rows; ++r) d[r] = src[r * A.rs];
      for (int64_t r = rows; r < kMR; ++r) d[r] = 0.0f;
    }
    dst += kc * kMR;
  }
}

// Packs K slice [k0, k0 + kc) x columns [j0, j0 + nc) of B into strips of kNR columns:
// dst[strip][k][c], zero-padded past nc.
void pack_b(MatView B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t s = 0; s < nc; s += kNR) {
    int64_t cols = std::min(kNR, nc - s);
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B.data + (k0 + k) * B.rs + (j0 + s) * B.cs;
      float* d = dst + k * kNR;
      if (B.cs == 1) {
        std::memcpy(d, src, cols * sizeof(float));
      } else {
        for (int64_t c = 0; c < cols; ++c) d[c] = src[c * B.cs];
      }
      for (int64_t c = cols; c < kNR; ++c) d[c] = 0.0f;
    }
    dst += kc * kNR;
  }
}

// Eight floats as one GCC/Clang vector; the compiler maps it to one AVX register, two SSE
// registers, or NEON pairs, depending on the target of each clone.
typedef float v8f __attribute__((vector_size(32)));

// C block += / = alpha * packedA * packedB for one K slice. `first` says this is the first
// K slice, where beta is applied (beta == 0: C is overwritten without being read).
EMBER_GEMM_CLONES
void block_kernel(int64_t mc, int64_t nc, int64_t kc, const float* __restrict pa, const float* __restrict pb,
                  float alpha, float beta, bool first, float* C, int64_t ldc) {
  static_assert(kNR == 16, "the micro-kernel holds two 8-float vectors per row");
  for (int64_t js = 0; js < nc; js += kNR) {
    const float* b = pb + (js / kNR) * kc * kNR;
    int64_t cols = std::min(kNR, nc - js);
    for (int64_t is = 0; is < mc; is += kMR) {
      const float* a = pa + (is / kMR) * kc * kMR;
      int64_t rows = std::min(kMR, mc - is);
      // The kMR x kNR register tile: 12 vector accumulators.
      v8f c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {}, c30 = {}, c31 = {}, c40 = {}, c41 = {}, c50 = {},
          c51 = {};
      for (int64_t k = 0; k < kc; ++k) {
        v8f b0, b1;
        std::memcpy(&b0, b + k * kNR, sizeof(b0));
        std::memcpy(&b1, b + k * kNR + 8, sizeof(b1));
        const float* ak = a + k * kMR;
        v8f a0 = v8f{} + ak[0], a1 = v8f{} + ak[1], a2 = v8f{} + ak[2];
        c00 += a0 * b0, c01 += a0 * b1, c10 += a1 * b0, c11 += a1 * b1, c20 += a2 * b0, c21 += a2 * b1;
        v8f a3 = v8f{} + ak[3], a4 = v8f{} + ak[4], a5 = v8f{} + ak[5];
        c30 += a3 * b0, c31 += a3 * b1, c40 += a4 * b0, c41 += a4 * b1, c50 += a5 * b0, c51 += a5 * b1;
      }
      float acc[kMR][kNR];
      const v8f tile[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
      std::memcpy(acc, tile, sizeof(acc));
      for (int64_t r = 0; r < rows; ++r) {
        float* crow = C + (is + r) * ldc + js;
        if (!first || beta == 1.0f) {
          for (int64_t c = 0; c < cols; ++c) crow[c] += alpha * acc[r][c];
        } else if (beta == 0.0f) {
          for (int64_t c = 0; c < cols; ++c) crow[c] = alpha * acc[r][c];
        } else {
          for (int64_t c = 0; c < cols; ++c) crow[c] = beta * crow[c] + alpha * acc[r][c];
        }
      }
    }
  }
}

}  // namespace

void gemm(int64_t M, int64_t N, int64_t K, float alpha, MatView A, MatView B, float beta, float* C, int64_t ldc,
          bool parallel) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // empty sum: C = beta * C
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  int64_t mblocks = (M + kMC - 1) / kMC;
  int64_t nblocks = (N + kNC - 1) / kNC;
  // Each job owns one (row block, column block) of C and walks all K slices in order.
  auto job = [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> pa, pb;
    pa.resize(kMC * kKC);
    pb.resize(kKC * kNC);
    for (int64_t jb = begin; jb < end; ++jb) {
      int64_t i0 = (jb / nblocks) * kMC, j0 = (jb % nblocks) * kNC;
      int64_t mc = std::min(kMC, M - i0), nc = std::min(kNC, N - j0);
      for (int64_t k0 = 0; k0 < K; k0 += kKC) {
        int64_t kc = std::min(kKC, K - k0);
        pack_a(A, i0, mc, k0, kc, pa.data());
        pack_b(B, k0, kc, j0, nc, pb.data());
        block_kernel(mc, nc, kc, pa.data(), pb.data(), alpha, beta, k0 == 0, C + i0 * ldc + j0, ldc);
      }
    }
  };
  int64_t jobs = mblocks * nblocks;
  // Small products are not worth waking threads for.
  if (!parallel || jobs == 1 || M * N * K < (int64_t{1} << 16)) {
    job(0, jobs);
  } else {
    parallel_for(jobs, 1, job);
  }
}

}  // namespace ember::ops
