#include "faults/nemesis/nemesis.h"

#include <time.h>

#include <filesystem>
#include <iostream>
#include <thread>

#include "faults/nemesis/proxy.h"

namespace lockd::faults {

using namespace std::chrono_literals;

namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      out += ' ';
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string IpOf(const std::string& host_port) {
  return host_port.substr(0, host_port.rfind(':'));
}

std::string FillerPath(NetnsCluster& c, int i) {
  return c.data_dir(i) + "/zz-nemesis-filler";
}

}  // namespace

int64_t BootNanos() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

EventLog::EventLog(std::string path) : path_(std::move(path)), out_(path_, std::ios::app) {}

void EventLog::Record(const std::string& kind, const std::string& target,
                      const std::string& detail) {
  const std::string line = "{\"t_ns\":" + std::to_string(BootNanos()) +
                           ",\"kind\":" + JsonString(kind) + ",\"target\":" + JsonString(target) +
                           ",\"detail\":" + JsonString(detail) + "}";
  std::lock_guard lock(mu_);
  out_ << line << "\n";
  out_.flush();
  lines_.push_back(line);
  std::cerr << "[nemesis] " << line << "\n";
}

std::vector<std::string> EventLog::Lines() {
  std::lock_guard lock(mu_);
  return lines_;
}

// --- network ------------------------------------------------------------------------------------

std::string Nemesis::NodeList(const std::set<int>& nodes) const {
  std::string s;
  for (int j : nodes) s += (s.empty() ? "" : ", ") + IpOf(c_.client_addr(j));
  return "{ " + s + " }";
}

std::string Nemesis::Apply() {
  for (int i = 0; i < c_.size(); ++i) {
    std::string rules;
    if (auto it = no_input_.find(i); it != no_input_.end() && !it->second.empty()) {
      rules += "    ip saddr " + NodeList(it->second) + " drop\n";
    }
    if (auto it = loss_.find(i); it != loss_.end() && it->second > 0) {
      rules +=
          "    iifname != \"lo\" numgen random mod 100 < " + std::to_string(it->second) + " drop\n";
    }
    std::string out_rules;
    if (auto it = no_output_.find(i); it != no_output_.end() && !it->second.empty()) {
      out_rules += "    ip daddr " + NodeList(it->second) + " drop\n";
    }
    // Declaring the table first makes the delete succeed when it did not exist: one atomic swap.
    const std::string ruleset =
        "table inet lkf\ndelete table inet lkf\n"
        "table inet lkf {\n  chain input {\n    type filter hook input priority 0; policy "
        "accept;\n" +
        rules + "  }\n  chain output {\n    type filter hook output priority 0; policy accept;\n" +
        out_rules + "  }\n}\n";
    const std::string file = c_.data_dir(i) + "/../nft-" + std::to_string(i) + ".rules";
    std::ofstream(file) << ruleset;
    // `nft -f` in the node's namespace (the file is on the shared file system).
    auto r = c_.network().RunIn(c_.SlotOf(i), {"/usr/sbin/nft", "-f", file});
    if (r.exit_code != 0) return "nft in node " + std::to_string(c_.id(i)) + ": " + r.output;
  }
  return "";
}

std::string Nemesis::Isolate(int i) {
  for (int j = 0; j < c_.size(); ++j) {
    if (j == i) continue;
    no_input_[i].insert(j);
    no_output_[i].insert(j);
    no_input_[j].insert(i);
    no_output_[j].insert(i);
  }
  log_.Record("partition", std::to_string(c_.id(i)), "isolated from every other node");
  return Apply();
}

std::string Nemesis::Split(const std::vector<std::vector<int>> groups) {
  std::map<int, int> group_of;
  std::string detail;
  for (size_t g = 0; g < groups.size(); ++g) {
    detail += g ? " | " : "";
    for (int i : groups[g]) {
      group_of[i] = static_cast<int>(g);
      detail += std::to_string(c_.id(i)) + " ";
    }
  }
  for (const auto& [i, gi] : group_of) {
    for (const auto& [j, gj] : group_of) {
      if (gi == gj) continue;
      no_input_[i].insert(j);
      no_output_[i].insert(j);
    }
  }
  log_.Record("partition", "split", detail);
  return Apply();
}

std::string Nemesis::Bridge(const std::vector<int>& left, int middle,
                            const std::vector<int>& right) {
  std::string detail;
  for (int l : left) {
    for (int r : right) {
      no_input_[l].insert(r);
      no_output_[l].insert(r);
      no_input_[r].insert(l);
      no_output_[r].insert(l);
    }
    detail += std::to_string(c_.id(l)) + " ";
  }
  detail += "<-> " + std::to_string(c_.id(middle)) + " <->";
  for (int r : right) detail += " " + std::to_string(c_.id(r));
  log_.Record("partition", "bridge", detail);
  return Apply();
}

std::string Nemesis::DropOneWay(int from, int to) {
  no_input_[to].insert(from);
  log_.Record("partition", std::to_string(c_.id(from)) + "->" + std::to_string(c_.id(to)),
              "one-way: packets from " + std::to_string(c_.id(from)) + " to " +
                  std::to_string(c_.id(to)) + " dropped");
  return Apply();
}

std::string Nemesis::Loss(int i, int percent) {
  loss_[i] = percent;
  log_.Record("loss", std::to_string(c_.id(i)), std::to_string(percent) + "% of input dropped");
  return Apply();
}

std::string Nemesis::Delay(Ms delay, Ms jitter) {
  if (!c_.proxy()) return "the cluster has no peer proxy (NetnsClusterOptions::peer_proxy)";
  c_.proxy()->SetDelay(delay, jitter);
  delayed_ = delay.count() > 0 || jitter.count() > 0;
  log_.Record("delay", "peer-links",
              std::to_string(delay.count()) + " ms + [0, " + std::to_string(jitter.count()) +
                  "] ms jitter per chunk");
  return "";
}

// --- processes ----------------------------------------------------------------------------------

void Nemesis::Kill(int i) {
  c_.Kill(i);
  killed_.insert(i);
  paused_.erase(i);
  log_.Record("kill", std::to_string(c_.id(i)), "SIGKILL");
}

void Nemesis::Restart(int i) {
  c_.Start(i);
  killed_.erase(i);
  log_.Record("heal", std::to_string(c_.id(i)), "restarted after kill");
}

void Nemesis::Pause(int i) {
  c_.Pause(i);
  paused_.insert(i);
  log_.Record("stop", std::to_string(c_.id(i)), "SIGSTOP");
}

void Nemesis::Resume(int i) {
  c_.Resume(i);
  paused_.erase(i);
  log_.Record("cont", std::to_string(c_.id(i)), "SIGCONT");
}

// --- disks --------------------------------------------------------------------------------------

void Nemesis::SlowDisk(int i, Ms per_sync) {
  c_.SetSyncDelay(i, per_sync);
  if (per_sync.count() > 0) {
    slow_.insert(i);
  } else {
    slow_.erase(i);
  }
  log_.Record("slow_disk", std::to_string(c_.id(i)),
              std::to_string(per_sync.count()) + " ms per fsync");
}

std::string Nemesis::FillDisk(int i) {
  // Only ever the harness's own small tmpfs: anywhere else this would fill the CI host's disk
  // ($TMPDIR, or a /tmp that is itself a big tmpfs).
  if (!c_.network().IsHarnessTmpfs(c_.data_dir(i))) {
    return "refused: node " + std::to_string(c_.id(i)) + "'s data dir " + c_.data_dir(i) +
           " is not a tmpfs this harness mounted (NetnsClusterOptions::tmpfs_mb)";
  }
  const std::string path = FillerPath(c_, i);
  std::error_code ec;
  const auto space = std::filesystem::space(c_.data_dir(i), ec);
  if (ec) return "statfs " + c_.data_dir(i) + ": " + ec.message();
  // Write until ENOSPC: a tmpfs has no reserved blocks, so this leaves nothing free.
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return "cannot create " + path;
  std::string block(1 << 16, 'F');
  uint64_t written = 0;
  while (written < space.capacity &&
         std::fwrite(block.data(), 1, block.size(), f) == block.size()) {
    written += block.size();
  }
  std::fclose(f);
  filled_.insert(i);
  log_.Record("disk_full", std::to_string(c_.id(i)),
              "filled its " + std::to_string(space.capacity >> 20) + " MiB tmpfs");
  return "";
}

void Nemesis::FreeDisk(int i) {
  std::remove(FillerPath(c_, i).c_str());
  filled_.erase(i);
  log_.Record("heal", std::to_string(c_.id(i)), "disk filler removed");
}

void Nemesis::Wipe(int i) {
  c_.Stop(i);
  c_.Wipe(i);
  log_.Record("wipe", std::to_string(c_.id(i)), "data dir emptied; restarted under its old id");
  c_.Start(i);
}

// --- membership ---------------------------------------------------------------------------------

std::string Nemesis::TransferLeadership(int to) {
  std::vector<std::string> args = {"leader", "transfer"};
  if (to >= 0) args.push_back(std::to_string(c_.id(to)));
  auto r = c_.Lockctl(args);
  log_.Record("transfer", to >= 0 ? std::to_string(c_.id(to)) : "any",
              r.exit_code == 0 ? "lockctl leader transfer" : "refused: " + r.output);
  return r.exit_code == 0 ? "" : r.output;
}

int Nemesis::Replace(int i, uint64_t new_id, std::string* error) {
  const uint64_t old_id = c_.id(i);
  c_.Kill(i);
  killed_.erase(i);
  auto removed = c_.Lockctl({"member", "remove", std::to_string(old_id)});
  log_.Record("member", std::to_string(old_id),
              removed.exit_code == 0 ? "removed" : "remove failed: " + removed.output);
  if (removed.exit_code != 0) {
    if (error) *error = "lockctl member remove: " + removed.output;
    return -1;
  }
  c_.Retire(i);
  const int fresh = c_.AddJoiningNode(new_id);
  if (fresh < 0) {
    if (error) *error = "no spare namespace for the replacement";
    return -1;
  }
  auto added = c_.Lockctl({"member", "add", std::to_string(new_id), "--peer",
                           c_.advertised_peer_addr(fresh), "--client", c_.client_addr(fresh)});
  log_.Record("member", std::to_string(new_id),
              added.exit_code == 0 ? "added (replaces " + std::to_string(old_id) + ")"
                                   : "add failed: " + added.output);
  if (added.exit_code != 0) {
    if (error) *error = "lockctl member add: " + added.output;
    return -1;
  }
  return fresh;
}

void Nemesis::Heal() {
  no_input_.clear();
  no_output_.clear();
  loss_.clear();
  if (std::string e = Apply(); !e.empty()) std::cerr << "[nemesis] heal: " << e << "\n";
  if (delayed_ && c_.proxy()) c_.proxy()->SetDelay(0ms, 0ms);
  delayed_ = false;
  for (int i : std::set<int>(slow_)) c_.SetSyncDelay(i, 0ms);
  slow_.clear();
  for (int i : std::set<int>(paused_)) c_.Resume(i);
  paused_.clear();
  for (int i : std::set<int>(filled_)) std::remove(FillerPath(c_, i).c_str());
  filled_.clear();
  for (int i = 0; i < c_.size(); ++i) {
    if (!c_.retired(i) && !c_.running(i)) c_.Start(i);
  }
  killed_.clear();
  log_.Record("heal", "all", "rules, delays, slow disks, pauses and fillers removed; nodes up");
}

}  // namespace lockd::faults
