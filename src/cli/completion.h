// `lockctl completion bash`: a bash completion script generated from lockctl's own command
// tree, so it always offers exactly the commands, subcommands and flags the parser accepts.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace lockd::cli {

/// The script: `source <(lockctl completion bash)`, or install it as
/// /usr/share/bash-completion/completions/lockctl.
std::string BashCompletion(const CLI::App& app);

}  // namespace lockd::cli
