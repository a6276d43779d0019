// The README's JSON gateway examples, run with curl against a real server
// process: every `curl` (and `TOKEN=`) line of the "## JSON gateway"
// section's sh blocks runs in order in one shell, with localhost:2379
// replaced by the server's client URL, and the `# ` lines after a command
// are its expected output, line by line ("..." matches anything). A watch
// example runs for at most 2 s (its stream does not end by itself).
//
// Against real etcd (SYNOD_TEST_SERVER=etcd) the same examples pass, which
// is how the README's expected output was checked.
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

struct Example {
  std::string command;
  std::vector<std::string> expected;  // output lines; "..." is a wildcard
};

// The source tree's README (SYNOD_SOURCE_DIR comes from CMake: __FILE__ is
// relative under ccache's base_dir).
std::string ReadReadme() {
  std::ifstream in(std::string(SYNOD_SOURCE_DIR) + "/README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The examples of the README's "## JSON gateway" section.
std::vector<Example> GatewayExamples(const std::string& readme) {
  std::vector<Example> out;
  size_t start = readme.find("\n## JSON gateway\n");
  if (start == std::string::npos) return out;
  size_t end = readme.find("\n## ", start + 1);
  std::string section = readme.substr(start, end - start);
  bool in_sh = false;
  for (absl::string_view line : absl::StrSplit(section, '\n')) {
    if (absl::StartsWith(line, "```")) {
      in_sh = line == "```sh";
      continue;
    }
    if (!in_sh) continue;
    if (absl::StartsWith(line, "curl ") || absl::StartsWith(line, "TOKEN=")) {
      out.push_back(Example{std::string(line), {}});
    } else if (absl::StartsWith(line, "# ") && !out.empty()) {
      out.back().expected.push_back(std::string(line.substr(2)));
    }
  }
  return out;
}

// `pattern` with "..." matching anything and everything else literal.
bool Matches(const std::string& line, const std::string& pattern) {
  std::string re;
  std::vector<absl::string_view> parts = absl::StrSplit(pattern, "...");
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) re += ".*";
    for (char c : parts[i]) {
      if (std::strchr("\\^$.|?*+()[]{}", c) != nullptr) re += '\\';
      re += c;
    }
  }
  return std::regex_match(line, std::regex(re));
}

class GatewayReadmeTest : public ServerTest {};

TEST_F(GatewayReadmeTest, ReadmeCurlExamplesWork) {
  const std::string url =
      absl::StrCat("http://", server_->Endpoint());
  // Until the gateway is wired into the member's client URL, there is
  // nothing to run.
  CmdResult probe = RunCommand(
      {"/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
       url + "/v3/kv/range", "-d", "{\"key\": \"YQ==\"}"},
      std::nullopt, absl::Seconds(10));
  ASSERT_EQ(probe.exit_code, 0) << probe.err;
  if (probe.out == "404") {
    GTEST_SKIP() << "the JSON gateway is not served on the client URL";
  }
  std::vector<Example> examples = GatewayExamples(ReadReadme());
  ASSERT_GE(examples.size(), 10u) << "README's JSON gateway section not found";
  // One shell for all, so TOKEN= carries over; a marker before each.
  std::string script;
  for (size_t i = 0; i < examples.size(); ++i) {
    std::string cmd = absl::StrReplaceAll(
        examples[i].command, {{"http://localhost:2379", url}});
    if (absl::StrContains(cmd, "/v3/watch")) {
      cmd = absl::StrReplaceAll(cmd, {{"curl -s -N ", "curl -s -N --max-time 2 "}});
    }
    absl::StrAppend(&script, "echo '@@", i, "'\n", cmd, "\necho\n");
  }
  CmdResult r = RunCommand({"/bin/bash", "-c", script}, std::nullopt,
                           absl::Seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << r.out;
  std::vector<std::string> blocks = absl::StrSplit(r.out, "@@");
  ASSERT_EQ(blocks.size(), examples.size() + 1) << r.out;
  for (size_t i = 0; i < examples.size(); ++i) {
    const Example& ex = examples[i];
    std::vector<std::string> lines;
    bool first = true;
    for (absl::string_view l : absl::StrSplit(blocks[i + 1], '\n')) {
      if (first) {  // the marker's own number
        first = false;
        continue;
      }
      if (!l.empty()) lines.push_back(std::string(l));
    }
    if (ex.expected.empty()) continue;
    ASSERT_EQ(lines.size(), ex.expected.size())
        << ex.command << "\n" << blocks[i + 1];
    for (size_t j = 0; j < lines.size(); ++j) {
      EXPECT_TRUE(Matches(lines[j], ex.expected[j]))
          << ex.command << "\n  got:  " << lines[j]
          << "\n  want: " << ex.expected[j];
    }
  }
}

}  // namespace
}  // namespace synod::testing
