// Read-only file mappings.
#include "ltk/core/mapped_file.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "ltk/core/error.h"

namespace ltk {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(err));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    return;
  }
  map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw Error(path + ": cannot map: " + std::strerror(map_errno));
  }
}

MappedFile::~MappedFile() {
  if (map_) ::munmap(map_, size_);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : map_(std::exchange(other.map_, nullptr)), size_(std::exchange(other.size_, 0)), path_(std::move(other.path_)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (map_) ::munmap(map_, size_);
    map_ = std::exchange(other.map_, nullptr);
    size_ = std::exchange(other.size_, 0);
    path_ = std::move(other.path_);
  }
  return *this;
}

void MappedFile::release(size_t begin, size_t end) const {
  if (!map_) return;
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  end = std::min(end, size_);
  begin = (begin + page - 1) / page * page;
  end = end == size_ ? (end + page - 1) / page * page : end / page * page;
  if (end <= begin) return;
  // MADV_DONTNEED on a private read-only file mapping only drops this process's page-table entries.
  ::madvise(static_cast<char*>(map_) + begin, end - begin, MADV_DONTNEED);
}

void MappedFile::advise_random() const {
  if (!map_) return;
  // No readahead around a fault, and no 2 MiB (PMD) mappings of the page cache's large folios.
  // (Linux 6.18 still maps a faulting page's whole folio through page-table entries: that is why
  // a shard's ids, read at random, are read with pread instead; see open_shard.)
  ::madvise(map_, size_, MADV_RANDOM);
#ifdef MADV_NOHUGEPAGE
  ::madvise(map_, size_, MADV_NOHUGEPAGE);
#endif
}

namespace {

/// pread or pwrite of exactly `bytes` at byte `pos`, again after EINTR and short counts; `fail(at,
/// why)` throws otherwise.
template <typename Io, typename Buf, typename Fail>
void io_exactly(Io io, int fd, Buf* buf, size_t bytes, int64_t pos, Fail&& fail) {
  auto* p = reinterpret_cast<char*>(buf);
  auto at = static_cast<off_t>(pos);
  while (bytes > 0) {
    const ssize_t got = io(fd, p, bytes, at);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) fail(static_cast<int64_t>(at), got < 0 ? std::strerror(errno) : nullptr);
    p += got;
    bytes -= static_cast<size_t>(got);
    at += got;
  }
}

}  // namespace

void pread_exactly(int fd, const std::string& path, void* out, size_t bytes, int64_t pos, const char* ends) {
  io_exactly(::pread, fd, out, bytes, pos, [&](int64_t at, const char* why) {
    throw DataError(fmt::format("{}: cannot read at byte {}: {}", path, at, why ? why : ends));
  });
}

void pwrite_exactly(int fd, const std::string& path, const void* data, size_t bytes, int64_t pos) {
  io_exactly(::pwrite, fd, const_cast<void*>(data), bytes, pos, [&](int64_t at, const char* why) {
    throw Error(fmt::format("{}: cannot write at byte {}: {}", path, at, why ? why : "nothing written"));
  });
}

uint64_t digest64(const unsigned char* data, size_t n, uint64_t seed) {
  constexpr uint64_t kMul = 0xff51afd7ed558ccdull;
  uint64_t h = seed ^ (n * kMul);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, data + i, 8);
    h = (h ^ (w * 0x9e3779b97f4a7c15ull)) * kMul;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  for (size_t k = 0; i + k < n; ++k) tail |= static_cast<uint64_t>(data[i + k]) << (8 * k);
  h = (h ^ tail) * kMul;
  return h ^ (h >> 32);
}

}  // namespace ltk
