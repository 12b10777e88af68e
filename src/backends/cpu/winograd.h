// Winograd convolutions: a tactic for 3x3, stride-1, dense fp32 convolutions, in two sizes.
// F(2x2, 3x3): each 2x2 output tile costs 16 multiplications per input/output channel pair
// instead of 36 (2.25x fewer); F(4x4, 3x3): each 4x4 tile costs 36 instead of 144 (4x fewer),
// with larger transforms whose coefficients (up to 8, down to 1/24) round a little more. At
// the price of transforms in and out:
//
//   V = Bt d B    (4x4 / 6x6 input tile d, per input channel)              input transform
//   M = V U       (16 / 36 independent [tiles, C] x [C, K] products)      oneDNN batched matmul
//   Y = At M A    (2x2 / 4x4 output tile, per output channel)              output transform
//
// The sizes below are F(2x2, 3x3)'s; F(4x4, 3x3) has 36 positions where it has 16.
// U = G g Gt (g: the 3x3 filter) is either computed once at build time and stored in the
// engine in place of the filter, as [16, C, K] (16/9 of the filter bytes), or -- the compact
// form -- the filters are stored tap-major as [9, C, K] (the filter bytes, reordered) and U is
// computed at the start of every run into the step's scratch (vectorized over K; about
// 3 % of the step's arithmetic for a 3x3 layer, more memory traffic where C x K is large).
// Source and destination are both in oneDNN's nChw8c layout (8 channels innermost, one AVX2
// register; what oneDNN's AVX2 convolutions use) or both in nhwc (what its AVX-512 ones use),
// so a Winograd step between two of either needs no reorder. The transforms run 8 channels a
// register (AVX2 + FMA) or, on hosts with AVX-512 and in nhwc with C and K multiples of 16,
// 16 a register, with bitwise the same outputs. Bias, a residual sum and ReLU are
// applied in the output transform. The builder times this kernel against oneDNN's and keeps
// the faster (docs/cpu-backend.md).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "backends/cpu/exec.h"
#include "backends/cpu/plan.h"
#include "ember/tensor.h"

namespace ember::cpu {

// Whether this host can run the Winograd kernel (x86-64 with AVX2 and FMA).
bool winograd_supported_on_host();

// Whether a convolution fits the kernel: fp32 is the caller's check; here a 4-D input of
// `src` dims with channels a multiple of 8, a [K, C, 3, 3] filter with K a multiple of 8,
// one group, stride 1, no dilation, padding at most 1 on each side (pads: top, left, bottom,
// right in `pad_l` / `pad_r` order as in the plan).
bool winograd_fits(const Shape& src, const Shape& weight, int64_t groups, const std::vector<int64_t>& stride,
                   const std::vector<int64_t>& dilation, const std::vector<int64_t>& pad_l,
                   const std::vector<int64_t>& pad_r);

// U = G g Gt for every (k, c): [K, C, 3, 3] float32 -> [16, C, K] (output tile 2: F(2x2, 3x3))
// or [36, C, K] (output tile 4: F(4x4, 3x3)) float32, computed in double.
Tensor winograd_transform_weights(const Tensor& weight, int tile = 2);

// The compact form's filters: [K, C, 3, 3] float32 -> [9, C, K] float32 (tap-major).
Tensor winograd_filters(const Tensor& weight);

// A layout a Winograd step reads and writes: nChw8c, or nhwc (`nhwc`); source and
// destination share it.
dnnl::memory::desc winograd_layout(const Shape& dims, bool nhwc);

// The kernel of a "winograd" plan step (validates the step against `env`; kCorrupt names
// what does not fit).
std::unique_ptr<StepExec> make_winograd_exec(const PlanStep& step, const ExecEnv& env);

}  // namespace ember::cpu
