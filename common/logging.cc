#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace synod::common {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace

bool SetLogLevel(absl::string_view name) {
  LogLevel l;
  if (name == "debug") l = LogLevel::kDebug;
  else if (name == "info") l = LogLevel::kInfo;
  else if (name == "warn") l = LogLevel::kWarning;
  else if (name == "error") l = LogLevel::kError;
  else if (name == "panic" || name == "fatal") l = LogLevel::kFatal;
  else return false;
  g_level.store(static_cast<int>(l));
  return true;
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

LogMessage::LogMessage(LogLevel level, const char* file, int line)
    : level_(level) {
  static const char kLetters[] = "DIWEF";
  const char* base = std::strrchr(file, '/');
  stream_ << absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(),
                              absl::UTCTimeZone())
          << ' ' << kLetters[static_cast<int>(level)] << ' '
          << (base ? base + 1 : file) << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  std::string s = stream_.str();
  ssize_t unused = ::write(STDERR_FILENO, s.data(), s.size());
  (void)unused;
  if (level_ == LogLevel::kFatal) std::abort();
}

}  // namespace synod::common
