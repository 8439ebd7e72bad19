#include "ltk/core/files.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE
#include <ftw.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "ltk/core/error.h"
#include "ltk/core/fault.h"

namespace ltk {

namespace {

std::string errno_text() { return std::strerror(errno); }

// Writes all of `data` to `fd`, retrying short writes and EINTR.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Closes `fd` on scope exit.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }

}  // namespace

namespace {

/// The whole file at `path`, read into a `Bytes` (std::string or std::vector<char>) sized from
/// the start and filled in place (no copy through a buffer).
template <typename Bytes>
Bytes read_whole(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw DataError("cannot open " + path + ": " + errno_text());
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw DataError("cannot read " + path + ": " + errno_text());
  if (S_ISDIR(st.st_mode)) throw DataError("cannot read " + path + ": it is a directory");
  Bytes data;
  // The size is a hint: a file that grows while it is read (or a /proc file of size 0) is read to
  // its end all the same.
  data.resize(S_ISREG(st.st_mode) && st.st_size > 0 ? static_cast<size_t>(st.st_size) + 1 : size_t{1} << 16);
  size_t used = 0;
  for (;;) {
    if (used == data.size()) data.resize(data.size() * 2);
    ssize_t n = ::read(f.fd, &data[used], data.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw DataError("cannot read " + path + ": " + errno_text());
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  data.resize(used);
  return data;
}

}  // namespace

std::string read_file(const std::string& path) {
  return read_whole<std::string>(path);
}

std::vector<char> read_file_bytes(const std::string& path) {
  return read_whole<std::vector<char>>(path);
}

std::string parent_directory(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void sync_path(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw Error("cannot open " + path + " to sync it: " + errno_text());
  if (::fsync(f.fd) != 0 && errno != EINVAL)  // EINVAL: a file system without fsync on directories
    throw Error("cannot sync " + path + " to disk: " + errno_text());
}

void write_file_atomic(const std::string& path, std::string_view data) {
  std::string tmp = path + ".tmp";
  {
    Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (f.fd < 0) throw Error("cannot write " + tmp + ": " + errno_text());
    // On failure the partial temporary file goes (on a full disk it holds the space that is left);
    // `path` is untouched.
    if (!write_all(f.fd, data)) {
      std::string why = errno_text();
      ::unlink(tmp.c_str());
      throw Error("cannot write " + path + ": " + why + " (free some space, or write elsewhere; the previous " +
                  "file, if any, is intact)");
    }
    if (::fsync(f.fd) != 0) {
      std::string why = errno_text();
      ::unlink(tmp.c_str());
      throw Error("cannot sync " + tmp + " to disk: " + why);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw Error("cannot rename " + tmp + " to " + path + ": " + why);
  }
  sync_path(parent_directory(path));
}

void append_file_durable(const std::string& path, const std::string& data) {
  struct stat st {};
  const bool is_new = ::stat(path.c_str(), &st) != 0;
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)};
  if (f.fd < 0) throw Error("cannot append to " + path + ": " + errno_text());
  struct stat before {};
  if (::fstat(f.fd, &before) != 0) throw Error("cannot append to " + path + ": " + errno_text());
  if (!write_all(f.fd, data)) {
    // A disk that fills up mid-line leaves part of it: cut it off, so the file stays whole lines.
    std::string why = errno_text();
    if (::ftruncate(f.fd, before.st_size) != 0) why += "; and the partial line could not be removed";
    throw Error("cannot append to " + path + ": " + why + " (free some space, or write elsewhere)");
  }
  if (::fdatasync(f.fd) != 0) throw Error("cannot sync " + path + " to disk: " + errno_text());
  if (is_new) sync_path(parent_directory(path));
}

void rename_durable(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    throw Error("cannot rename " + from + " to " + to + ": " + errno_text());
  std::string to_parent = parent_directory(to), from_parent = parent_directory(from);
  sync_path(to_parent);
  if (from_parent != to_parent) sync_path(from_parent);
}

void replace_directory_durable(const std::string& from, const std::string& to) {
  struct stat st {};
  if (::lstat(to.c_str(), &st) != 0) {
    rename_durable(from, to);
    return;
  }
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) == 0) {
    sync_path(parent_directory(to));
    fault_point("dir_swapped", 0);  // the new directory in place, the old one not yet removed
    remove_tree(from);              // now the old directory
    return;
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
    throw Error("cannot swap " + from + " into " + to + ": " + errno_text());
  // No swap on this file system: the old directory is moved aside, the new one renamed in, then the
  // old one removed, so that a failure in between leaves one of them whole (TO.ltk-old at worst).
  const std::string aside = to + ".ltk-old";
  remove_tree(aside);
  rename_durable(to, aside);
  rename_durable(from, to);
  fault_point("dir_swapped", 0);  // the new directory in place, the old one aside
  remove_tree(aside);
}

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;  // nothing there
  if (::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    throw Error("cannot remove " + path + ": " + errno_text());
}

DirectoryLock::DirectoryLock(const std::string& dir) {
  const std::string path = dir + "/.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error("cannot open the lock file " + path + ": " + errno_text());
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw Error(dir + " is in use by another ltk-train (pid " + (holder.empty() ? "unknown" : holder) +
                  "); wait for it to finish or stop it, or choose another output_dir");
    throw Error("cannot lock " + path + ": " + std::strerror(err));
  }
  // Record the holder for the error message of the next process that tries.
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // The lock holds without the pid; only the message of a second process is poorer.
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

}  // namespace ltk
