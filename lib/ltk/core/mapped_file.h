// A file mapped read-only into memory (POSIX mmap).
// The pages are the kernel's page cache: mapping a file costs no memory until it is read, and
// release() hands the pages read so far back (they stay cached; reading again faults them in).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ltk {

class MappedFile {
 public:
  MappedFile() = default;
  /// Maps `path` read-only. An empty file maps to no memory (data() null, size() 0). Error naming
  /// the file on failure.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return static_cast<const unsigned char*>(map_); }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  /// Drops this process's pages of bytes [begin, end) (rounded inward to pages): its resident
  /// memory falls; the data is read again from the page cache or the file when next touched.
  void release(size_t begin = 0, size_t end = SIZE_MAX) const;
  /// Tells the kernel the file is read at random: no readahead, no huge-page mappings.
  void advise_random() const;

 private:
  void* map_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

/// Reads exactly `bytes` bytes of `fd` from byte `pos` into `out` (again after EINTR and short
/// reads); a DataError naming `path` and the byte otherwise, `ends` when the file ends first.
void pread_exactly(int fd, const std::string& path, void* out, size_t bytes, int64_t pos,
                   const char* ends = "the file is shorter than expected");
/// Writes exactly `bytes` bytes of `data` to `fd` at byte `pos` (again after EINTR and short
/// writes); an Error naming `path` and the byte otherwise.
void pwrite_exactly(int fd, const std::string& path, const void* data, size_t bytes, int64_t pos);

/// A 64-bit digest of `n` bytes (eight bytes at a time, then the tail; not cryptographic): the
/// checksums of ltk's own binary files. `seed` chains the digest over several blocks.
uint64_t digest64(const unsigned char* data, size_t n, uint64_t seed = 0x9e3779b97f4a7c15ull);

}  // namespace ltk
