// Truncates and corrupts every fixture at many deterministic pseudo-random places: reading
// must either succeed or throw ember::Error, never crash (the suite also runs under ASan+UBSan).
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>

#include "archive/test_util.h"
#include "ember/pt2.h"

namespace ember {
namespace {

using namespace ember::testing;

class Pt2Sweep : public ::testing::TestWithParam<std::string> {};

// Reads and, when that succeeds, touches every tensor element through its view.
size_t try_read(const std::shared_ptr<Storage>& bytes, size_t* failures) {
  try {
    Pt2Archive a = read_pt2_from_memory(bytes, "swept.pt2", {true, true});
    size_t sum = 0;
    for (const auto& m : a.models)
      for (const auto& e : m.weights)
        if (e.tensor.defined() && e.tensor.numel() > 0) sum += static_cast<uint8_t>(element_as_double(e.tensor, e.tensor.numel() - 1) != 0);
    return sum;
  } catch (const Error&) {
    ++*failures;
    return 0;
  }
}

TEST_P(Pt2Sweep, TruncationsAndFlipsNeverCrash) {
  const std::string name = GetParam();
  const std::vector<uint8_t> original = read_file(fixture(name + ".pt2"));
  ASSERT_FALSE(original.empty());
  const size_t n = original.size();
  // Big files get fewer probes (a flip usually costs a full parse of the model JSON).
  const bool big = n > (size_t{8} << 20);
  const int probes = big ? 30 : 100;
  const int flips = big ? 30 : 120;
  std::mt19937_64 rng(0x5eed ^ n);
  auto buf = to_storage(original);
  size_t failures = 0;
  const auto start = std::chrono::steady_clock::now();

  // Truncations: a borrowed prefix of the same buffer (no copies).
  for (int i = 0; i < probes; ++i) {
    size_t cut = (i % 3 == 0) ? n - 1 - rng() % std::min<size_t>(n, 4096) : rng() % n;
    try_read(Storage::borrow(buf->data(), cut, buf), &failures);
  }
  EXPECT_EQ(failures, static_cast<size_t>(probes)) << "every truncated file must fail";

  // Byte flips: half anywhere, half in the central directory / end records (last 16 KiB)
  // and the first local header, where structure lives.
  size_t flip_failures = 0;
  for (int i = 0; i < flips; ++i) {
    size_t pos;
    if (i % 2 == 0) pos = rng() % n;
    else if (i % 4 == 1) pos = n - 1 - rng() % std::min<size_t>(n, 16384);
    else pos = rng() % std::min<size_t>(n, 128);
    uint8_t mask = static_cast<uint8_t>(1u << (rng() % 8));
    buf->data()[pos] ^= mask;
    try_read(buf, &flip_failures);
    buf->data()[pos] ^= mask;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << name << ": " << probes << " truncations, " << flips << " flips (" << flip_failures
            << " rejected) in " << seconds << " s\n";
  // The untouched file still reads.
  size_t none = 0;
  try_read(buf, &none);
  EXPECT_EQ(none, 0u);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Pt2Sweep, ::testing::ValuesIn(fixture_names()));

}  // namespace
}  // namespace ember
