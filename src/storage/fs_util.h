// Durable file-system steps shared by the snapshot files and the data dir, through a
// rocksdb::FileSystem so tests can cut power under them. A file or folder is durable only when
// its own contents are synced AND the folder holding its name is synced; these helpers do both.
#pragma once

#include <string>

#include "base/status.h"

namespace rocksdb {
class FileSystem;
}

namespace lockd::storage {

/// fsync of a folder, which makes the names created or renamed in it durable.
Status SyncDir(rocksdb::FileSystem* fs, const std::string& dir);
/// Creates `dir` if missing (its parent must exist) and then syncs the parent, so the new folder
/// survives a power cut. A folder that exists already is left alone.
Status CreateDirDurably(rocksdb::FileSystem* fs, const std::string& dir);
/// Creates or truncates `path`, writes `data` and fsyncs it (the name is NOT synced: the caller
/// renames it into place and syncs the folder).
Status WriteFileDurably(rocksdb::FileSystem* fs, const std::string& path, const std::string& data);
/// The folder part of a path ("." when there is none).
std::string ParentDir(const std::string& path);

}  // namespace lockd::storage
