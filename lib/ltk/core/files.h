// Files that survive a crash or a power loss at any moment, and a lock that keeps two processes
// out of one run directory.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ltk {

/// Reads a whole file; throws DataError naming the file when it cannot be read.
std::string read_file(const std::string& path);
/// The same bytes as a std::vector<char> (what LibTorch's pickle reader takes).
std::vector<char> read_file_bytes(const std::string& path);

/// Replaces `path` with `data` so that after a crash or a power loss at any moment the file is
/// either the old one or the new one, whole: a temporary file beside it, written and fsynced,
/// renamed over `path`, then the directory fsynced so that the rename itself is on disk.
void write_file_atomic(const std::string& path, std::string_view data);

/// Appends `data` to `path` (created when missing) and fsyncs it: once this returns, the bytes
/// are on disk. A new file's directory entry is synced too.
void append_file_durable(const std::string& path, const std::string& data);

/// fsyncs the file or directory at `path`; for a directory this makes the entries created,
/// renamed or removed in it durable. Throws Error naming the path.
void sync_path(const std::string& path);

/// Renames `from` to `to` (a file, or a directory onto a missing path) and fsyncs the parent
/// directory of `to` (and of `from` when it differs).
void rename_durable(const std::string& from, const std::string& to);

/// Puts the directory `from` in the place of `to`, which may exist: never a moment without a
/// complete `to` (an existing one is swapped out atomically with renameat2(RENAME_EXCHANGE), then
/// removed; where the file system cannot swap, it is removed first). The parent is fsynced.
void replace_directory_durable(const std::string& from, const std::string& to);

/// Removes a file or a directory tree; a missing path is fine. Throws Error naming the path.
/// (POSIX nftw rather than std::filesystem::remove_all, which crashed in a CUDA build linked
/// against a PyTorch wheel's LibTorch.)
void remove_tree(const std::string& path);

/// The parent directory of `path` ("." for a bare name).
std::string parent_directory(const std::string& path);

/// An exclusive lock on a directory (flock on DIR/.lock, which records the holder's pid), held
/// for the object's lifetime and released by the kernel when the process dies, even by SIGKILL.
class DirectoryLock {
 public:
  /// Takes the lock without waiting; throws Error naming the holder's pid when another process
  /// holds it.
  explicit DirectoryLock(const std::string& dir);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace ltk
