#include "backends/cpu/winograd.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "ember/error.h"
#include "ember/format.h"

namespace ember::cpu {

namespace {

using dnnl::memory;

constexpr int64_t kBlock = 8;  // channels per nChw8c block = floats per AVX2 register
constexpr int kTile = 4;       // F(2x2, 3x3): input tile edge (2x2 outputs of a 3x3 filter)
constexpr int kTile4 = 6;      // F(4x4, 3x3): input tile edge (4x4 outputs of a 3x3 filter)
constexpr int kTaps = 9;  // a 3x3 filter
constexpr size_t kAlign = 64;
// Bytes of V and M per block of tiles (see WinogradExec), and the fewest tiles per block.
constexpr int64_t kBlockBytes = int64_t{4} << 20;
constexpr int64_t kMinBlockTiles = 16;
// The compact form transforms its filters a chunk of output channels at a time, each chunk of
// U at most this many bytes: the scratch stays bounded (a whole layer's U is 16 MiB at 512 x
// 512 channels) and the matmul reads a chunk the transform has just written. Smaller chunks
// measured slower where they split a layer (256 x 256 channels: 1 MiB chunks 0.70 ms, one
// 4 MiB chunk 0.61 ms; the batched matmul runs less efficiently on fewer columns), larger
// ones slower at 512 x 512 (one 16 MiB chunk 1.99 ms, four of 4 MiB 1.46 ms).
constexpr int64_t kChunkBytes = int64_t{4} << 20;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Where 8-channel vectors lie in an image tensor: element (n, block of 8 channels cb, pixel p)
// at n * image + cb * block + p * pixel, channel c % 8 next to it. nChw8c: pixel 8, block
// H * W * 8; nhwc: pixel C, block 8. The transforms read and write both with the same code.
struct VectorStrides {
  int64_t image, block, pixel;
};
VectorStrides vector_strides(int64_t channels, int64_t pixels, bool nhwc) {
  return nhwc ? VectorStrides{pixels * channels, kBlock, channels} : VectorStrides{pixels * channels, pixels * kBlock, kBlock};
}

// Geometry of one run, from the value dims.
struct Geometry {
  int64_t n, c, h, w, k, oh, ow;
  int64_t pad_t, pad_l;
  int64_t tiles_h, tiles_w, tiles;  // tiles = n * tiles_h * tiles_w
  int64_t positions;                  // input tile elements: 16 (F(2x2, 3x3)) or 36 (F(4x4, 3x3))
  VectorStrides src, dst;
};

struct PostOp {
  enum Kind { kRelu, kSum } kind;
  float scale = 1.f;
  int value = -1;
};

// Image and tile row / column of tile t.
struct TileAt {
  int64_t n, th, tw;
};
TileAt tile_at(const Geometry& g, int64_t t) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  return {t / per_image, (t % per_image) / g.tiles_w, t % g.tiles_w};
}

// One output vector (8 channels at element offset `off` of dst): the post-ops in
// order, then the store. A sum operand is read before the store: it may share the
// destination's bytes.
__attribute__((target("avx2,fma"))) inline void store_output(__m256 y, int64_t off, const std::vector<PostOp>& post_ops,
                                                              const std::vector<const float*>& operands, float* dst) {
  for (size_t p = 0; p < post_ops.size(); ++p) {
    if (post_ops[p].kind == PostOp::kRelu)
      y = _mm256_max_ps(y, _mm256_setzero_ps());
    else
      y = _mm256_fmadd_ps(_mm256_set1_ps(post_ops[p].scale), _mm256_loadu_ps(operands[p] + off), y);
  }
  _mm256_storeu_ps(dst + off, y);
}

// The 1-D transforms of F(kOut x kOut, 3x3), applied to rows and then columns of a tile:
//   bt: r = Bt d for kIn vectors d (kIn = kOut + 2);
//   at: y = At m for kIn vectors m (kOut results);
//   g:  u = G g for three vectors g (kIn results).
template <int kOut>
struct Transforms;

// F(2x2, 3x3): 4x4 input tiles, 2x2 output tiles; the matrices hold only 0, +-1 and +-1/2.
template <>
struct Transforms<2> {
  static constexpr int kIn = kTile;
  __attribute__((target("avx2,fma"))) static void bt(const __m256* d, __m256* r) {
    r[0] = _mm256_sub_ps(d[0], d[2]);
    r[1] = _mm256_add_ps(d[1], d[2]);
    r[2] = _mm256_sub_ps(d[2], d[1]);
    r[3] = _mm256_sub_ps(d[1], d[3]);
  }
  __attribute__((target("avx2,fma"))) static void at(const __m256* m, __m256* y) {
    y[0] = _mm256_add_ps(_mm256_add_ps(m[0], m[1]), m[2]);
    y[1] = _mm256_sub_ps(_mm256_sub_ps(m[1], m[2]), m[3]);
  }
  __attribute__((target("avx2,fma"))) static void g(const __m256* g, __m256* u) {
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 outer = _mm256_add_ps(g[0], g[2]);
    u[0] = g[0];
    u[1] = _mm256_mul_ps(half, _mm256_add_ps(outer, g[1]));
    u[2] = _mm256_mul_ps(half, _mm256_sub_ps(outer, g[1]));
    u[3] = g[2];
  }
};

// F(4x4, 3x3): 6x6 input tiles, 4x4 output tiles (Lavin and Gray's points 0, +-1, +-2).
//   Bt = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   G  = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//   At = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
template <>
struct Transforms<4> {
  static constexpr int kIn = kTile4;
  __attribute__((target("avx2,fma"))) static void bt(const __m256* d, __m256* r) {
    const __m256 two = _mm256_set1_ps(2.f), four = _mm256_set1_ps(4.f), five = _mm256_set1_ps(5.f);
    const __m256 t1 = _mm256_fnmadd_ps(four, d[2], d[4]);  // d4 - 4 d2
    const __m256 t2 = _mm256_fnmadd_ps(four, d[1], d[3]);  // d3 - 4 d1
    const __m256 t3 = _mm256_sub_ps(d[4], d[2]);
    const __m256 t4 = _mm256_mul_ps(two, _mm256_sub_ps(d[3], d[1]));
    r[0] = _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2], d[4]));
    r[1] = _mm256_add_ps(t1, t2);
    r[2] = _mm256_sub_ps(t1, t2);
    r[3] = _mm256_add_ps(t3, t4);
    r[4] = _mm256_sub_ps(t3, t4);
    r[5] = _mm256_fmadd_ps(four, d[1], _mm256_fnmadd_ps(five, d[3], d[5]));
  }
  __attribute__((target("avx2,fma"))) static void at(const __m256* m, __m256* y) {
    const __m256 two = _mm256_set1_ps(2.f), four = _mm256_set1_ps(4.f), eight = _mm256_set1_ps(8.f);
    const __m256 a = _mm256_add_ps(m[1], m[2]), b = _mm256_sub_ps(m[1], m[2]);
    const __m256 c = _mm256_add_ps(m[3], m[4]), d = _mm256_sub_ps(m[3], m[4]);
    y[0] = _mm256_add_ps(_mm256_add_ps(m[0], a), c);
    y[1] = _mm256_fmadd_ps(two, d, b);
    y[2] = _mm256_fmadd_ps(four, c, a);
    y[3] = _mm256_add_ps(_mm256_fmadd_ps(eight, d, b), m[5]);
  }
  __attribute__((target("avx2,fma"))) static void g(const __m256* g, __m256* u) {
    const __m256 quarter = _mm256_set1_ps(0.25f), sixth = _mm256_set1_ps(1.f / 6.f);
    const __m256 twelfth = _mm256_set1_ps(1.f / 12.f), twentyfourth = _mm256_set1_ps(1.f / 24.f);
    const __m256 outer = _mm256_add_ps(g[0], g[2]);
    const __m256 q = _mm256_fmadd_ps(twentyfourth, g[0], _mm256_mul_ps(sixth, g[2]));
    const __m256 r = _mm256_mul_ps(twelfth, g[1]);
    u[0] = _mm256_mul_ps(quarter, g[0]);
    u[1] = _mm256_mul_ps(sixth, _mm256_sub_ps(_mm256_setzero_ps(), _mm256_add_ps(outer, g[1])));
    u[2] = _mm256_mul_ps(sixth, _mm256_sub_ps(g[1], outer));
    u[3] = _mm256_add_ps(q, r);
    u[4] = _mm256_sub_ps(q, r);
    u[5] = g[2];
  }
};

// V[pos][i][c] = (Bt d B)[pos] for tile t, the i-th of a block of `block` tiles, channel block
// `cb`; kIn x kIn positions.
template <int kOut>
__attribute__((target("avx2,fma"))) void input_transform(const float* src, float* v, const Geometry& g, int64_t t,
                                                         int64_t i_block, int64_t block, int64_t cb) {
  using T = Transforms<kOut>;
  constexpr int kIn = T::kIn;
  const auto [n, th, tw] = tile_at(g, t);
  const int64_t h0 = th * kOut - g.pad_t, w0 = tw * kOut - g.pad_l;
  const float* base = src + n * g.src.image + cb * g.src.block;
  const bool inside = h0 >= 0 && h0 + kIn <= g.h && w0 >= 0 && w0 + kIn <= g.w;
  __m256 e[kIn][kIn];  // d B, row by row
  for (int i = 0; i < kIn; ++i) {
    __m256 d[kIn];
    const int64_t hh = h0 + i;
    for (int j = 0; j < kIn; ++j) {
      const int64_t ww = w0 + j;
      d[j] = inside || (hh >= 0 && hh < g.h && ww >= 0 && ww < g.w) ? _mm256_loadu_ps(base + (hh * g.w + ww) * g.src.pixel)
                                                                      : _mm256_setzero_ps();
    }
    T::bt(d, e[i]);
  }
  float* out = v + i_block * g.c + cb * kBlock;
  const int64_t pos_stride = block * g.c;
  for (int j = 0; j < kIn; ++j) {  // Bt (d B), column by column
    __m256 col[kIn], r[kIn];
    for (int i = 0; i < kIn; ++i) col[i] = e[i][j];
    T::bt(col, r);
    for (int i = 0; i < kIn; ++i) _mm256_storeu_ps(out + (i * kIn + j) * pos_stride, r[i]);
  }
}

// dst tile = At M A + bias, then the post-ops, for tile t (the i-th of a block of `block`
// tiles in M) and output channel block kb. M is stored in chunks of kc output channels, each
// [kIn * kIn][block][kc] (kc = K: one chunk).
template <int kOut>
__attribute__((target("avx2,fma"))) void output_transform(const float* m, const float* bias,
                                                          const std::vector<PostOp>& post_ops,
                                                          const std::vector<const float*>& operands, float* dst,
                                                          const Geometry& g, int64_t t, int64_t i_block,
                                                          int64_t block, int64_t kc, int64_t kb) {
  using T = Transforms<kOut>;
  constexpr int kIn = T::kIn;
  const auto [n, th, tw] = tile_at(g, t);
  const int64_t k = kb * kBlock, chunk = k / kc;
  const float* in = m + chunk * kIn * kIn * block * kc + i_block * kc + (k - chunk * kc);
  const int64_t pos_stride = block * kc;
  __m256 s[kIn][kOut];  // M A, row by row
  for (int i = 0; i < kIn; ++i) {
    __m256 row[kIn];
    for (int j = 0; j < kIn; ++j) row[j] = _mm256_loadu_ps(in + (i * kIn + j) * pos_stride);
    T::at(row, s[i]);
  }
  const __m256 b = bias ? _mm256_loadu_ps(bias + kb * kBlock) : _mm256_setzero_ps();
  for (int j = 0; j < kOut; ++j) {  // At (M A), column by column; partial tiles at the edges cut
    const int64_t ow = tw * kOut + j;
    if (ow >= g.ow) break;
    __m256 col[kIn], y[kOut];
    for (int i = 0; i < kIn; ++i) col[i] = s[i][j];
    T::at(col, y);
    for (int i = 0; i < kOut; ++i) {
      const int64_t oh = th * kOut + i;
      if (oh >= g.oh) break;
      const int64_t off = n * g.dst.image + kb * g.dst.block + (oh * g.ow + ow) * g.dst.pixel;
      store_output(_mm256_add_ps(y[i], b), off, post_ops, operands, dst);
    }
  }
}

// U[pos][c][k..k+8) = (G g Gt)[pos] from filters stored as g[9][C][K] (tap-major), for
// input channel c and output channels [k, k + 8): the per-run transform of the compact form,
// into a chunk of U laid out [kIn * kIn][C][kc] whose column 0 is output channel k0.
template <int kOut>
__attribute__((target("avx2,fma"))) void filter_transform(const float* g9, float* u, int64_t c_n, int64_t k_n,
                                                          int64_t kc, int64_t k0, int64_t c, int64_t k) {
  using T = Transforms<kOut>;
  constexpr int kIn = T::kIn;
  const int64_t tap_stride = c_n * k_n;
  const float* in = g9 + c * k_n + k;
  __m256 t[kIn][3];  // G g, column by column
  for (int j = 0; j < 3; ++j) {
    __m256 col[3], r[kIn];
    for (int i = 0; i < 3; ++i) col[i] = _mm256_loadu_ps(in + (i * 3 + j) * tap_stride);
    T::g(col, r);
    for (int i = 0; i < kIn; ++i) t[i][j] = r[i];
  }
  const int64_t pos_stride = c_n * kc;
  float* out = u + c * kc + (k - k0);
  for (int i = 0; i < kIn; ++i) {  // (G g) Gt, row by row
    __m256 r[kIn];
    T::g(t[i], r);
    for (int j = 0; j < kIn; ++j) _mm256_storeu_ps(out + (i * kIn + j) * pos_stride, r[j]);
  }
}

// Output channels per chunk of the compact form: the largest multiple of 8 that divides K and
// keeps a chunk of U ([positions, C, kc]) within kChunkBytes, at least 8.
int64_t compact_chunk(int64_t positions, int64_t c_n, int64_t k_n) {
  const int64_t fit = std::max<int64_t>(kBlock, kChunkBytes / (positions * c_n * static_cast<int64_t>(sizeof(float))));
  int64_t kc = kBlock;
  for (int64_t d = kBlock; d <= std::min(fit, k_n); d += kBlock)
    if (k_n % d == 0) kc = d;
  return kc;
}

class WinogradExec final : public StepExec {
 public:
  WinogradExec(const PlanStep& s, const ExecEnv& env) : in_(s.inputs.at(0)), out_(s.outputs.at(0)) {
    const Plan& plan = *env.plan;
    const Shape& xd = env.dims.at(in_);
    const Shape& yd = env.dims.at(out_);
    EMBER_CHECK(winograd_supported_on_host(), ErrorCode::kIncompatibleTarget,
                "the Winograd kernel needs AVX2 and FMA, which this host lacks");
    EMBER_CHECK(xd.size() == 4 && yd.size() == 4 && xd[0] == yd[0] && xd[1] % kBlock == 0 && yd[1] % kBlock == 0,
                ErrorCode::kCorrupt, "expected source [N, C, H, W] and destination [N, K, OH, OW] with C and K ",
                "multiples of 8, found ", shape_str(xd), " and ", shape_str(yd));
    EMBER_CHECK(s.pad_l.size() == 2 && s.pad_r.size() == 2, ErrorCode::kCorrupt,
                "pad_l / pad_r: expected 2 entries each, found ", s.pad_l.size(), " and ", s.pad_r.size());
    EMBER_CHECK(s.tile == 2 || s.tile == 4, ErrorCode::kCorrupt, "tile: expected 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3)), found ",
                s.tile);
    tile_ = s.tile;
    const int64_t positions = (tile_ + 2) * (tile_ + 2);
    g_ = {xd[0], xd[1], xd[2], xd[3], yd[1], yd[2], yd[3], s.pad_l[0], s.pad_l[1], 0, 0, 0, positions, {}, {}};
    EMBER_CHECK(g_.oh == g_.h + s.pad_l[0] + s.pad_r[0] - 2 && g_.ow == g_.w + s.pad_l[1] + s.pad_r[1] - 2 &&
                    g_.oh > 0 && g_.ow > 0,
                ErrorCode::kCorrupt, "destination ", shape_str(yd), " does not match a 3x3 stride-1 convolution of ",
                shape_str(xd), " with padding ", shape_str(s.pad_l), "/", shape_str(s.pad_r));
    const bool nhwc = env.descs.at(in_) == winograd_layout(xd, true);
    EMBER_CHECK((nhwc || env.descs.at(in_) == winograd_layout(xd, false)) && env.descs.at(out_) == winograd_layout(yd, nhwc),
                ErrorCode::kCorrupt, "source and destination must both be in the nChw8c layout or both in nhwc");
    g_.src = vector_strides(g_.c, g_.h * g_.w, nhwc);
    g_.dst = vector_strides(g_.k, g_.oh * g_.ow, nhwc);
    layout_ = nhwc ? "nhwc" : "nChw8c";
    g_.tiles_h = (g_.oh + tile_ - 1) / tile_;
    g_.tiles_w = (g_.ow + tile_ - 1) / tile_;
    g_.tiles = g_.n * g_.tiles_h * g_.tiles_w;

    EMBER_CHECK(s.blobs.size() == 2 && s.blobs[0] >= 0, ErrorCode::kCorrupt, "expected blobs {U|g, bias|-1}");
    const PlanBlob& u = plan.blobs.at(s.blobs[0]);
    compact_ = u.dims == Shape({kTaps, g_.c, g_.k});
    EMBER_CHECK(u.dtype == DType::kFloat32 && (compact_ || u.dims == Shape({positions, g_.c, g_.k})),
                ErrorCode::kCorrupt, "weights: expected float32 [", positions, ", ", g_.c, ", ", g_.k,
                "] (transformed) or [9, ", g_.c, ", ", g_.k, "] (filters), found ", dtype_name(u.dtype), " ",
                shape_str(u.dims));
    u_ = reinterpret_cast<const float*>(env.blob_ptr(s.blobs[0]));
    if (s.blobs[1] >= 0) {
      const PlanBlob& b = plan.blobs.at(s.blobs[1]);
      EMBER_CHECK(b.dtype == DType::kFloat32 && b.dims == Shape({g_.k}), ErrorCode::kCorrupt,
                  "bias: expected float32 [", g_.k, "], found ", dtype_name(b.dtype), " ", shape_str(b.dims));
      bias_ = reinterpret_cast<const float*>(env.blob_ptr(s.blobs[1]));
    }
    for (const PlanPostOp& p : s.post_ops) {
      if (p.kind == "eltwise" && p.alg == "relu" && p.alpha == 0.f) {
        post_ops_.push_back({PostOp::kRelu, 1.f, -1});
      } else if (p.kind == "sum") {
        EMBER_CHECK(p.value >= 0 && env.dims.at(p.value) == yd && env.descs.at(p.value) == env.descs.at(out_),
                    ErrorCode::kCorrupt, "sum operand ", p.value, " must have the destination's shape and layout");
        post_ops_.push_back({PostOp::kSum, p.scale, p.value});
      } else {
        fail(ErrorCode::kCorrupt, "post-op ", p.kind, p.alg.empty() ? "" : cat(" ", p.alg),
             " is not supported by the Winograd kernel (only relu and sum)");
      }
    }

    // Tiles go through in blocks whose V and M fit kBlockBytes (cache-sized, and the scratch
    // stays bounded whatever the batch): per block, M[16, b, K] = V[16, b, C] x U[16, C, K],
    // one oneDNN batched matmul per chunk of kc output channels (one primitive for full
    // blocks, one for the last). The stored form is one chunk (kc = K); the compact form
    // transforms each chunk's filters right before its matmul (compact_chunk).
    const int64_t per_tile = positions * (g_.c + g_.k) * static_cast<int64_t>(sizeof(float));
    block_ = std::min(std::max(kBlockBytes / per_tile, kMinBlockTiles), std::max<int64_t>(g_.tiles, 1));
    kc_ = compact_ ? compact_chunk(positions, g_.c, g_.k) : g_.k;
    u_desc_ = memory::desc({positions, g_.c, kc_}, memory::data_type::f32, memory::format_tag::abc);
    size_t pad_bytes = 0;
    full_ = make_matmul(block_, &pad_bytes);
    if (g_.tiles % block_ != 0) tail_ = make_matmul(g_.tiles % block_, &pad_bytes);
    // Scratch: [a chunk of U (compact form only)] V M [matmul scratchpad].
    v_offset_ = compact_ ? align_up(static_cast<size_t>(positions * g_.c * kc_) * sizeof(float)) : 0;
    m_offset_ = v_offset_ + align_up(static_cast<size_t>(positions * block_ * g_.c) * sizeof(float));
    pad_offset_ = m_offset_ + align_up(static_cast<size_t>(positions * block_ * g_.k) * sizeof(float));
    scratch_bytes = pad_offset_ + align_up(pad_bytes);
    impl = cat("winograd_", tile_, "x", tile_, "_3x3:avx2:", layout_, "+", compact_ ? "per_run_filter_transform+" : "",
               full_.impl);
  }

  void run(RunState& st) const override {
    const float* src = reinterpret_cast<const float*>(st.ptr.at(in_));
    float* dst = reinterpret_cast<float*>(st.ptr.at(out_));
    float* v = reinterpret_cast<float*>(st.scratch + v_offset_);
    float* m = reinterpret_cast<float*>(st.scratch + m_offset_);
    std::vector<const float*> operands(post_ops_.size(), nullptr);
    for (size_t p = 0; p < post_ops_.size(); ++p)
      if (post_ops_[p].kind == PostOp::kSum) operands[p] = reinterpret_cast<const float*>(st.ptr.at(post_ops_[p].value));
    const Geometry& g = g_;
    const int64_t cblocks = g.c / kBlock, kblocks = g.k / kBlock, kc = kc_, chunk_blocks = kc_ / kBlock;
    const dnnl::engine& eng = cpu_engine();
    float* u_run = reinterpret_cast<float*>(st.scratch);  // compact form: this chunk's U
    for (int64_t first = 0; first < g.tiles; first += block_) {
      const int64_t b = std::min(block_, g.tiles - first);
      const Matmul& mm = b == block_ ? full_ : tail_;

      const auto in_transform = tile_ == 4 ? input_transform<4> : input_transform<2>;
#pragma omp parallel for schedule(static)
      for (int64_t item = 0; item < b * cblocks; ++item)
        in_transform(src, v, g, first + item / cblocks, item / cblocks, b, item % cblocks);

      memory v_mem(mm.v, eng, v);
      for (int64_t k0 = 0; k0 < g.k; k0 += kc) {
        const float* u = compact_ ? u_run : u_;
        // The compact form transforms each chunk before its matmul; one chunk (kc = K) is
        // transformed once per run and stays in the scratch for every block of tiles.
        if (compact_ && (kc < g.k || first == 0)) {
          const auto transform = tile_ == 4 ? filter_transform<4> : filter_transform<2>;
#pragma omp parallel for schedule(static)
          for (int64_t item = 0; item < g.c * chunk_blocks; ++item)
            transform(u_, u_run, g.c, g.k, kc, k0, item / chunk_blocks, k0 + (item % chunk_blocks) * kBlock);
        }
        std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, v_mem},
                                                {DNNL_ARG_WEIGHTS, memory(u_desc_, eng, const_cast<float*>(u))},
                                                {DNNL_ARG_DST, memory(mm.m, eng, m + k0 * g.positions * b)}};
        if (mm.pad.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, memory(mm.pad, eng, st.scratch + pad_offset_));
        mm.prim.execute(*st.stream, args);
        st.stream->wait();
      }

      const auto out_transform = tile_ == 4 ? output_transform<4> : output_transform<2>;
#pragma omp parallel for schedule(static)
      for (int64_t item = 0; item < b * kblocks; ++item)
        out_transform(m, bias_, post_ops_, operands, dst, g, first + item / kblocks, item / kblocks, b, kc,
                      item % kblocks);
    }
  }

 private:
  struct Matmul {
    memory::desc v, m, pad;
    dnnl::matmul prim;
    std::string impl;
  };
  // The batched matmul of a block of `tiles` tiles and a chunk of kc_ output channels; raises
  // *pad_bytes to its scratchpad size.
  Matmul make_matmul(int64_t tiles, size_t* pad_bytes) const {
    const auto f = memory::data_type::f32;
    const auto abc = memory::format_tag::abc;
    Matmul mm;
    mm.v = memory::desc({g_.positions, tiles, g_.c}, f, abc);
    mm.m = memory::desc({g_.positions, tiles, kc_}, f, abc);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(mm.v, u_desc_, mm.m), attr, cpu_engine());
    mm.prim = dnnl::matmul(pd);
    mm.pad = pd.scratchpad_desc();
    mm.impl = pd.impl_info_str();
    *pad_bytes = std::max(*pad_bytes, mm.pad.get_size());
    return mm;
  }

  int in_, out_;
  int64_t tile_ = 2;  // output tile edge: 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3))
  Geometry g_{};
  const char* layout_ = "";
  const float* u_ = nullptr;  // U [16, C, K], or with compact_ the filters g [9, C, K]
  bool compact_ = false;
  const float* bias_ = nullptr;
  std::vector<PostOp> post_ops_;
  int64_t block_ = 1;  // tiles per block
  int64_t kc_ = 0;     // output channels per chunk of U and M (the stored form: K)
  memory::desc u_desc_;
  Matmul full_, tail_;
  size_t v_offset_ = 0, m_offset_ = 0, pad_offset_ = 0;
};

}  // namespace

bool winograd_supported_on_host() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool winograd_fits(const Shape& src, const Shape& weight, int64_t groups, const std::vector<int64_t>& stride,
                   const std::vector<int64_t>& dilation, const std::vector<int64_t>& pad_l,
                   const std::vector<int64_t>& pad_r) {
  if (src.size() != 4 || weight.size() != 4 || groups != 1) return false;
  if (src[1] % kBlock != 0 || weight[0] % kBlock != 0 || weight[1] != src[1]) return false;
  if (weight[2] != 3 || weight[3] != 3) return false;
  if (stride != std::vector<int64_t>{1, 1} || dilation != std::vector<int64_t>{1, 1}) return false;
  if (pad_l.size() != 2 || pad_r.size() != 2) return false;
  for (int64_t p : pad_l)
    if (p < 0 || p > 1) return false;
  for (int64_t p : pad_r)
    if (p < 0 || p > 1) return false;
  return src[2] + pad_l[0] + pad_r[0] >= 3 && src[3] + pad_l[1] + pad_r[1] >= 3;
}

namespace {

// `weight` as a contiguous float32 [K, C, 3, 3] tensor (kInvalidArgument otherwise).
Tensor checked_filters(const Tensor& weight) {
  EMBER_CHECK(weight.dtype() == DType::kFloat32 && weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3,
              ErrorCode::kInvalidArgument, "Winograd weights: expected float32 [K, C, 3, 3], found ",
              weight.to_string());
  return weight.contiguous();
}

}  // namespace

Tensor winograd_transform_weights(const Tensor& weight, int tile) {
  EMBER_CHECK(tile == 2 || tile == 4, ErrorCode::kInvalidArgument, "Winograd output tile: expected 2 or 4, found ",
              tile);
  const Tensor w = checked_filters(weight);
  const int64_t k_n = w.size(0), c_n = w.size(1);
  static constexpr double G2[kTile][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr double G4[kTile4][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                           {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                           {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
  const int edge = tile + 2;
  const double(*G)[3] = tile == 4 ? G4 : G2;
  Tensor u = Tensor::empty({edge * edge, c_n, k_n}, DType::kFloat32);
  const float* src = w.data<float>();
  float* dst = u.data<float>();
  for (int64_t k = 0; k < k_n; ++k) {
    for (int64_t c = 0; c < c_n; ++c) {
      const float* g = src + (k * c_n + c) * 9;
      double gt[kTile4][3];  // G g
      for (int i = 0; i < edge; ++i)
        for (int b = 0; b < 3; ++b) gt[i][b] = G[i][0] * g[0 * 3 + b] + G[i][1] * g[1 * 3 + b] + G[i][2] * g[2 * 3 + b];
      for (int i = 0; i < edge; ++i)
        for (int j = 0; j < edge; ++j) {  // (G g) Gt
          const double x = gt[i][0] * G[j][0] + gt[i][1] * G[j][1] + gt[i][2] * G[j][2];
          dst[((i * edge + j) * c_n + c) * k_n + k] = static_cast<float>(x);
        }
    }
  }
  return u;
}

Tensor winograd_filters(const Tensor& weight) {
  const Tensor w = checked_filters(weight);
  const int64_t k_n = w.size(0), c_n = w.size(1);
  Tensor g = Tensor::empty({kTaps, c_n, k_n}, DType::kFloat32);
  const float* src = w.data<float>();
  float* dst = g.data<float>();
  for (int64_t k = 0; k < k_n; ++k)
    for (int64_t c = 0; c < c_n; ++c)
      for (int r = 0; r < kTaps; ++r) dst[(r * c_n + c) * k_n + k] = src[(k * c_n + c) * kTaps + r];
  return g;
}

memory::desc winograd_layout(const Shape& dims, bool nhwc) {
  return memory::desc(memory::dims(dims.begin(), dims.end()), memory::data_type::f32,
                      nhwc ? memory::format_tag::nhwc : memory::format_tag::nChw8c);
}

std::unique_ptr<StepExec> make_winograd_exec(const PlanStep& step, const ExecEnv& env) {
  return std::make_unique<WinogradExec>(step, env);
}

}  // namespace ember::cpu
