// The daemon as a person runs it: real `lockd` processes on free loopback ports, checked with the
// real `lockctl`. Every test stops what it starts (Process kills and reaps in its destructor).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "support/process.h"

namespace lockd {
namespace {

using ::testing::HasSubstr;
using testing::Process;
using testing::RunCommand;
using testing::TempDir;
using namespace std::chrono_literals;

struct NodePorts {
  int client, peer, http;
  std::string client_addr() const { return "127.0.0.1:" + std::to_string(client); }
};

NodePorts PickPorts() {
  auto p = testing::FreePorts(3);
  return {p[0], p[1], p[2]};
}

std::unique_ptr<Process> StartLockd(const NodePorts& ports, const std::string& data_dir,
                                    const std::string& log,
                                    const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv{LOCKD_BINARY,
                                "--id",
                                "1",
                                "--client-addr",
                                ports.client_addr(),
                                "--peer-addr",
                                "127.0.0.1:" + std::to_string(ports.peer),
                                "--http-addr",
                                "127.0.0.1:" + std::to_string(ports.http),
                                "--data-dir",
                                data_dir,
                                "--plaintext"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv, log);
}

testing::CommandResult Lockctl(std::vector<std::string> args) {
  args.insert(args.begin(), LOCKCTL_BINARY);
  return RunCommand(args, 20s);
}

bool Serving(const std::string& endpoint) {
  return Lockctl({"--endpoints", endpoint, "health"}).exit_code == 0;
}

TEST(Daemon, ServesHealthAndExitsZeroOnSigterm) {
  TempDir dir;
  NodePorts ports = PickPorts();
  auto node = StartLockd(ports, dir.path() + "/data", dir.path() + "/lockd.log");
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(ports.client_addr()); }, 30s))
      << node->ReadLog();

  auto table = Lockctl({"--endpoints", ports.client_addr(), "health"});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_THAT(table.output, HasSubstr("SERVING"));

  node->Signal(SIGTERM);
  auto code = node->Wait(30s);
  ASSERT_TRUE(code.has_value()) << "lockd did not exit within 30 s of SIGTERM";
  EXPECT_EQ(*code, 0) << node->ReadLog();
  EXPECT_THAT(node->ReadLog(), HasSubstr("stopped"));
}

TEST(Daemon, ServesHealthzAndMetricsOverHttp) {
  TempDir dir;
  NodePorts ports = PickPorts();
  auto node = StartLockd(ports, dir.path() + "/data", dir.path() + "/lockd.log");
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(ports.client_addr()); }, 30s));
  const std::string http = "127.0.0.1:" + std::to_string(ports.http);
  auto healthz = RunCommand({"/usr/bin/curl", "-s", "http://" + http + "/healthz"}, 20s);
  EXPECT_EQ(healthz.output, "OK\n");
  auto readyz = RunCommand({"/usr/bin/curl", "-s", "http://" + http + "/readyz"}, 20s);
  EXPECT_EQ(readyz.output, "READY\n");
  auto metrics = RunCommand({"/usr/bin/curl", "-s", "http://" + http + "/metrics"}, 20s);
  EXPECT_THAT(metrics.output, HasSubstr("# TYPE lockd_up gauge\nlockd_up 1\n"));
}

TEST(Daemon, ExitsZeroOnSigint) {
  TempDir dir;
  NodePorts ports = PickPorts();
  auto node = StartLockd(ports, dir.path() + "/data", dir.path() + "/lockd.log");
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(ports.client_addr()); }, 30s));
  node->Signal(SIGINT);
  auto code = node->Wait(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
}

TEST(Daemon, RefusesADataDirAnotherProcessHolds) {
  TempDir dir;
  NodePorts first_ports = PickPorts();
  auto first = StartLockd(first_ports, dir.path() + "/data", dir.path() + "/first.log");
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(first_ports.client_addr()); }, 30s));

  NodePorts second_ports = PickPorts();
  auto second = StartLockd(second_ports, dir.path() + "/data", dir.path() + "/second.log");
  auto code = second->Wait(30s);
  ASSERT_TRUE(code.has_value()) << "the second lockd kept running on a held data dir";
  EXPECT_NE(*code, 0);
  EXPECT_THAT(second->ReadLog(), HasSubstr("in use by another process"));
  EXPECT_TRUE(Serving(first_ports.client_addr())) << "the first node must be unaffected";
}

TEST(Daemon, RefusesAnAddressAnotherLockdListensOn) {
  // gRPC's default SO_REUSEPORT would let a second lockd bind the same address and take a share
  // of the connections (found by review: a likely cause of handshakes failing at random in tests).
  TempDir dir;
  NodePorts first_ports = PickPorts();
  auto first = StartLockd(first_ports, dir.path() + "/a", dir.path() + "/first.log");
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(first_ports.client_addr()); }, 30s));
  for (int shared : {0, 1, 2}) {  // the client, the peer, the HTTP port
    NodePorts second_ports = PickPorts();
    if (shared == 0) second_ports.client = first_ports.client;
    if (shared == 1) second_ports.peer = first_ports.peer;
    if (shared == 2) second_ports.http = first_ports.http;
    const std::string name = "/second" + std::to_string(shared);
    auto second = StartLockd(second_ports, dir.path() + name, dir.path() + name + ".log");
    auto code = second->Wait(30s);
    ASSERT_TRUE(code.has_value()) << "a second lockd kept running on a port in use";
    EXPECT_NE(*code, 0);
    EXPECT_THAT(second->ReadLog(), HasSubstr("cannot listen on")) << "shared port " << shared;
  }
  EXPECT_TRUE(Serving(first_ports.client_addr())) << "the first node must be unaffected";
}

TEST(Daemon, ReusesItsDataDirAfterKill9) {
  TempDir dir;
  NodePorts ports = PickPorts();
  auto node = StartLockd(ports, dir.path() + "/data", dir.path() + "/a.log");
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(ports.client_addr()); }, 30s));
  node->Kill();  // the kernel drops the flock with the process
  auto again = StartLockd(ports, dir.path() + "/data", dir.path() + "/b.log");
  EXPECT_TRUE(testing::WaitFor([&] { return Serving(ports.client_addr()); }, 30s))
      << again->ReadLog();
}

TEST(Daemon, RejectsBadFlagsWithAClearError) {
  TempDir dir;
  auto r = RunCommand({LOCKD_BINARY, "--client-addr", "nonsense", "--data-dir", dir.path()}, 20s);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--client-addr"));
  auto id = RunCommand({LOCKD_BINARY, "--id", "0", "--data-dir", dir.path()}, 20s);
  EXPECT_EQ(id.exit_code, 2);
  EXPECT_THAT(id.output, HasSubstr("--id"));
  // Neither TLS nor --plaintext: refused, naming both (plaintext is never a default).
  auto none = RunCommand({LOCKD_BINARY, "--data-dir", dir.path()}, 20s);
  EXPECT_EQ(none.exit_code, 2) << none.output;
  EXPECT_THAT(none.output, HasSubstr("give --tls-cert, --tls-key and --peer-ca"));
  EXPECT_THAT(none.output, HasSubstr("or --plaintext"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/cluster")) << "nothing was written";
  // An empty --join (once: a harness's empty list) must not bootstrap a cluster of its own.
  for (const char* join : {"", ","}) {
    auto empty = RunCommand({LOCKD_BINARY, "--data-dir", dir.path(), "--join", join}, 20s);
    EXPECT_EQ(empty.exit_code, 2) << empty.output;
    EXPECT_THAT(empty.output, HasSubstr("--join names no address"));
  }
}

// A planted bug (--testing-unsafe-fault, fault tests only) needs the flag on the command line AND
// LOCKD_TESTING_UNSAFE_FAULTS=1 in the environment; a TOML key cannot switch one on.
TEST(Daemon, RefusesAPlantedBugFromAConfigFileOrWithoutTheTestingEnvironment) {
  TempDir dir;
  const std::vector<std::string> flag{"--testing-unsafe-fault=skip-token-increment", "--data-dir",
                                      dir.path() + "/data", "--plaintext"};
  std::vector<std::string> bare{"/usr/bin/env", "-u", "LOCKD_TESTING_UNSAFE_FAULTS", LOCKD_BINARY};
  bare.insert(bare.end(), flag.begin(), flag.end());
  auto refused = RunCommand(bare, 20s);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("LOCKD_TESTING_UNSAFE_FAULTS=1"));

  std::vector<std::string> wrong{"/usr/bin/env", "LOCKD_TESTING_UNSAFE_FAULTS=yes", LOCKD_BINARY};
  wrong.insert(wrong.end(), flag.begin(), flag.end());
  EXPECT_EQ(RunCommand(wrong, 20s).exit_code, 2);

  // Armed, the flag is still checked (an unknown name names the known ones), which shows the env
  // var reached the knob's parsing rather than being refused earlier.
  auto unknown =
      RunCommand({"/usr/bin/env", "LOCKD_TESTING_UNSAFE_FAULTS=1", LOCKD_BINARY,
                  "--testing-unsafe-fault=no-such-bug", "--data-dir", dir.path(), "--plaintext"},
                 20s);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.output, HasSubstr("skip-token-increment"));

  const std::string config = dir.path() + "/lockd.toml";
  {
    FILE* f = fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fprintf(f, "data-dir = \"%s/data\"\ntesting-unsafe-fault = [\"skip-token-increment\"]\n",
            dir.path().c_str());
    fclose(f);
  }
  auto from_config = RunCommand(
      {"/usr/bin/env", "LOCKD_TESTING_UNSAFE_FAULTS=1", LOCKD_BINARY, "--config", config}, 20s);
  EXPECT_NE(from_config.exit_code, 0) << from_config.output;
  EXPECT_THAT(from_config.output, HasSubstr("testing-unsafe-fault"));
  EXPECT_THAT(from_config.output, ::testing::Not(HasSubstr("TESTING ONLY")));
}

// Every line names the node and its term; --log-format json writes one JSON object per line,
// which Debian's python3 json module reads back (messages with quotes included).
TEST(Daemon, LogLinesNameTheNodeAndTermAndJsonLinesParse) {
  TempDir dir;
  NodePorts ports = PickPorts();
  const std::string log = dir.path() + "/lockd.log";
  auto node = StartLockd(ports, dir.path() + "/data", log, {"--log-format", "json"});
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(ports.client_addr()); }, 30s))
      << node->ReadLog();
  node->Signal(SIGTERM);
  ASSERT_TRUE(node->Wait(30s).has_value());
  // The harness's own first line is not lockd's: skip lines that do not start with '{'.
  const std::string check =
      "import json, sys\n"
      "n = 0\n"
      "terms = set()\n"
      "for line in open(sys.argv[1]):\n"
      "    if not line.startswith('{'): continue\n"
      "    r = json.loads(line)\n"
      "    assert r['node'] == 1 and r['level'] and r['ts'].endswith('Z') and 'msg' in r, line\n"
      "    terms.add(r['term']); n += 1\n"
      "assert n >= 3, n\n"
      "assert max(terms) >= 1, terms\n"
      "print('lines', n)\n";
  auto r = RunCommand({"/usr/bin/python3", "-c", check, log}, 20s);
  EXPECT_EQ(r.exit_code, 0) << r.output << node->ReadLog();
  EXPECT_THAT(r.output, HasSubstr("lines"));

  auto bad = RunCommand({LOCKD_BINARY, "--log-format", "xml", "--data-dir", dir.path()}, 20s);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("--log-format 'xml' is not one of text, json"));
}

TEST(Daemon, TextLogLinesNameTheNodeAndTerm) {
  TempDir dir;
  NodePorts ports = PickPorts();
  auto node = StartLockd(ports, dir.path() + "/data", dir.path() + "/lockd.log");
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(ports.client_addr()); }, 30s))
      << node->ReadLog();
  EXPECT_THAT(node->ReadLog(),
              ::testing::ContainsRegex("\\[info\\] \\[node 1 term [1-9][0-9]*\\] "));
}

TEST(Daemon, ReadsItsTomlConfigFile) {
  TempDir dir;
  NodePorts ports = PickPorts();
  const std::string config = dir.path() + "/lockd.toml";
  {
    FILE* f = fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fprintf(f,
            "id = 3\nclient-addr = \"%s\"\npeer-addr = \"127.0.0.1:%d\"\n"
            "http-addr = \"127.0.0.1:%d\"\ndata-dir = \"%s/data\"\nlog-level = \"debug\"\n"
            "plaintext = true\n",
            ports.client_addr().c_str(), ports.peer, ports.http, dir.path().c_str());
    fclose(f);
  }
  Process node({LOCKD_BINARY, "--config", config}, dir.path() + "/lockd.log");
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(ports.client_addr()); }, 30s))
      << node.ReadLog();
  EXPECT_THAT(node.ReadLog(), HasSubstr("node 3"));
}

TEST(Lockctl, ReportsUnreachableEndpointsAndFailsInJsonToo) {
  TempDir dir;
  NodePorts ports = PickPorts();
  auto node = StartLockd(ports, dir.path() + "/data", dir.path() + "/lockd.log");
  ASSERT_TRUE(testing::WaitFor([&] { return Serving(ports.client_addr()); }, 30s));
  const std::string dead = "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]);

  auto r = Lockctl(
      {"--endpoints", ports.client_addr() + "," + dead, "--timeout-ms", "500", "--json", "health"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr("\"endpoint\":\"" + ports.client_addr() + "\",\"status\":\"SERVING\""));
  EXPECT_THAT(r.output, HasSubstr("\"endpoint\":\"" + dead + "\",\"status\":\"UNREACHABLE\""));
}

TEST(Lockctl, TakesEndpointsFromTheEnvironmentAndRejectsBadOnes) {
  auto r = Lockctl({"--endpoints", "not-an-address", "health"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("host:port"));
}

}  // namespace
}  // namespace lockd
