#include <gtest/gtest.h>

#include <cmath>

#include "ember/tensor.h"

namespace ember {
namespace {

TEST(Tensor, EmptyIsContiguousAndOwned) {
  Tensor t = Tensor::empty({2, 3}, DType::kFloat32);
  EXPECT_EQ(t.strides(), (Shape{3, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(t.writable());
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
}

TEST(Tensor, ViewOutsideStorageIsRejected) {
  auto s = Storage::allocate(16);
  EXPECT_THROW(Tensor(s, DType::kFloat32, {5}, {1}, 0), Error);
  EXPECT_THROW(Tensor(s, DType::kFloat32, {2}, {1}, 3), Error);
  EXPECT_THROW(Tensor(s, DType::kFloat32, {2}, {-1}, 0), Error);
  EXPECT_NO_THROW(Tensor(s, DType::kFloat32, {2}, {-1}, 1));
  EXPECT_THROW(Tensor(s, DType::kFloat32, {int64_t{1} << 62, 4}, {4, 1}, 0), Error);
  EXPECT_THROW(Tensor(s, DType::kFloat32, {-1}, {1}, 0), Error);
}

TEST(Tensor, TransposedCopyAndContiguous) {
  Tensor t = Tensor::empty({2, 3}, DType::kFloat32);
  for (int i = 0; i < 6; ++i) t.data<float>()[i] = static_cast<float>(i);
  Tensor tt = t.as_strided({3, 2}, {1, 3}, 0);
  EXPECT_FALSE(tt.is_contiguous());
  Tensor c = tt.contiguous();
  ASSERT_TRUE(c.is_contiguous());
  const float expected[] = {0, 3, 1, 4, 2, 5};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(c.data<float>()[i], expected[i]);
  EXPECT_EQ(element_as_double(tt, 1), 3.0);
}

TEST(Tensor, ViewInfersMinusOne) {
  Tensor t = Tensor::zeros({4, 6}, DType::kInt64);
  EXPECT_EQ(t.view({-1, 3}).sizes(), (Shape{8, 3}));
  EXPECT_THROW(t.view({5, -1}), Error);
  EXPECT_THROW(t.view({-1, -1}), Error);
}

TEST(Tensor, NegativeDimsNormalize) {
  Tensor t = Tensor::zeros({2, 3, 4}, DType::kFloat32);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(normalize_dim(-3, 3), 0);
  EXPECT_THROW(normalize_dim(3, 3), Error);
}

TEST(Half, RoundTripsAndRounds) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f}) {
    EXPECT_EQ(half_to_float(float_to_half(f)), f) << f;
  }
  EXPECT_TRUE(std::isinf(half_to_float(float_to_half(70000.0f))));
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(NAN))));
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
}

TEST(DType, Names) {
  EXPECT_EQ(*dtype_from_name("F32"), DType::kFloat32);
  EXPECT_EQ(*dtype_from_name("torch.int64"), DType::kInt64);
  EXPECT_EQ(*dtype_from_schema(13), DType::kBFloat16);
  EXPECT_FALSE(dtype_from_schema(99).has_value());
  EXPECT_EQ(dtype_size(DType::kBool), 1u);
}

}  // namespace
}  // namespace ember
