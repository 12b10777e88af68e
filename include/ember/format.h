// Small text helpers shared by reports (CLI, compile reports).
#pragma once

#include <cstdint>
#include <string>

namespace ember {

// "512 B", "20.8 KiB", "44.61 MiB", "1.20 GiB".
std::string human_bytes(uint64_t n);

}  // namespace ember
