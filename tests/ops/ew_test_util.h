// Test helpers for the element-wise/shape op kernels: build tensors from values, call a
// registered op with schema defaults filled in (as the interpreter does), and check that the
// op's infer function agrees with the specs of what its kernel returned.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "ember/tensor.h"
#include "ops/arg_convert.h"
#include "ops/registry.h"

namespace ember::ops::test {

inline Tensor T(std::vector<double> values, Shape sizes, DType dtype = DType::kFloat32) {
  Tensor t = Tensor::empty(sizes, dtype);
  EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel()) << "test tensor built with the wrong number of values";
  for (size_t i = 0; i < values.size() && static_cast<int64_t>(i) < t.numel(); ++i)
    set_element_from_double(t, static_cast<int64_t>(i), values[i]);
  return t;
}

inline std::vector<double> vals(const Tensor& t) {
  std::vector<double> v;
  for (int64_t i = 0; i < t.numel(); ++i) v.push_back(element_as_double(t, i));
  return v;
}

inline OpArg S(const std::string& s) {
  OpArg a;
  a.kind = OpArg::Kind::kString;
  a.s = s;
  return a;
}
inline OpArg D(DType d) {
  OpArg a;
  a.kind = OpArg::Kind::kDType;
  a.dtype = d;
  return a;
}
inline OpArg I(int64_t v) { return OpArg::of_int(v); }
inline OpArg F(double v) { return OpArg::of_float(v); }
inline OpArg B(bool v) { return OpArg::of_bool(v); }
inline OpArg L(std::vector<int64_t> v) { return OpArg::of_ints(std::move(v)); }
inline OpArg Ts(std::vector<Tensor> v) { return OpArg::of_list(std::move(v)); }
inline OpArg OptTs(std::vector<Tensor> v) {
  OpArg a = OpArg::of_list(std::move(v));
  a.kind = OpArg::Kind::kOptTensorList;
  return a;
}

inline TensorSpec spec_of(const Tensor& t) { return {t.dtype(), t.sizes()}; }

// Calls `target` with `args` (defaults filled from the schema); checks infer() against the
// kernel's outputs; returns the outputs. Errors from the kernel propagate.
inline std::vector<OpArg> call(const std::string& target, std::map<std::string, OpArg, std::less<>> args,
                               const std::string& node = "n0") {
  const OpDef* def = &require_op(target);
  std::map<std::string, OpArg, std::less<>> infer_args;
  for (const auto& [name, a] : args) {
    OpArg x = a;
    x.tensor = Tensor();
    for (Tensor& t : x.tensors) t = Tensor();
    infer_args[name] = x;
  }
  std::vector<OpArg> out = def->run(make_call(*def, node, args, false));
  std::vector<TensorSpec> inferred = def->infer(make_call(*def, node, infer_args, true));
  std::vector<TensorSpec> actual;
  for (const OpArg& o : out) {
    if (o.kind == OpArg::Kind::kTensor) actual.push_back(spec_of(o.tensor));
    if (o.kind == OpArg::Kind::kTensorList)
      for (const Tensor& t : o.tensors) actual.push_back(spec_of(t));
  }
  EXPECT_EQ(inferred.size(), actual.size()) << target << ": infer() and the kernel disagree on the output count";
  for (size_t i = 0; i < std::min(inferred.size(), actual.size()); ++i) {
    EXPECT_EQ(inferred[i].dtype, actual[i].dtype) << target << " output " << i << ": infer() dtype differs";
    // -1 (unknowable, e.g. a boolean mask's count) matches any size.
    Shape expected = inferred[i].sizes;
    for (size_t d = 0; d < expected.size() && d < actual[i].sizes.size(); ++d)
      if (expected[d] == -1) expected[d] = actual[i].sizes[d];
    EXPECT_EQ(expected, actual[i].sizes) << target << " output " << i << ": infer() sizes differ";
  }
  return out;
}

// Single-tensor-output convenience.
inline Tensor call1(const std::string& target, std::map<std::string, OpArg, std::less<>> args) {
  std::vector<OpArg> out = call(target, std::move(args));
  EXPECT_EQ(out.size(), 1u);
  return out.at(0).tensor;
}

inline std::string aten(const std::string& s) { return "torch.ops.aten." + s; }

// The error code thrown by f (kOk if none); the message goes to *message.
template <typename Fn>
ErrorCode code_of(Fn&& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return ErrorCode::kOk;
}

// Shares storage (a view): same Storage object.
inline bool shares(const Tensor& a, const Tensor& b) { return a.storage() == b.storage(); }

}  // namespace ember::ops::test
