// Minimal leveled logging to stderr. Debian 12's Abseil (20220623) predates
// absl/log, so this stands in for it with the same shape:
//   SYNOD_LOG(INFO) << "applied index " << idx;
//   SYNOD_LOG(FATAL) << "..." aborts after writing (a broken invariant on
//   durable state).
// Lines look like: 2026-11-22T05:00:00.123456Z I server.cc:42] message
// Thread-safe: each line is written with one write(2). The level threshold is
// set once at start-up (--log-level) and read atomically.
#ifndef SYNOD_COMMON_LOGGING_H_
#define SYNOD_COMMON_LOGGING_H_

#include <sstream>
#include <string>

#include "absl/strings/string_view.h"

namespace synod::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

// Sets the threshold from etcd's --log-level names: debug, info, warn, error,
// panic, fatal. Returns false (and leaves it unchanged) for other names.
bool SetLogLevel(absl::string_view name);
bool LogEnabled(LogLevel level);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();  // writes the line; aborts for kFatal
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Turns `LogMessage(...).stream() << ...` into a void expression, so that
// SYNOD_LOG can be the whole branch of an unbraced `if` (glog's trick: `&`
// binds looser than `<<`, tighter than `?:`).
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace synod::common

#define SYNOD_LOG_LEVEL_DEBUG ::synod::common::LogLevel::kDebug
#define SYNOD_LOG_LEVEL_INFO ::synod::common::LogLevel::kInfo
#define SYNOD_LOG_LEVEL_WARNING ::synod::common::LogLevel::kWarning
#define SYNOD_LOG_LEVEL_ERROR ::synod::common::LogLevel::kError
#define SYNOD_LOG_LEVEL_FATAL ::synod::common::LogLevel::kFatal
#define SYNOD_LOG(level)                                                    \
  !::synod::common::LogEnabled(SYNOD_LOG_LEVEL_##level)                     \
      ? (void)0                                                             \
      : ::synod::common::LogVoidify() &                                     \
            ::synod::common::LogMessage(SYNOD_LOG_LEVEL_##level, __FILE__,  \
                                        __LINE__)                           \
                .stream()

#endif  // SYNOD_COMMON_LOGGING_H_
