#include "ember/profile.h"

namespace ember {

namespace {
thread_local Profile* g_active = nullptr;
}

ProfileScope::ProfileScope(Profile& profile) : previous_(g_active) { g_active = &profile; }
ProfileScope::~ProfileScope() { g_active = previous_; }
Profile* ProfileScope::active() { return g_active; }

}  // namespace ember
