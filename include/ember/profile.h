// Per-step profiling of runs (`ember run --profile`, trtexec's --dumpProfile).
//
//   ember::Profile profile;
//   {
//     ember::ProfileScope scope(profile);   // this thread's runs are recorded while it lives
//     program.run_flat(inputs);
//   }
//   for (const ember::ProfileEntry& e : profile.entries) ...
//
// While a scope is active on a thread, every interpreter node and every engine step that
// runs on that thread appends one entry (engine steps inside an engine node, the engine
// node itself not). Scopes nest (the innermost records); with no scope nothing is timed
// and nothing is recorded, so unprofiled runs pay one thread-local read per node/step.
#pragma once

#include <string>
#include <vector>

namespace ember {

struct ProfileEntry {
  std::string engine;  // engine name for engine steps; empty for interpreter nodes
  std::string name;    // step name (fused op names, e.g. "conv2d_1+batch_norm_1+relu__1") or graph node name
  std::string kind;    // engine step kind ("conv", "winograd", "reorder", ...) or the node's op target
  std::string impl;    // kernel implementation ("jit:avx2", "reference:...", "interpreter")
  double ms = 0;       // wall time of this step in this run
};

struct Profile {
  std::vector<ProfileEntry> entries;  // in execution order, run after run
};

class ProfileScope {
 public:
  explicit ProfileScope(Profile& profile);
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

  // The profile recording on this thread, or nullptr.
  static Profile* active();

 private:
  Profile* previous_;
};

}  // namespace ember
