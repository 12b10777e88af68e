// The float32 GEMM shared by linear, addmm, mm, bmm, matmul and convolution.
//
// Operands are strided matrix views, so transposed or sliced inputs need no copy. The
// product is computed in blocks (K in fixed slices, packed panels of A and B, a register
// tiled micro-kernel that the compiler vectorizes); every element of C is accumulated in
// the same order whatever the thread count, so results are deterministic.
#pragma once

#include <cstdint>

namespace ember::ops {

// Element (i, j) of a matrix view is data[i * rs + j * cs].
struct MatView {
  const float* data = nullptr;
  int64_t rs = 0;
  int64_t cs = 0;
};

// C[M, N] = alpha * A[M, K] * B[K, N] + beta * C, where C is row-major with row stride
// ldc (unit column stride). With beta == 0, C is not read (it may hold garbage or NaN).
// `parallel` lets the GEMM split its blocks over the shared thread pool.
void gemm(int64_t M, int64_t N, int64_t K, float alpha, MatView A, MatView B, float beta, float* C, int64_t ldc,
          bool parallel = true);

}  // namespace ember::ops
