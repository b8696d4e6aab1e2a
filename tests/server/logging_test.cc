#include "server/logging.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

namespace lockd::server {
namespace {

/// The line `message` becomes in `format` (node 7, term 5).
std::string Line(const std::string& format, const std::string& message) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger("test", sink);
  logger.set_formatter(MakeLogFormatter(7, format));
  SetLogTerm(5);
  logger.info("{}", message);
  logger.flush();
  return out.str();
}

TEST(Logging, TextLinesNameTheNodeAndTerm) {
  const std::string line = Line("text", "leader is 2");
  EXPECT_NE(line.find("[info] [node 7 term 5] leader is 2\n"), std::string::npos) << line;
}

TEST(Logging, JsonLinesEscapeQuotesControlCharactersAndBrokenUtf8) {
  const std::string line = Line("json", "a \"quoted\" \\ path\nnext\x01 ok é \xff end");
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;  // one line
  EXPECT_NE(line.find(R"("level":"info","node":7,"term":5,"msg":)"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("msg":"a \"quoted\" \\ path\nnext\u0001 ok é )"
                      "\xef\xbf\xbd"
                      R"( end"})"),
            std::string::npos)
      << line;
  EXPECT_EQ(line.rfind("{\"ts\":\"", 0), 0u) << line;
}

TEST(Logging, OnlyTextAndJsonAreFormats) {
  EXPECT_TRUE(ValidateLogFormat("text").ok());
  EXPECT_TRUE(ValidateLogFormat("json").ok());
  EXPECT_EQ(ValidateLogFormat("xml").message(), "--log-format 'xml' is not one of text, json");
}

}  // namespace
}  // namespace lockd::server
