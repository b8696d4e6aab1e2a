// Table: the aligned, plain-text tables lockctl prints for people.
#pragma once

#include <string>
#include <vector>

namespace lockd::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  /// Columns padded to their widest cell, two spaces apart; no trailing spaces.
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

/// "1.5s", "250ms", "3m20s", "2h5m": a duration for people.
std::string HumanDuration(uint64_t ms);

}  // namespace lockd::cli
