// Reads .pt2 archives with Ember and writes them back with Ember, for the PyTorch-side check
// (tests/torch/check_torch_load.py loads the written copies with torch.export.load).
//
// usage: pt2_roundtrip OUTDIR IN.pt2...
#include <cstdio>
#include <filesystem>

#include "ember/pt2.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUTDIR IN.pt2...\n", argv[0]);
    return 2;
  }
  std::filesystem::path outdir = argv[1];
  std::filesystem::create_directories(outdir);
  try {
    for (int i = 2; i < argc; ++i) {
      std::filesystem::path in = argv[i];
      ember::Pt2Archive archive = ember::read_pt2(in.string(), {.verify_crc = true});
      std::filesystem::path out = outdir / in.filename();
      ember::write_pt2(archive, out.string());
      std::printf("%s -> %s\n", in.string().c_str(), out.string().c_str());
    }
  } catch (const ember::Error& e) {
    std::fprintf(stderr, "pt2_roundtrip: %s\n", e.what());
    return 1;
  }
  return 0;
}
