// Shape ops. Views (view, reshape when possible, permute, transpose, squeeze, unsqueeze,
// expand, slice, select, narrow, split, chunk, unbind, as_strided, ...) return tensors that
// share storage with their input, like PyTorch; copies (cat, stack, index_select, gather,
// index, repeat, flip, roll, constant_pad_nd) allocate.
#include <algorithm>
#include <limits>
#include <numeric>

#include "ops/kernels/ew_common.h"

namespace ember::ops::ew {
namespace {

// A view's geometry. In infer mode only `sizes` is meaningful (entries may be -1).
struct Geo {
  Shape sizes, strides;
  int64_t offset = 0;
};

Geo geo_of(const OpCall& c, const char* name = "self") {
  if (c.infer_mode()) {
    const TensorSpec& s = c.spec(name);
    return {s.sizes, Shape(s.sizes.size(), 0), 0};
  }
  const Tensor& t = c.tensor(name);
  return {t.sizes(), t.strides(), t.storage_offset()};
}

int64_t rank_of(const Geo& g) { return static_cast<int64_t>(g.sizes.size()); }

// Registers a view op given its geometry function.
using GeoFn = Geo (*)(const OpCall&, const Geo&);
void add_view(Registry& r, const char* target, const char* schema, GeoFn fn) {
  r.add(
      target, schema,
      [fn](const OpCall& c) { return std::vector<TensorSpec>{{c.spec("self").dtype, fn(c, geo_of(c)).sizes}}; },
      [fn](const OpCall& c) {
        const Tensor& self = c.tensor("self");
        Geo g = fn(c, geo_of(c));
        return std::vector<OpArg>{OpArg::of(self.as_strided(g.sizes, g.strides, g.offset))};
      });
}

// ---------------------------------------------------------------- view / reshape

// Strides that let `new_sizes` view a tensor of `sizes`/`strides` without a copy, if any
// (the rule of ATen's computeStride: each group of merged old dims must be contiguous).
std::optional<Shape> view_strides(const Shape& sizes, const Shape& strides, const Shape& new_sizes) {
  if (sizes.empty()) return Shape(new_sizes.size(), 1);
  const int64_t numel = std::accumulate(sizes.begin(), sizes.end(), int64_t{1}, std::multiplies<>());
  if (numel == 0) {
    if (sizes == new_sizes) return strides;
    return contiguous_strides(new_sizes);
  }
  Shape out(new_sizes.size(), 0);
  int64_t view_d = static_cast<int64_t>(new_sizes.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    tensor_numel *= sizes[d];
    if (d == 0 || (sizes[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_sizes[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_sizes[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

// Resolves a single -1 in `req` against the input sizes; unknown input sizes leave it -1.
Shape resolve_sizes(const OpCall& c, const Shape& in, const Shape& req) {
  Shape out = req;
  int64_t infer_at = -1, known = 1;
  for (size_t i = 0; i < req.size(); ++i) {
    if (req[i] == -1) {
      if (infer_at >= 0 && !c.infer_mode())
        fail_node(c, ErrorCode::kInvalidArgument, "only one dimension can be inferred in shape ", shape_str(req));
      infer_at = static_cast<int64_t>(i);
    } else if (req[i] < 0) {
      fail_node(c, ErrorCode::kInvalidArgument, "invalid size ", req[i], " in shape ", shape_str(req));
    } else {
      known *= req[i];
    }
  }
  if (!sizes_known(in)) return out;
  const int64_t numel = shape_numel(in);
  if (infer_at >= 0) {
    if (known == 0 || numel % known != 0)
      fail_node(c, ErrorCode::kShapeMismatch, "shape ", shape_str(req), " is invalid for an input of shape ",
                shape_str(in));
    out[infer_at] = numel / known;
  } else if (known != numel) {
    fail_node(c, ErrorCode::kShapeMismatch, "shape ", shape_str(req), " is invalid for an input of shape ",
              shape_str(in), " (", numel, " elements)");
  }
  return out;
}

Geo view_geo(const OpCall& c, const Geo& in, const Shape& req) {
  Geo g;
  g.sizes = resolve_sizes(c, in.sizes, req);
  g.offset = in.offset;
  if (c.infer_mode()) return g;
  std::optional<Shape> st = view_strides(in.sizes, in.strides, g.sizes);
  if (!st)
    fail_node(c, ErrorCode::kInvalidArgument, "view size ", shape_str(g.sizes),
              " is not compatible with the input's size and stride (", shape_str(in.sizes), ", ",
              shape_str(in.strides), "); use reshape");
  g.strides = *st;
  return g;
}

// reshape: a view when the strides allow one, else a contiguous copy.
Tensor reshape_tensor(const OpCall& c, const Tensor& self, const Shape& req) {
  Shape sizes = resolve_sizes(c, self.sizes(), req);
  if (std::optional<Shape> st = view_strides(self.sizes(), self.strides(), sizes))
    return self.as_strided(sizes, *st, self.storage_offset());
  return self.clone().view(sizes);
}

void add_reshape_like(Registry& r, const char* target, const char* schema,
                      Shape (*shape_fn)(const OpCall&, const Shape&)) {
  r.add(
      target, schema,
      [shape_fn](const OpCall& c) {
        const TensorSpec& s = c.spec("self");
        return std::vector<TensorSpec>{{s.dtype, resolve_sizes(c, s.sizes, shape_fn(c, s.sizes))}};
      },
      [shape_fn](const OpCall& c) {
        const Tensor& self = c.tensor("self");
        return std::vector<OpArg>{OpArg::of(reshape_tensor(c, self, shape_fn(c, self.sizes())))};
      });
}

Shape flatten_shape(const OpCall& c, const Shape& in) {
  const int64_t rank = static_cast<int64_t>(in.size());
  if (rank == 0) return {1};
  int64_t start = norm_dim(c, c.int_arg("start_dim"), rank);
  int64_t end = norm_dim(c, c.int_arg("end_dim"), rank);
  if (start > end) fail_node(c, ErrorCode::kInvalidArgument, "flatten() has invalid args: start_dim cannot come after end_dim");
  Shape out(in.begin(), in.begin() + start);
  int64_t prod = 1;
  for (int64_t d = start; d <= end; ++d) prod = (prod < 0 || in[d] < 0) ? -1 : prod * in[d];
  out.push_back(prod);
  out.insert(out.end(), in.begin() + end + 1, in.end());
  return out;
}

Shape unflatten_shape(const OpCall& c, const Shape& in) {
  const int64_t rank = static_cast<int64_t>(in.size());
  int64_t dim = norm_dim(c, c.int_arg("dim"), rank);
  std::vector<int64_t> sizes = c.int_list("sizes");
  if (sizes.empty()) fail_node(c, ErrorCode::kInvalidArgument, "unflatten: sizes must be non-empty");
  Shape piece = resolve_sizes(c, Shape{in[dim]}, sizes);
  Shape out(in.begin(), in.begin() + dim);
  out.insert(out.end(), piece.begin(), piece.end());
  out.insert(out.end(), in.begin() + dim + 1, in.end());
  return out;
}

// ---------------------------------------------------------------- dim-rearranging views

Geo permute_geo(const OpCall& c, const Geo& in) {
  std::vector<int64_t> dims = c.int_list("dims");
  const int64_t rank = rank_of(in);
  if (static_cast<int64_t>(dims.size()) != rank)
    fail_node(c, ErrorCode::kInvalidArgument, "permute: number of dims (", dims.size(), ") does not match the rank ",
              rank);
  Geo g{Shape(rank), Shape(rank), in.offset};
  std::vector<bool> seen(rank, false);
  for (int64_t i = 0; i < rank; ++i) {
    int64_t d = norm_dim(c, dims[i], rank);
    if (seen[d]) fail_node(c, ErrorCode::kInvalidArgument, "permute: dim ", d, " repeats");
    seen[d] = true;
    g.sizes[i] = in.sizes[d];
    g.strides[i] = in.strides[d];
  }
  return g;
}

Geo transpose_dims(const OpCall& c, const Geo& in, int64_t d0, int64_t d1) {
  Geo g = in;
  if (in.sizes.empty()) return g;
  d0 = norm_dim(c, d0, rank_of(in));
  d1 = norm_dim(c, d1, rank_of(in));
  std::swap(g.sizes[d0], g.sizes[d1]);
  std::swap(g.strides[d0], g.strides[d1]);
  return g;
}

Geo transpose_geo(const OpCall& c, const Geo& in) {
  return transpose_dims(c, in, c.int_arg("dim0"), c.int_arg("dim1"));
}

Geo t_geo(const OpCall& c, const Geo& in) {
  if (rank_of(in) > 2)
    fail_node(c, ErrorCode::kInvalidArgument, "t() expects a tensor with <= 2 dimensions, found ", rank_of(in));
  return rank_of(in) < 2 ? in : transpose_dims(c, in, 0, 1);
}

Geo squeeze_some(const Geo& in, const std::vector<bool>& which) {
  Geo g{{}, {}, in.offset};
  for (size_t d = 0; d < in.sizes.size(); ++d) {
    if (which[d] && in.sizes[d] == 1) continue;
    g.sizes.push_back(in.sizes[d]);
    g.strides.push_back(in.strides[d]);
  }
  return g;
}

Geo squeeze_geo(const OpCall& c, const Geo& in) { return squeeze_some(in, std::vector<bool>(in.sizes.size(), true)); }

Geo squeeze_dims_geo(const OpCall& c, const Geo& in) {
  std::vector<bool> which(in.sizes.size(), false);
  for (int64_t d : c.int_list("dim")) {
    int64_t n = norm_dim(c, d, rank_of(in));
    if (!in.sizes.empty()) which[n] = true;
  }
  return squeeze_some(in, which);
}

Geo unsqueeze_geo(const OpCall& c, const Geo& in) {
  const int64_t rank = rank_of(in);
  int64_t dim = norm_dim(c, c.int_arg("dim"), rank + 1);
  Geo g = in;
  int64_t stride = dim >= rank ? 1 : in.sizes[dim] * in.strides[dim];
  g.sizes.insert(g.sizes.begin() + dim, 1);
  g.strides.insert(g.strides.begin() + dim, stride);
  return g;
}

Geo expand_to(const OpCall& c, const Geo& in, const Shape& req) {
  const int64_t rank = rank_of(in);
  const int64_t n = static_cast<int64_t>(req.size());
  if (n < rank)
    fail_node(c, ErrorCode::kShapeMismatch, "expand: the number of sizes (", n,
              ") must be >= the number of dimensions (", rank, ") of ", shape_str(in.sizes));
  Geo g{Shape(n), Shape(n), in.offset};
  for (int64_t i = n - 1; i >= 0; --i) {
    int64_t j = i - (n - rank);
    int64_t want = req[i];
    if (j < 0) {
      if (want < 0)
        fail_node(c, ErrorCode::kInvalidArgument, "expand: -1 is not allowed in a new leading dimension ",
                  shape_str(req));
      g.sizes[i] = want;
      g.strides[i] = 0;
      continue;
    }
    int64_t have = in.sizes[j];
    if (want == -1) want = have;
    if (have == want || have < 0) {
      g.sizes[i] = want;
      g.strides[i] = in.strides[j];
    } else if (have == 1) {
      g.sizes[i] = want;
      g.strides[i] = 0;
    } else {
      fail_node(c, ErrorCode::kShapeMismatch, "expand: the size of ", shape_str(in.sizes), " at dimension ", j,
                " (", have, ") must match the requested size ", want, " (requested ", shape_str(req), ")");
    }
  }
  return g;
}

Geo expand_geo(const OpCall& c, const Geo& in) { return expand_to(c, in, c.int_list("size")); }
Geo expand_as_geo(const OpCall& c, const Geo& in) { return expand_to(c, in, c.spec("other").sizes); }

// ---------------------------------------------------------------- slicing views

Geo slice_geo(const OpCall& c, const Geo& in) {
  Geo g = in;
  if (in.sizes.empty()) fail_node(c, ErrorCode::kInvalidArgument, "slice() cannot be applied to a 0-dim tensor");
  int64_t dim = norm_dim(c, c.int_arg("dim"), rank_of(in));
  int64_t step = c.int_arg("step");
  if (step <= 0) fail_node(c, ErrorCode::kInvalidArgument, "slice step must be positive, found ", step);
  const int64_t size = in.sizes[dim];
  std::optional<int64_t> start = c.opt_int("start"), end = c.opt_int("end");
  if (size < 0) {  // unknown size: only a full slice keeps a known answer
    g.sizes[dim] = -1;
    return g;
  }
  int64_t s = start.value_or(0), e = end.value_or(std::numeric_limits<int64_t>::max());
  if (s < 0) s += size;
  if (e < 0) e += size;
  s = std::clamp<int64_t>(s, 0, size);
  e = std::clamp<int64_t>(e, 0, size);
  if (e < s) e = s;
  g.sizes[dim] = (e - s + step - 1) / step;
  g.offset = in.offset + s * in.strides[dim];
  g.strides[dim] = in.strides[dim] * step;
  return g;
}

Geo select_at(const OpCall& c, const Geo& in, int64_t dim, int64_t index) {
  if (in.sizes.empty()) fail_node(c, ErrorCode::kInvalidArgument, "select() cannot be applied to a 0-dim tensor");
  dim = norm_dim(c, dim, rank_of(in));
  const int64_t size = in.sizes[dim];
  Geo g = in;
  if (size >= 0) {
    if (index < -size || index >= size)
      fail_node(c, ErrorCode::kInvalidArgument, "select(): index ", index, " out of range for tensor of size ",
                shape_str(in.sizes), " at dimension ", dim);
    if (index < 0) index += size;
    g.offset = in.offset + index * in.strides[dim];
  }
  g.sizes.erase(g.sizes.begin() + dim);
  g.strides.erase(g.strides.begin() + dim);
  return g;
}

Geo select_geo(const OpCall& c, const Geo& in) { return select_at(c, in, c.int_arg("dim"), c.int_arg("index")); }

Geo narrow_at(const OpCall& c, const Geo& in, int64_t dim, int64_t start, int64_t length) {
  if (in.sizes.empty()) fail_node(c, ErrorCode::kInvalidArgument, "narrow() cannot be applied to a 0-dim tensor");
  dim = norm_dim(c, dim, rank_of(in));
  const int64_t size = in.sizes[dim];
  Geo g = in;
  if (length < 0) fail_node(c, ErrorCode::kInvalidArgument, "narrow(): length must be non-negative, found ", length);
  if (size >= 0) {
    if (start < -size || start > size)
      fail_node(c, ErrorCode::kInvalidArgument, "narrow(): start ", start, " out of range for dimension ", dim,
                " of size ", size);
    if (start < 0) start += size;
    if (start + length > size)
      fail_node(c, ErrorCode::kInvalidArgument, "narrow(): start (", start, ") + length (", length,
                ") exceeds dimension size (", size, ")");
  }
  g.sizes[dim] = length;
  g.offset = in.offset + start * in.strides[dim];
  return g;
}

Geo narrow_geo(const OpCall& c, const Geo& in) {
  return narrow_at(c, in, c.int_arg("dim"), c.int_arg("start"), c.int_arg("length"));
}

Geo as_strided_geo(const OpCall& c, const Geo& in) {
  Geo g{c.int_list("size"), c.int_list("stride"), in.offset};
  if (g.sizes.size() != g.strides.size())
    fail_node(c, ErrorCode::kInvalidArgument, "as_strided: ", g.sizes.size(), " sizes but ", g.strides.size(),
              " strides");
  if (std::optional<int64_t> off = c.opt_int("storage_offset")) g.offset = *off;
  return g;
}

// ---------------------------------------------------------------- multi-output views

// Sizes of the pieces along `dim`.
std::vector<int64_t> split_sizes(const OpCall& c, int64_t dim_size, int64_t split_size) {
  if (split_size < 0 || (split_size == 0 && dim_size != 0))
    fail_node(c, ErrorCode::kInvalidArgument, "split_size must be positive, found ", split_size);
  if (dim_size < 0)
    fail_node(c, ErrorCode::kUnsupported, "cannot split a dimension of unknown size into a known number of outputs");
  int64_t n = split_size == 0 ? 1 : std::max<int64_t>((dim_size + split_size - 1) / split_size, 1);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(std::min(split_size, dim_size - i * split_size));
  return out;
}

enum class SplitKind { kSplit, kSizes, kChunk, kUnbind };

std::vector<Geo> split_geos(const OpCall& c, const Geo& in, SplitKind kind) {
  if (in.sizes.empty()) fail_node(c, ErrorCode::kInvalidArgument, "cannot split a 0-dim tensor");
  int64_t dim = norm_dim(c, c.int_arg("dim"), rank_of(in));
  const int64_t size = in.sizes[dim];
  std::vector<Geo> out;
  if (kind == SplitKind::kUnbind) {
    if (size < 0) fail_node(c, ErrorCode::kUnsupported, "cannot unbind a dimension of unknown size");
    for (int64_t i = 0; i < size; ++i) out.push_back(select_at(c, in, dim, i));
    return out;
  }
  std::vector<int64_t> pieces;
  if (kind == SplitKind::kSplit) {
    pieces = split_sizes(c, size, c.int_arg("split_size"));
  } else if (kind == SplitKind::kChunk) {
    int64_t chunks = c.int_arg("chunks");
    if (chunks <= 0) fail_node(c, ErrorCode::kInvalidArgument, "chunk expects 'chunks' to be positive, found ", chunks);
    if (size < 0) fail_node(c, ErrorCode::kUnsupported, "cannot chunk a dimension of unknown size");
    int64_t split_size = (size + chunks - 1) / chunks;
    if (split_size == 0 && size == 0) pieces.assign(static_cast<size_t>(chunks), 0);
    else pieces = split_sizes(c, size, split_size);
  } else {
    pieces = c.int_list("split_sizes");
    int64_t total = 0;
    for (int64_t p : pieces) {
      if (p < 0) fail_node(c, ErrorCode::kInvalidArgument, "split_with_sizes: negative size ", p);
      total += p;
    }
    if (size >= 0 && total != size)
      fail_node(c, ErrorCode::kShapeMismatch, "split_with_sizes expects split_sizes to sum exactly to ", size,
                " (dimension ", dim, " of ", shape_str(in.sizes), "), found ", shape_str(pieces));
  }
  int64_t start = 0;
  for (int64_t p : pieces) {
    Geo g = in;
    g.sizes[dim] = p;
    g.offset = in.offset + start * in.strides[dim];
    out.push_back(g);
    start += p;
  }
  return out;
}

void add_split(Registry& r, const char* target, const char* schema, SplitKind kind) {
  r.add(
      target, schema,
      [kind](const OpCall& c) {
        std::vector<TensorSpec> specs;
        for (const Geo& g : split_geos(c, geo_of(c), kind)) specs.push_back({c.spec("self").dtype, g.sizes});
        return specs;
      },
      [kind](const OpCall& c) {
        const Tensor& self = c.tensor("self");
        std::vector<Tensor> views;
        for (const Geo& g : split_geos(c, geo_of(c), kind)) views.push_back(self.as_strided(g.sizes, g.strides, g.offset));
        return std::vector<OpArg>{OpArg::of_list(std::move(views))};
      });
}

// ---------------------------------------------------------------- cat / stack

// Legacy behaviour: 1-D empty tensors are skipped by cat whatever the other shapes.
bool cat_skip(const Shape& s) { return s.size() == 1 && s[0] == 0; }

TensorSpec cat_spec(const OpCall& c, const std::vector<TensorSpec>& specs, int64_t dim_arg) {
  if (specs.empty()) fail_node(c, ErrorCode::kInvalidArgument, "cat expects a non-empty list of tensors");
  std::vector<Operand> ops(specs.size());
  std::vector<const Operand*> ptrs;
  for (size_t i = 0; i < specs.size(); ++i) {
    ops[i].spec = specs[i];
    ptrs.push_back(&ops[i]);
  }
  DType dtype = result_type(ptrs);
  const TensorSpec* ref = nullptr;
  for (const TensorSpec& s : specs) {
    if (s.sizes.empty())
      fail_node(c, ErrorCode::kInvalidArgument, "zero-dimensional tensor cannot be concatenated");
    if (!cat_skip(s.sizes) && !ref) ref = &s;
  }
  if (!ref) return {dtype, specs[0].sizes};
  const int64_t rank = static_cast<int64_t>(ref->sizes.size());
  int64_t dim = norm_dim(c, dim_arg, rank);
  Shape out = ref->sizes;
  out[dim] = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const Shape& s = specs[i].sizes;
    if (cat_skip(s)) continue;
    if (static_cast<int64_t>(s.size()) != rank)
      fail_node(c, ErrorCode::kShapeMismatch, "cat: tensors must have the same number of dimensions: expected ", rank,
                ", found ", s.size(), " for tensor ", i);
    for (int64_t d = 0; d < rank; ++d) {
      if (d == dim) continue;
      if (s[d] >= 0 && out[d] >= 0 && s[d] != out[d])
        fail_node(c, ErrorCode::kShapeMismatch, "cat: sizes of tensors must match except in dimension ", dim,
                  ": expected size ", out[d], " but found size ", s[d], " for tensor ", i, " in dimension ", d);
      if (out[d] < 0) out[d] = s[d];
    }
    out[dim] = (out[dim] < 0 || s[dim] < 0) ? -1 : out[dim] + s[dim];
  }
  return {dtype, out};
}

Tensor cat_tensors(const OpCall& c, const std::vector<Tensor>& ts, int64_t dim_arg) {
  std::vector<TensorSpec> specs;
  for (const Tensor& t : ts) specs.push_back({t.dtype(), t.sizes()});
  TensorSpec spec = cat_spec(c, specs, dim_arg);
  Tensor out = Tensor::empty(spec.sizes, spec.dtype);
  const Tensor* ref = nullptr;
  for (const Tensor& t : ts)
    if (!cat_skip(t.sizes())) {
      ref = &t;
      break;
    }
  if (!ref) return out;
  int64_t dim = norm_dim(c, dim_arg, ref->dim());
  int64_t start = 0;
  for (const Tensor& t : ts) {
    if (cat_skip(t.sizes())) continue;
    Shape st = out.strides();
    Shape sz = out.sizes();
    sz[dim] = t.sizes()[dim];
    copy_into(c, out.as_strided(sz, st, start * st[dim]), t);
    start += t.sizes()[dim];
  }
  return out;
}

Shape unsqueezed(const Shape& s, int64_t dim) {
  Shape out = s;
  out.insert(out.begin() + dim, 1);
  return out;
}

TensorSpec stack_spec(const OpCall& c, const std::vector<TensorSpec>& specs, int64_t* dim_out) {
  if (specs.empty()) fail_node(c, ErrorCode::kInvalidArgument, "stack expects a non-empty list of tensors");
  for (size_t i = 1; i < specs.size(); ++i)
    if (specs[i].sizes != specs[0].sizes)
      fail_node(c, ErrorCode::kShapeMismatch, "stack expects each tensor to be equal size, but got ",
                shape_str(specs[0].sizes), " at entry 0 and ", shape_str(specs[i].sizes), " at entry ", i);
  int64_t dim = norm_dim(c, c.int_arg("dim"), static_cast<int64_t>(specs[0].sizes.size()) + 1);
  if (dim_out) *dim_out = dim;
  std::vector<TensorSpec> un;
  for (const TensorSpec& s : specs) un.push_back({s.dtype, unsqueezed(s.sizes, dim)});
  return cat_spec(c, un, dim);
}

// ---------------------------------------------------------------- gathers

// Reads integer index tensors (int64/int32) as int64, contiguous.
Tensor index_tensor(const OpCall& c, const Tensor& t, const char* name) {
  if (t.dtype() != DType::kInt64 && t.dtype() != DType::kInt32)
    c.fail_arg(name, cat("expected an int64 or int32 index tensor, found ", dtype_name(t.dtype())));
  return cast(t, DType::kInt64).contiguous();
}

int64_t checked_index(const OpCall& c, int64_t i, int64_t size, int64_t dim, bool allow_negative) {
  if (i < -size || i >= size || (!allow_negative && i < 0))
    fail_node(c, ErrorCode::kInvalidArgument, "index ", i, " is out of bounds for dimension ", dim, " with size ",
              size);
  return i < 0 ? i + size : i;
}

// Copies one element of `itemsize` bytes.
inline void copy_elem(uint8_t* dst, const uint8_t* src, size_t n) { std::memcpy(dst, src, n); }

TensorSpec index_select_spec(const OpCall& c) {
  const TensorSpec& s = c.spec("self");
  const TensorSpec& idx = c.spec("index");
  if (idx.sizes.size() > 1) c.fail_arg("index", cat("expected a 0-d or 1-d tensor, found ", shape_str(idx.sizes)));
  if (s.sizes.empty()) return {s.dtype, {}};
  int64_t dim = norm_dim(c, c.int_arg("dim"), static_cast<int64_t>(s.sizes.size()));
  Shape out = s.sizes;
  out[dim] = idx.sizes.empty() ? 1 : idx.sizes[0];
  return {s.dtype, out};
}

Tensor index_select_run(const OpCall& c) {
  const Tensor& self = c.tensor("self");
  Tensor idx = index_tensor(c, c.tensor("index"), "index");
  TensorSpec spec = index_select_spec(c);
  Tensor out = Tensor::empty(spec.sizes, spec.dtype);
  const int64_t* ix = idx.data<int64_t>();
  if (self.dim() == 0) {
    for (int64_t k = 0; k < idx.numel(); ++k) checked_index(c, ix[k], 1, 0, false);
    out.copy_from(self);
    return out;
  }
  int64_t dim = norm_dim(c, c.int_arg("dim"), self.dim());
  for (int64_t k = 0; k < idx.numel(); ++k) {
    int64_t i = checked_index(c, ix[k], self.sizes()[dim], dim, false);
    Shape sz = self.sizes();
    sz[dim] = 1;
    Tensor src = self.as_strided(sz, self.strides(), self.storage_offset() + i * self.strides()[dim]);
    Tensor dst = out.as_strided(sz, out.strides(), k * out.strides()[dim]);
    copy_into(c, dst, src);
  }
  return out;
}

TensorSpec gather_spec(const OpCall& c) {
  const TensorSpec& s = c.spec("self");
  const TensorSpec& idx = c.spec("index");
  if (idx.dtype != DType::kInt64) c.fail_arg("index", cat("expected an int64 tensor, found ", dtype_name(idx.dtype)));
  norm_dim(c, c.int_arg("dim"), static_cast<int64_t>(s.sizes.size()));
  if (std::max<size_t>(idx.sizes.size(), 1) != std::max<size_t>(s.sizes.size(), 1))
    fail_node(c, ErrorCode::kShapeMismatch, "gather: index ", shape_str(idx.sizes),
              " and input must have the same number of dimensions as input ", shape_str(s.sizes));
  return {s.dtype, idx.sizes};
}

Tensor gather_run(const OpCall& c) {
  const Tensor& self = c.tensor("self");
  TensorSpec spec = gather_spec(c);
  Tensor idx = c.tensor("index").contiguous();
  Tensor out = Tensor::empty(spec.sizes, spec.dtype);
  const int64_t rank = self.dim();
  int64_t dim = norm_dim(c, c.int_arg("dim"), rank);
  for (int64_t d = 0; d < rank; ++d)
    if (d != dim && idx.sizes()[d] > self.sizes()[d])
      fail_node(c, ErrorCode::kShapeMismatch, "gather: size of index ", shape_str(idx.sizes()),
                " must not exceed the input's ", shape_str(self.sizes()), " in dimension ", d);
  const size_t is = self.itemsize();
  const uint8_t* src = self.storage()->data();
  uint8_t* dst = static_cast<uint8_t*>(out.raw_data());
  const int64_t* ix = idx.data<int64_t>();
  const int64_t n = idx.numel();
  std::vector<int64_t> pos(static_cast<size_t>(rank), 0);
  for (int64_t k = 0; k < n; ++k) {
    int64_t off = self.storage_offset();
    for (int64_t d = 0; d < rank; ++d) {
      int64_t p = d == dim ? checked_index(c, ix[k], self.sizes()[d], d, false) : pos[d];
      off += p * self.strides()[d];
    }
    if (rank == 0) checked_index(c, ix[k], 1, 0, false);
    copy_elem(dst + k * is, src + off * is, is);
    for (int64_t d = rank - 1; d >= 0; --d) {
      if (++pos[d] < idx.sizes()[d]) break;
      pos[d] = 0;
    }
  }
  return out;
}

// ---------------------------------------------------------------- index.Tensor

// Advanced indexing plan: bool masks become their nonzero coordinates; present index
// tensors broadcast together. Returns the output sizes and, in run mode, the indices.
struct IndexPlan {
  std::vector<int64_t> dims;         // source dim of each index tensor
  std::vector<Tensor> index;         // int64, broadcast to `bshape` (run mode)
  Shape bshape;                      // broadcast index shape
  Shape out_sizes;
  bool leading = false;              // broadcast dims placed first (non-adjacent index dims)
  int64_t insert_at = 0;             // else: position of the broadcast dims in the output
};

IndexPlan index_plan(const OpCall& c) {
  const TensorSpec& self = c.spec("self");
  const std::vector<TensorSpec>& specs = c.spec_list("indices");
  const std::vector<Tensor>* tensors = c.infer_mode() ? nullptr : &c.tensor_list("indices");
  IndexPlan p;
  int64_t src_dim = 0;
  std::vector<Shape> shapes;
  for (size_t k = 0; k < specs.size(); ++k) {
    const TensorSpec& s = specs[k];
    if (s.dtype == DType::kUnknown) {  // absent: a full slice of one dim
      ++src_dim;
      continue;
    }
    if (s.dtype == DType::kBool || s.dtype == DType::kUInt8) {
      const int64_t k_dims = static_cast<int64_t>(s.sizes.size());
      if (src_dim + k_dims > static_cast<int64_t>(self.sizes.size()))
        fail_node(c, ErrorCode::kInvalidArgument, "too many indices for a tensor of shape ", shape_str(self.sizes));
      for (int64_t d = 0; d < k_dims; ++d)
        if (s.sizes[d] >= 0 && self.sizes[src_dim + d] >= 0 && s.sizes[d] != self.sizes[src_dim + d])
          fail_node(c, ErrorCode::kShapeMismatch, "the shape of the mask ", shape_str(s.sizes), " at index ", k,
                    " does not match the shape of the indexed tensor ", shape_str(self.sizes));
      if (!tensors) {
        for (int64_t d = 0; d < k_dims; ++d) {
          p.dims.push_back(src_dim + d);
          shapes.push_back({-1});  // nonzero count is data-dependent
        }
      } else {
        // nonzero(): one int64 index tensor per mask dim.
        Tensor m = cast((*tensors)[k], DType::kBool).contiguous();
        const uint8_t* md = static_cast<const uint8_t*>(m.raw_data());
        std::vector<std::vector<int64_t>> coords(static_cast<size_t>(k_dims));
        Shape ms = m.sizes();
        std::vector<int64_t> pos(static_cast<size_t>(k_dims), 0);
        for (int64_t e = 0; e < m.numel(); ++e) {
          if (md[e])
            for (int64_t d = 0; d < k_dims; ++d) coords[d].push_back(pos[d]);
          for (int64_t d = k_dims - 1; d >= 0; --d) {
            if (++pos[d] < ms[d]) break;
            pos[d] = 0;
          }
        }
        for (int64_t d = 0; d < k_dims; ++d) {
          Tensor t = Tensor::empty({static_cast<int64_t>(coords[d].size())}, DType::kInt64);
          if (!coords[d].empty()) std::memcpy(t.raw_data(), coords[d].data(), coords[d].size() * 8);
          p.dims.push_back(src_dim + d);
          p.index.push_back(t);
          shapes.push_back(t.sizes());
        }
      }
      src_dim += k_dims;
      continue;
    }
    if (s.dtype != DType::kInt64 && s.dtype != DType::kInt32)
      fail_node(c, ErrorCode::kDTypeMismatch, "tensors used as indices must be int64, int32 or bool, found ",
                dtype_name(s.dtype), " at index ", k);
    if (src_dim >= static_cast<int64_t>(self.sizes.size()))
      fail_node(c, ErrorCode::kInvalidArgument, "too many indices for a tensor of shape ", shape_str(self.sizes));
    p.dims.push_back(src_dim++);
    shapes.push_back(s.sizes);
    if (tensors) p.index.push_back(cast((*tensors)[k], DType::kInt64));
  }
  if (p.dims.empty()) fail_node(c, ErrorCode::kInvalidArgument, "index.Tensor needs at least one index tensor");
  if (src_dim > static_cast<int64_t>(self.sizes.size()))
    fail_node(c, ErrorCode::kInvalidArgument, "too many indices for a tensor of shape ", shape_str(self.sizes));
  for (const Shape& s : shapes) p.bshape = broadcast_shapes(c, p.bshape, s);
  for (Tensor& t : p.index) t = broadcast_to(t, p.bshape);
  // Adjacent index dims keep their place; otherwise the broadcast dims go first.
  bool adjacent = true;
  for (size_t i = 1; i < p.dims.size(); ++i) adjacent = adjacent && p.dims[i] == p.dims[i - 1] + 1;
  p.leading = !adjacent;
  p.insert_at = adjacent ? p.dims.front() : 0;
  std::vector<bool> indexed(self.sizes.size(), false);
  for (int64_t d : p.dims) indexed[d] = true;
  Shape rest_before, rest_after;
  for (int64_t d = 0; d < static_cast<int64_t>(self.sizes.size()); ++d) {
    if (indexed[d]) continue;
    (d < p.insert_at || p.leading ? rest_before : rest_after).push_back(self.sizes[d]);
  }
  if (p.leading) {
    p.out_sizes = p.bshape;
    p.out_sizes.insert(p.out_sizes.end(), rest_before.begin(), rest_before.end());
  } else {
    p.out_sizes = rest_before;
    p.out_sizes.insert(p.out_sizes.end(), p.bshape.begin(), p.bshape.end());
    p.out_sizes.insert(p.out_sizes.end(), rest_after.begin(), rest_after.end());
  }
  return p;
}

Tensor index_run(const OpCall& c) {
  const Tensor& self = c.tensor("self");
  IndexPlan p = index_plan(c);
  Tensor out = Tensor::empty(p.out_sizes, self.dtype());
  const int64_t rank = self.dim();
  std::vector<bool> indexed(static_cast<size_t>(rank), false);
  for (int64_t d : p.dims) indexed[d] = true;
  // Output dim layout: for each output dim, either a source dim (plain) or a broadcast dim.
  const int64_t nb = static_cast<int64_t>(p.bshape.size());
  std::vector<int64_t> plain_src;  // source dims in output order
  for (int64_t d = 0; d < rank; ++d)
    if (!indexed[d]) plain_src.push_back(d);
  const int64_t out_rank = out.dim();
  const int64_t b_start = p.leading ? 0 : [&] {
    int64_t n = 0;
    for (int64_t d : plain_src) n += d < p.insert_at ? 1 : 0;
    return n;
  }();
  const size_t is = self.itemsize();
  const uint8_t* src = self.storage()->data();
  uint8_t* dst = static_cast<uint8_t*>(out.raw_data());
  const int64_t n = out.numel();
  std::vector<int64_t> pos(static_cast<size_t>(out_rank), 0);
  Shape bpos(static_cast<size_t>(nb), 0);
  for (int64_t e = 0; e < n; ++e) {
    int64_t off = self.storage_offset();
    size_t plain_k = 0;
    for (int64_t od = 0; od < out_rank; ++od) {
      if (od >= b_start && od < b_start + nb) {
        bpos[od - b_start] = pos[od];
      } else {
        off += pos[od] * self.strides()[plain_src[plain_k++]];
      }
    }
    for (size_t k = 0; k < p.dims.size(); ++k) {
      const Tensor& it = p.index[k];
      int64_t io = it.storage_offset();
      for (int64_t d = 0; d < nb; ++d) io += bpos[d] * it.strides()[d];
      int64_t i = reinterpret_cast<const int64_t*>(it.storage()->data())[io];
      const int64_t sd = p.dims[k];
      off += checked_index(c, i, self.sizes()[sd], sd, true) * self.strides()[sd];
    }
    copy_elem(dst + e * is, src + off * is, is);
    for (int64_t d = out_rank - 1; d >= 0; --d) {
      if (++pos[d] < p.out_sizes[d]) break;
      pos[d] = 0;
    }
  }
  return out;
}

// ---------------------------------------------------------------- repeat / flip / roll / pad

Shape repeat_shape(const OpCall& c, const Shape& in) {
  std::vector<int64_t> reps = c.int_list("repeats");
  if (reps.size() < in.size())
    fail_node(c, ErrorCode::kInvalidArgument, "number of dimensions of repeat dims (", reps.size(),
              ") can not be smaller than number of dimensions of tensor (", in.size(), ")");
  Shape out(reps.size());
  const size_t lead = reps.size() - in.size();
  for (size_t i = 0; i < reps.size(); ++i) {
    if (reps[i] < 0) fail_node(c, ErrorCode::kInvalidArgument, "repeats cannot be negative, found ", reps[i]);
    int64_t s = i < lead ? 1 : in[i - lead];
    out[i] = s < 0 ? -1 : s * reps[i];
  }
  return out;
}

Tensor repeat_run(const OpCall& c) {
  const Tensor& self = c.tensor("self");
  std::vector<int64_t> reps = c.int_list("repeats");
  Shape out_sizes = repeat_shape(c, self.sizes());
  // View self as [r0, s0, r1, s1, ...] with stride 0 on the repeat dims, then copy.
  const size_t lead = reps.size() - self.sizes().size();
  Shape sz, st;
  for (size_t i = 0; i < reps.size(); ++i) {
    sz.push_back(reps[i]);
    st.push_back(0);
    sz.push_back(i < lead ? 1 : self.sizes()[i - lead]);
    st.push_back(i < lead ? 0 : self.strides()[i - lead]);
  }
  Tensor out = Tensor::empty(out_sizes, self.dtype());
  copy_into(c, out.view(sz), self.as_strided(sz, st, self.storage_offset()));
  return out;
}

Tensor flip_run(const OpCall& c) {
  const Tensor& self = c.tensor("self");
  Shape st = self.strides();
  int64_t off = self.storage_offset();
  std::vector<bool> seen(static_cast<size_t>(std::max<int64_t>(self.dim(), 1)), false);
  for (int64_t d : c.int_list("dims")) {
    d = norm_dim(c, d, self.dim());
    if (seen[d]) fail_node(c, ErrorCode::kInvalidArgument, "flip: dim ", d, " appears multiple times");
    seen[d] = true;
    if (self.dim() == 0 || self.sizes()[d] == 0) continue;
    off += (self.sizes()[d] - 1) * st[d];
    st[d] = -st[d];
  }
  if (self.numel() == 0) return self.clone();
  return self.as_strided(self.sizes(), st, off).clone();
}

Tensor roll_dim(const OpCall& c, const Tensor& t, int64_t shift, int64_t dim) {
  const int64_t size = t.sizes()[dim];
  Tensor out = Tensor::empty(t.sizes(), t.dtype());
  if (size == 0 || t.numel() == 0) return out;
  shift = ((shift % size) + size) % size;
  auto part = [&](const Tensor& x, int64_t start, int64_t len) {
    Shape sz = x.sizes();
    sz[dim] = len;
    return x.as_strided(sz, x.strides(), x.storage_offset() + start * x.strides()[dim]);
  };
  // out[shift:] = t[:size-shift]; out[:shift] = t[size-shift:]
  copy_into(c, part(out, shift, size - shift), part(t, 0, size - shift));
  copy_into(c, part(out, 0, shift), part(t, size - shift, shift));
  return out;
}

Tensor roll_run(const OpCall& c) {
  const Tensor& self = c.tensor("self");
  std::vector<int64_t> shifts = c.int_list("shifts");
  std::vector<int64_t> dims = c.has("dims") ? c.int_list("dims") : std::vector<int64_t>{};
  if (dims.empty()) {
    if (shifts.size() != 1) fail_node(c, ErrorCode::kInvalidArgument, "roll: shifts must have one entry without dims");
    Tensor flat = self.contiguous().view({self.numel()});
    return roll_dim(c, flat, shifts[0], 0).view(self.sizes());
  }
  if (dims.size() != shifts.size())
    fail_node(c, ErrorCode::kInvalidArgument, "roll: shifts and dims must align, found ", shifts.size(), " shifts and ",
              dims.size(), " dims");
  Tensor t = self;
  for (size_t i = 0; i < dims.size(); ++i) t = roll_dim(c, t, shifts[i], norm_dim(c, dims[i], self.dim()));
  return t;
}

Shape pad_shape(const OpCall& c, const Shape& in, const std::vector<int64_t>& pad) {
  if (pad.size() % 2 != 0) fail_node(c, ErrorCode::kInvalidArgument, "padding length must be divisible by 2");
  if (pad.size() / 2 > in.size())
    fail_node(c, ErrorCode::kInvalidArgument, "padding length (", pad.size(),
              ") too large for a tensor of rank ", in.size());
  Shape out = in;
  for (size_t i = 0; i < pad.size() / 2; ++i) {
    size_t d = in.size() - 1 - i;
    if (in[d] < 0) continue;
    out[d] = in[d] + pad[2 * i] + pad[2 * i + 1];
    if (out[d] < 0)
      fail_node(c, ErrorCode::kInvalidArgument, "the input size ", in[d], " plus negative padding ", pad[2 * i], " and ",
                pad[2 * i + 1], " resulted in a negative output size");
  }
  return out;
}

Tensor constant_pad(const OpCall& c, const Tensor& self, const std::vector<int64_t>& pad, const ScalarValue& value) {
  Shape out_sizes = pad_shape(c, self.sizes(), pad);
  Tensor out = Tensor::empty(out_sizes, self.dtype());
  fill(out, value);
  // The region of the input that survives (negative pads crop) and where it lands.
  Shape sz = self.sizes();
  int64_t in_off = self.storage_offset(), out_off = 0;
  for (size_t i = 0; i < pad.size() / 2; ++i) {
    size_t d = self.sizes().size() - 1 - i;
    int64_t before = pad[2 * i], after = pad[2 * i + 1];
    int64_t crop_before = std::max<int64_t>(-before, 0), crop_after = std::max<int64_t>(-after, 0);
    sz[d] = std::max<int64_t>(self.sizes()[d] - crop_before - crop_after, 0);
    in_off += crop_before * self.strides()[d];
    out_off += std::max<int64_t>(before, 0) * out.strides()[d];
  }
  if (shape_numel(sz) > 0)
    copy_into(c, out.as_strided(sz, out.strides(), out_off), self.as_strided(sz, self.strides(), in_off));
  return out;
}

template <typename I, typename K>
void reg(Registry& r, const char* target, const char* schema, I infer, K kernel) {
  r.add(
      target, schema, [infer](const OpCall& c) { return std::vector<TensorSpec>{infer(c)}; },
      [kernel](const OpCall& c) { return std::vector<OpArg>{OpArg::of(kernel(c))}; });
}

}  // namespace

EMBER_REGISTER_OPS(ew_shape) {
  // Views.
  add_view(r, "torch.ops.aten.view.default", "view(Tensor(a) self, SymInt[] size) -> Tensor(a)",
           [](const OpCall& c, const Geo& in) { return view_geo(c, in, c.int_list("size")); });
  add_view(r, "torch.ops.aten._unsafe_view.default", "_unsafe_view(Tensor self, SymInt[] size) -> Tensor",
           [](const OpCall& c, const Geo& in) { return view_geo(c, in, c.int_list("size")); });
  add_reshape_like(r, "torch.ops.aten.reshape.default", "reshape(Tensor(a) self, SymInt[] shape) -> Tensor(a)",
                   [](const OpCall& c, const Shape&) { return Shape(c.int_list("shape")); });
  add_reshape_like(r, "torch.ops.aten.flatten.using_ints",
                   "flatten.using_ints(Tensor(a) self, int start_dim=0, int end_dim=-1) -> Tensor(a)", flatten_shape);
  add_view(r, "torch.ops.aten.unflatten.int", "unflatten.int(Tensor(a) self, int dim, SymInt[] sizes) -> Tensor(a)",
           [](const OpCall& c, const Geo& in) { return view_geo(c, in, unflatten_shape(c, in.sizes)); });
  add_view(r, "torch.ops.aten.permute.default", "permute(Tensor(a) self, int[] dims) -> Tensor(a)", permute_geo);
  add_view(r, "torch.ops.aten.transpose.int", "transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)",
           transpose_geo);
  add_view(r, "torch.ops.aten.t.default", "t(Tensor(a) self) -> Tensor(a)", t_geo);
  add_view(r, "torch.ops.aten.squeeze.default", "squeeze(Tensor(a) self) -> Tensor(a)", squeeze_geo);
  add_view(r, "torch.ops.aten.squeeze.dim", "squeeze.dim(Tensor(a) self, int dim) -> Tensor(a)", squeeze_dims_geo);
  add_view(r, "torch.ops.aten.squeeze.dims", "squeeze.dims(Tensor(a) self, int[] dim) -> Tensor(a)", squeeze_dims_geo);
  add_view(r, "torch.ops.aten.unsqueeze.default", "unsqueeze(Tensor(a) self, int dim) -> Tensor(a)", unsqueeze_geo);
  add_view(r, "torch.ops.aten.expand.default", "expand(Tensor(a) self, SymInt[] size, *, bool implicit=False) -> Tensor(a)",
           expand_geo);
  add_view(r, "torch.ops.aten.expand_as.default", "expand_as(Tensor(a) self, Tensor other) -> Tensor(a)",
           expand_as_geo);
  add_view(r, "torch.ops.aten.slice.Tensor",
           "slice.Tensor(Tensor(a) self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor(a)",
           slice_geo);
  add_view(r, "torch.ops.aten.select.int", "select.int(Tensor(a) self, int dim, SymInt index) -> Tensor(a)",
           select_geo);
  add_view(r, "torch.ops.aten.narrow.default", "narrow(Tensor(a) self, int dim, SymInt start, SymInt length) -> Tensor(a)",
           narrow_geo);
  add_view(r, "torch.ops.aten.as_strided.default",
           "as_strided(Tensor(a) self, SymInt[] size, SymInt[] stride, SymInt? storage_offset=None) -> Tensor(a)",
           as_strided_geo);
  add_split(r, "torch.ops.aten.split.Tensor", "split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]",
            SplitKind::kSplit);
  add_split(r, "torch.ops.aten.split_with_sizes.default",
            "split_with_sizes(Tensor(a -> *) self, SymInt[] split_sizes, int dim=0) -> Tensor(a)[]", SplitKind::kSizes);
  add_split(r, "torch.ops.aten.chunk.default", "chunk(Tensor(a -> *) self, int chunks, int dim=0) -> Tensor(a)[]",
            SplitKind::kChunk);
  add_split(r, "torch.ops.aten.unbind.int", "unbind.int(Tensor(a -> *) self, int dim=0) -> Tensor(a)[]",
            SplitKind::kUnbind);

  // Copies.
  reg(r, "torch.ops.aten.cat.default", "cat(Tensor[] tensors, int dim=0) -> Tensor",
      [](const OpCall& c) { return cat_spec(c, c.spec_list("tensors"), c.int_arg("dim")); },
      [](const OpCall& c) { return cat_tensors(c, c.tensor_list("tensors"), c.int_arg("dim")); });
  reg(r, "torch.ops.aten.stack.default", "stack(Tensor[] tensors, int dim=0) -> Tensor",
      [](const OpCall& c) { return stack_spec(c, c.spec_list("tensors"), nullptr); },
      [](const OpCall& c) {
        std::vector<TensorSpec> specs;
        for (const Tensor& t : c.tensor_list("tensors")) specs.push_back({t.dtype(), t.sizes()});
        int64_t dim = 0;
        stack_spec(c, specs, &dim);
        std::vector<Tensor> un;
        for (const Tensor& t : c.tensor_list("tensors")) {
          Shape st = t.strides();
          st.insert(st.begin() + dim, 1);
          un.push_back(t.as_strided(unsqueezed(t.sizes(), dim), st, t.storage_offset()));
        }
        return cat_tensors(c, un, dim);
      });
  reg(r, "torch.ops.aten.index_select.default", "index_select(Tensor self, int dim, Tensor index) -> Tensor",
      index_select_spec, index_select_run);
  reg(r, "torch.ops.aten.gather.default", "gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor",
      gather_spec, gather_run);
  reg(r, "torch.ops.aten.index.Tensor", "index.Tensor(Tensor self, Tensor?[] indices) -> Tensor",
      [](const OpCall& c) { return TensorSpec{c.spec("self").dtype, index_plan(c).out_sizes}; }, index_run);
  reg(r, "torch.ops.aten.repeat.default", "repeat(Tensor self, SymInt[] repeats) -> Tensor",
      [](const OpCall& c) { return TensorSpec{c.spec("self").dtype, repeat_shape(c, c.spec("self").sizes)}; },
      repeat_run);
  reg(r, "torch.ops.aten.flip.default", "flip(Tensor self, int[] dims) -> Tensor",
      [](const OpCall& c) {
        for (int64_t d : c.int_list("dims")) norm_dim(c, d, static_cast<int64_t>(c.spec("self").sizes.size()));
        return c.spec("self");
      },
      flip_run);
  reg(r, "torch.ops.aten.roll.default", "roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor",
      [](const OpCall& c) { return c.spec("self"); }, roll_run);
  reg(r, "torch.ops.aten.constant_pad_nd.default", "constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor",
      [](const OpCall& c) {
        return TensorSpec{c.spec("self").dtype, pad_shape(c, c.spec("self").sizes, c.int_list("pad"))};
      },
      [](const OpCall& c) {
        ScalarValue v = c.has("value") ? scalar_value(c, "value") : ScalarValue{};
        return constant_pad(c, c.tensor("self"), c.int_list("pad"), v);
      });
  reg(r, "torch.ops.aten.pad.default", "pad(Tensor self, SymInt[] pad, str mode=\"constant\", float? value=None) -> Tensor",
      [](const OpCall& c) {
        std::string mode = c.has("mode") ? c.string_arg("mode") : "constant";
        if (mode != "constant") fail_node(c, ErrorCode::kUnsupported, "pad mode '", mode, "' is not supported");
        return TensorSpec{c.spec("self").dtype, pad_shape(c, c.spec("self").sizes, c.int_list("pad"))};
      },
      [](const OpCall& c) {
        std::string mode = c.has("mode") ? c.string_arg("mode") : "constant";
        if (mode != "constant") fail_node(c, ErrorCode::kUnsupported, "pad mode '", mode, "' is not supported");
        ScalarValue v;
        if (c.has("value")) {
          v.kind = ScalarValue::Kind::kFloat;
          v.f = c.float_arg("value");
        }
        return constant_pad(c, c.tensor("self"), c.int_list("pad"), v);
      });
}

}  // namespace ember::ops::ew
