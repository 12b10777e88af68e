// Helpers for the nn op tests: build tensors, call a registered op with schema defaults
// filled in, and check that the op's infer() agrees with the kernel's outputs.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ember/tensor.h"
#include "ops/registry.h"

namespace ember::ops::test {

using Args = std::map<std::string, OpArg, std::less<>>;

inline Tensor make(const Shape& sizes, const std::vector<double>& values, DType dtype = DType::kFloat32) {
  Tensor t = Tensor::empty(sizes, dtype);
  EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) set_element_from_double(t, i, values[i]);
  return t;
}

// Deterministic pseudo-random values in [-1, 1).
inline Tensor rand(const Shape& sizes, uint64_t seed, DType dtype = DType::kFloat32) {
  Tensor t = Tensor::empty(sizes, dtype);
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    set_element_from_double(t, i, static_cast<double>(s >> 40) / static_cast<double>(1ull << 23) - 1.0);
  }
  return t;
}

inline std::vector<double> values(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = element_as_double(t, i);
  return v;
}

// Parses a schema default as the test harness of an interpreter would.
inline OpArg default_arg(const SchemaArg& a) {
  const std::string& d = *a.default_value;
  if (d == "None") return OpArg::none();
  if (a.type.rfind("bool", 0) == 0) return OpArg::of_bool(d == "True");
  if (a.type.rfind("float", 0) == 0) return OpArg::of_float(std::stod(d));
  if (a.type.find('[') != std::string::npos) {
    std::vector<int64_t> v;
    std::string inner = d[0] == '[' ? d.substr(1, d.size() - 2) : d;
    size_t pos = 0;
    while (pos < inner.size()) {
      size_t comma = inner.find(',', pos);
      std::string tok = inner.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (tok.find_first_not_of(' ') != std::string::npos) v.push_back(std::stoll(tok));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    return OpArg::of_ints(v);
  }
  if (d.find_first_of(".e") != std::string::npos) return OpArg::of_float(std::stod(d));
  return OpArg::of_int(std::stoll(d));
}

inline const OpDef& op(const std::string& target) {
  const OpDef* def = Registry::global().find(target);
  if (!def) throw Error(ErrorCode::kNotFound, "op " + target + " is not registered");
  return *def;
}

// Fills schema defaults for arguments not given.
inline Args with_defaults(const OpDef& def, Args args) {
  for (const SchemaArg& a : def.schema.args) {
    if (args.count(a.name)) continue;
    if (a.default_value) args[a.name] = default_arg(a);
  }
  return args;
}

// Runs the op on node "node_x"; also runs infer() on the input specs and expects it to
// agree with the kernel's tensor outputs.
inline std::vector<OpArg> call(const std::string& target, Args args) {
  const OpDef& def = op(target);
  args = with_defaults(def, std::move(args));
  Args specs;
  for (auto& [name, a] : args) {
    if (a.kind == OpArg::Kind::kTensor) {
      specs[name] = OpArg::of_spec(a.spec);
    } else {
      specs[name] = a;
    }
  }
  std::vector<TensorSpec> inferred = def.infer(OpCall("node_x", target, specs, true));
  std::vector<OpArg> out = def.run(OpCall("node_x", target, args, false));
  EXPECT_EQ(inferred.size(), out.size()) << target;
  for (size_t i = 0; i < std::min(inferred.size(), out.size()); ++i) {
    EXPECT_EQ(inferred[i].dtype, out[i].tensor.dtype()) << target << " output " << i;
    EXPECT_EQ(inferred[i].sizes, out[i].tensor.sizes()) << target << " output " << i;
  }
  return out;
}

inline Tensor call1(const std::string& target, Args args) { return call(target, std::move(args)).at(0).tensor; }

inline void expect_close(const Tensor& t, const std::vector<double>& want, double tol = 1e-4) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(want.size()));
  std::vector<double> got = values(t);
  for (size_t i = 0; i < want.size(); ++i) {
    double bound = tol * (1.0 + std::abs(want[i]));
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << "element " << i;
    } else {
      EXPECT_NEAR(got[i], want[i], bound) << "element " << i;
    }
  }
}

// Runs f and returns the code and message of the ember::Error it throws (kOk if none).
template <typename F>
ErrorCode error_of(F&& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return ErrorCode::kOk;
}

// A transposed (non-contiguous) view of the last two dims, with the same logical values as `t`.
inline Tensor noncontig(const Tensor& t) {
  Shape s = t.sizes();
  std::swap(s[s.size() - 1], s[s.size() - 2]);
  Tensor tt = Tensor::empty(s, t.dtype());
  // tt holds t transposed; viewing it transposed back gives t's values with swapped strides.
  Shape st = tt.strides();
  int64_t r = t.dim();
  for (int64_t i = 0; i < t.numel(); ++i) {
    // index of element i of t
    std::vector<int64_t> idx(r);
    int64_t f = i;
    for (int64_t d = r; d-- > 0;) idx[d] = f % t.sizes()[d], f /= t.sizes()[d];
    std::swap(idx[r - 1], idx[r - 2]);
    int64_t flat = 0;
    for (int64_t d = 0; d < r; ++d) flat = flat * s[d] + idx[d];
    set_element_from_double(tt, flat, element_as_double(t, i));
  }
  Shape vs = t.sizes(), vst = st;
  std::swap(vst[r - 1], vst[r - 2]);
  Tensor v = tt.as_strided(vs, vst, 0);
  EXPECT_FALSE(v.is_contiguous());
  return v;
}

}  // namespace ember::ops::test
