#include "backends/cpu/winograd.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "ember/error.h"
#include "ember/format.h"
#include "ember/target.h"

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

// Where vectors of `width` channels lie in an image tensor: vector (n, block of channels cb,
// pixel p) at n * image + cb * block + p * pixel, its channels next to each other. nChw8c
// (width 8 only): pixel 8, block H * W * 8; nhwc: pixel C, block `width`. The transforms read
// and write both with the same code.
struct VectorStrides {
  int64_t image, block, pixel;
};
VectorStrides vector_strides(int64_t channels, int64_t pixels, bool nhwc, int64_t width) {
  return nhwc ? VectorStrides{pixels * channels, width, channels} : VectorStrides{pixels * channels, pixels * kBlock, kBlock};
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

// The transforms, compiled twice: for AVX2 + FMA (8 floats a register) and for AVX-512
// (16). Each copy's functions carry their instruction set as a target attribute (the pragmas
// below apply it to every function up to the pop), so the rest of this file stays baseline
// x86-64 and runs anywhere; which copy runs is decided at kernel creation from the host.
namespace avx2 {
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
struct Vec {
  using T = __m256;
  static constexpr int64_t kWidth = 8;
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T fnmadd(T a, T b, T c) { return _mm256_fnmadd_ps(a, b, c); }
  static T set1(float f) { return _mm256_set1_ps(f); }
  static T zero() { return _mm256_setzero_ps(); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
};
#include "backends/cpu/winograd_transforms.inc"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
}  // namespace avx2

namespace avx512 {
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif
struct Vec {
  using T = __m512;
  static constexpr int64_t kWidth = 16;
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T fnmadd(T a, T b, T c) { return _mm512_fnmadd_ps(a, b, c); }
  static T set1(float f) { return _mm512_set1_ps(f); }
  static T zero() { return _mm512_setzero_ps(); }
  // (_mm512_max_ps itself trips GCC 12's -Wmaybe-uninitialized on its unused pass-through operand.)
  static T max(T a, T b) { return _mm512_maskz_max_ps(static_cast<__mmask16>(0xffff), a, b); }
};
#include "backends/cpu/winograd_transforms.inc"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
}  // namespace avx512

// One instruction set's transforms for one tile size.
struct Kernels {
  using Input = void (*)(const float*, float*, const Geometry&, int64_t, int64_t, int64_t, int64_t);
  using Output = void (*)(const float*, const float*, const std::vector<PostOp>&, const std::vector<const float*>&,
                          float*, const Geometry&, int64_t, int64_t, int64_t, int64_t, int64_t);
  using Filter = void (*)(const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
  Input input;
  Output output;
  Filter filter;
  int64_t width;    // floats per vector: channels per item of work
  const char* isa;  // for the kernel's description
};

// The transforms for output tile `tile` (2 or 4), 16 floats a register (AVX-512) or 8.
Kernels select_kernels(int64_t tile, bool avx512) {
  if (avx512)
    return tile == 4 ? Kernels{&avx512::input_transform<4>, &avx512::output_transform<4>, &avx512::filter_transform<4>,
                               avx512::Vec::kWidth, "avx512"}
                     : Kernels{&avx512::input_transform<2>, &avx512::output_transform<2>, &avx512::filter_transform<2>,
                               avx512::Vec::kWidth, "avx512"};
  return tile == 4 ? Kernels{&avx2::input_transform<4>, &avx2::output_transform<4>, &avx2::filter_transform<4>,
                             avx2::Vec::kWidth, "avx2"}
                   : Kernels{&avx2::input_transform<2>, &avx2::output_transform<2>, &avx2::filter_transform<2>,
                             avx2::Vec::kWidth, "avx2"};
}

// Output channels per chunk of the compact form: the largest multiple of the vector width
// that divides K and keeps a chunk of U ([positions, C, kc]) within kChunkBytes, at least one
// width.
int64_t compact_chunk(int64_t positions, int64_t c_n, int64_t k_n, int64_t width) {
  const int64_t fit = std::max<int64_t>(width, kChunkBytes / (positions * c_n * static_cast<int64_t>(sizeof(float))));
  int64_t kc = width;
  for (int64_t d = width; d <= std::min(fit, k_n); d += width)
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
    // 16 channels a vector where the host has AVX-512 and the layout allows it (nhwc, C and
    // K multiples of 16): the same outputs as 8 a vector, from half the instructions.
    k_ = select_kernels(tile_, nhwc && g_.c % 16 == 0 && g_.k % 16 == 0 && host_target().has_feature("avx512f"));
    g_.src = vector_strides(g_.c, g_.h * g_.w, nhwc, k_.width);
    g_.dst = vector_strides(g_.k, g_.oh * g_.ow, nhwc, k_.width);
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
    kc_ = compact_ ? compact_chunk(positions, g_.c, g_.k, k_.width) : g_.k;
    u_desc_ = memory::desc({positions, g_.c, kc_}, memory::data_type::f32, memory::format_tag::abc);
    size_t pad_bytes = 0;
    full_ = make_matmul(block_, &pad_bytes);
    if (g_.tiles % block_ != 0) tail_ = make_matmul(g_.tiles % block_, &pad_bytes);
    // Scratch: [a chunk of U (compact form only)] V M [matmul scratchpad].
    v_offset_ = compact_ ? align_up(static_cast<size_t>(positions * g_.c * kc_) * sizeof(float)) : 0;
    m_offset_ = v_offset_ + align_up(static_cast<size_t>(positions * block_ * g_.c) * sizeof(float));
    pad_offset_ = m_offset_ + align_up(static_cast<size_t>(positions * block_ * g_.k) * sizeof(float));
    scratch_bytes = pad_offset_ + align_up(pad_bytes);
    impl = cat("winograd_", tile_, "x", tile_, "_3x3:", k_.isa, ":", nhwc ? "nhwc" : "nChw8c", "+", compact_ ? "per_run_filter_transform+" : "",
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
    const int64_t width = k_.width, cblocks = g.c / width, kblocks = g.k / width, kc = kc_, chunk_blocks = kc_ / width;
    const dnnl::engine& eng = cpu_engine();
    float* u_run = reinterpret_cast<float*>(st.scratch);  // compact form: this chunk's U
    for (int64_t first = 0; first < g.tiles; first += block_) {
      const int64_t b = std::min(block_, g.tiles - first);
      const Matmul& mm = b == block_ ? full_ : tail_;

      const Kernels::Input in_transform = k_.input;
#pragma omp parallel for schedule(static)
      for (int64_t item = 0; item < b * cblocks; ++item)
        in_transform(src, v, g, first + item / cblocks, item / cblocks, b, item % cblocks);

      memory v_mem(mm.v, eng, v);
      for (int64_t k0 = 0; k0 < g.k; k0 += kc) {
        const float* u = compact_ ? u_run : u_;
        // The compact form transforms each chunk before its matmul; one chunk (kc = K) is
        // transformed once per run and stays in the scratch for every block of tiles.
        if (compact_ && (kc < g.k || first == 0)) {
          const Kernels::Filter transform = k_.filter;
#pragma omp parallel for schedule(static)
          for (int64_t item = 0; item < g.c * chunk_blocks; ++item)
            transform(u_, u_run, g.c, g.k, kc, k0, item / chunk_blocks, k0 + (item % chunk_blocks) * width);
        }
        std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, v_mem},
                                                {DNNL_ARG_WEIGHTS, memory(u_desc_, eng, const_cast<float*>(u))},
                                                {DNNL_ARG_DST, memory(mm.m, eng, m + k0 * g.positions * b)}};
        if (mm.pad.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, memory(mm.pad, eng, st.scratch + pad_offset_));
        mm.prim.execute(*st.stream, args);
        st.stream->wait();
      }

      const Kernels::Output out_transform = k_.output;
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
  Kernels k_{};
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
  const TargetDescriptor& host = host_target();
  return host.has_feature("avx2") && host.has_feature("fma");
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
