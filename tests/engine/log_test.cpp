#include "ember/log.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace ember {
namespace {

TEST(Log, LevelsFilterAndSinkReceivesMessages) {
  std::vector<std::pair<LogLevel, std::string>> got;
  ScopedLogSink sink([&](LogLevel l, std::string_view m) { got.emplace_back(l, std::string(m)); }, LogLevel::kInfo);
  log_debug("hidden ", 1);
  log_info("shown ", 2);
  log_warning("careful: ", 3.5);
  log_error("bad");
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], std::make_pair(LogLevel::kInfo, std::string("shown 2")));
  EXPECT_EQ(got[1], std::make_pair(LogLevel::kWarning, std::string("careful: 3.5")));
  EXPECT_EQ(got[2].first, LogLevel::kError);
  set_log_level(LogLevel::kOff);
  log_error("nothing");
  EXPECT_EQ(got.size(), 3u);
}

TEST(Log, ScopedSinkRestoresPrevious) {
  std::vector<std::string> outer, inner;
  ScopedLogSink a([&](LogLevel, std::string_view m) { outer.emplace_back(m); }, LogLevel::kWarning);
  {
    ScopedLogSink b([&](LogLevel, std::string_view m) { inner.emplace_back(m); }, LogLevel::kDebug);
    log_debug("x");
  }
  EXPECT_EQ(log_level(), LogLevel::kWarning);
  log_debug("y");
  log_warning("z");
  EXPECT_EQ(inner, std::vector<std::string>{"x"});
  EXPECT_EQ(outer, std::vector<std::string>{"z"});
}

TEST(Log, DefaultSinkWritesPrefixedLinesToStderr) {
  ScopedLogSink keep(nullptr, LogLevel::kWarning);  // default sink
  testing::internal::CaptureStderr();
  log_warning("engine 'a' was built by Ember 0.0.1");
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "ember: warning: engine 'a' was built by Ember 0.0.1\n");
}

TEST(Log, LevelNames) {
  EXPECT_EQ(log_level_from_name("DEBUG"), LogLevel::kDebug);
  EXPECT_EQ(log_level_from_name("warn"), LogLevel::kWarning);
  EXPECT_EQ(log_level_from_name("off"), LogLevel::kOff);
  EXPECT_EQ(log_level_from_name("loud"), std::nullopt);
  EXPECT_STREQ(log_level_name(LogLevel::kError), "error");
}

TEST(Log, ConcurrentLoggingIsSerialized) {
  std::atomic<int> in_sink{0};
  int count = 0;  // guarded by the logger's serialization
  bool overlapped = false;
  ScopedLogSink sink(
      [&](LogLevel, std::string_view) {
        if (in_sink.fetch_add(1) != 0) overlapped = true;
        ++count;
        in_sink.fetch_sub(1);
      },
      LogLevel::kInfo);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < 500; ++i) log_info("message ", i);
    });
  }
  std::thread setter([] {
    for (int i = 0; i < 100; ++i) set_log_level(LogLevel::kInfo);
  });
  for (auto& t : threads) t.join();
  setter.join();
  EXPECT_EQ(count, 2000);
  EXPECT_FALSE(overlapped);
}

}  // namespace
}  // namespace ember
