// Shards: writing them (ShardWriter) and reading them mapped (open_shard). See shards.h.
#include "ltk/data/shards.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>

#include "ltk/core/error.h"
#include "ltk/core/fault.h"
#include "ltk/core/files.h"
#include "ltk/core/mapped_file.h"
#include "ltk/core/parallel.h"
#include "ltk/core/version.h"

namespace ltk {

namespace fs = std::filesystem;

static_assert(sizeof(int32_t) == 4 && sizeof(int64_t) == 8 && sizeof(float) == 4, "shard element sizes");

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kWords = "words.bin";  // uint8 whole-word flags, aligned with ids.bin (mlm shards)
// Every array file of a shard, with its element size.
struct ArrayFile {
  const char* name;
  size_t element;
};
constexpr ArrayFile kArrays[] = {{"ids.bin", 4},     {"offsets.bin", 8},       {"lines.bin", 8},
                                 {"classes.bin", 4}, {"class_offsets.bin", 8}, {"values.bin", 4}};
constexpr const char* kSeconds = "seconds.bin";  // int32 x samples: where a pair's second text starts
/// Shards without pairs stay version 1, which an older ltk reads; pairs (seconds.bin) made version 2.
constexpr int kSingleTextVersion = 1;

/// The files of a shard, in the manifest's order: kArrays, then words.bin and seconds.bin when kept.
std::vector<const char*> file_names(bool word_flags, bool pairs) {
  std::vector<const char*> names;
  for (const auto& a : kArrays) names.push_back(a.name);
  if (word_flags) names.push_back(kWords);
  if (pairs) names.push_back(kSeconds);
  return names;
}

bool little_endian() {
  const uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

}  // namespace

const char* target_kind_name(TargetKind k) {
  switch (k) {
    case TargetKind::none:
      return "none";
    case TargetKind::class_id:
      return "class_id";
    case TargetKind::binary:
      return "binary";
    case TargetKind::multi_hot:
      return "multi_hot";
    case TargetKind::value:
      return "value";
  }
  return "none";
}

namespace {

TargetKind kind_of(const std::string& name, const std::string& where) {
  for (auto k : {TargetKind::none, TargetKind::class_id, TargetKind::binary, TargetKind::multi_hot, TargetKind::value})
    if (name == target_kind_name(k)) return k;
  throw DataError(where + ": unknown \"targets\" '" + name +
                  "'; the shard is damaged: encode it again (ltk-data encode)");
}

std::string hex(uint64_t v) {
  return fmt::format("{:016x}", v);
}

}  // namespace

std::string file_digest(const std::string& path) {
  MappedFile file(path);
  constexpr size_t kBlock = size_t{64} << 20;
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (size_t at = 0; at < file.size(); at += kBlock) {
    const size_t n = std::min(kBlock, file.size() - at);
    h = digest64(file.data() + at, n, h);
    file.release(at, at + n);
  }
  return hex(h);
}

std::string vocab_digest(const Vocabulary& vocab) {
  std::string all;
  for (int32_t i = 0; i < static_cast<int32_t>(vocab.size()); ++i) (all += vocab.token(i)) += '\n';
  return hex(digest64(reinterpret_cast<const unsigned char*>(all.data()), all.size()));
}

std::string labels_digest(const LabelMap& labels) {
  std::string all;
  for (const auto& n : labels.names()) (all += n) += '\n';
  return hex(digest64(reinterpret_cast<const unsigned char*>(all.data()), all.size()));
}

bool is_shard(const std::string& path) {
  std::error_code ec;
  return !path.empty() && fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / kManifest, ec);
}

nlohmann::json read_shard_manifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / kManifest).string();
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path + ": not valid JSON (" + e.what() +
                    "); the shard is damaged: encode it again (ltk-data encode)");
  }
  auto bad = [&](const std::string& what) {
    return DataError(path + ": " + what + "; the shard is damaged or not ltk's: encode it again (ltk-data encode)");
  };
  // Every field ltk reads has its type checked here, so that no reader meets a JSON type error.
  auto typed = [&](const nlohmann::json& o, const char* key, bool (nlohmann::json::*is)() const noexcept,
                   const char* type) {
    if (o.contains(key) && !(o[key].*is)()) throw bad(fmt::format("\"{}\" is not {}", key, type));
  };
  using J = nlohmann::json;
  if (!m.is_object()) throw bad("not a JSON object");
  typed(m, "format", &J::is_string, "a string");
  if (m.value("format", "") != kShardFormat) throw bad("no \"format\": \"ltk-shard\"");
  if (!m.contains("version") || !m["version"].is_number_integer()) throw bad("no integer \"version\"");
  if (m["version"].get<int64_t>() > kShardVersion)
    throw DataError(
        fmt::format("{}: shard format version {}, newer than this ltk's {} (ltk {}); encode it again "
                    "with this ltk or use a newer one",
                    path, m["version"].get<int64_t>(), kShardVersion, version()));
  typed(m, "byte_order", &J::is_string, "a string");
  if (m.value("byte_order", "") != "little" || !little_endian())
    throw DataError(path + ": shards are little-endian; this host or this shard is not");
  for (const char* key : {"samples", "tokens", "classes"})
    if (!m.contains(key) || !m[key].is_number_integer() || m[key].get<int64_t>() < 0)
      throw bad(fmt::format("no count \"{}\"", key));
  for (const char* key : {"files", "vocab", "labels", "tokenizer", "task"})
    if (!m.contains(key) || !m[key].is_object()) throw bad(fmt::format("no object \"{}\"", key));
  typed(m, "word_flags", &J::is_boolean, "true or false");
  typed(m, "pairs", &J::is_boolean, "true or false");
  for (const char* name : file_names(m.value("word_flags", false), m.value("pairs", false))) {
    if (!m["files"].contains(name) || !m["files"][name].is_object()) throw bad(fmt::format("no entry for {}", name));
    typed(m["files"][name], "bytes", &J::is_number_integer, "an integer");
    typed(m["files"][name], "digest", &J::is_string, "a string");
  }
  typed(m, "special_tokens", &J::is_boolean, "true or false");
  typed(m, "positive", &J::is_number_integer, "an integer");
  for (const char* key : {"targets", "source_path", "split"}) typed(m, key, &J::is_string, "a string");
  typed(m["vocab"], "pad_id", &J::is_number_integer, "an integer");
  typed(m["vocab"], "size", &J::is_number_integer, "an integer");
  typed(m["vocab"], "digest", &J::is_string, "a string");
  typed(m["labels"], "count", &J::is_number_integer, "an integer");
  typed(m["labels"], "digest", &J::is_string, "a string");
  for (const char* key : {"type", "label_separator", "word_segmenter"})
    typed(m["task"], key, &J::is_string, "a string");
  return m;
}

// ---- writing ----

struct ShardWriter::Stream {
  std::string path;
  std::FILE* file = nullptr;
  explicit Stream(std::string p) : path(std::move(p)) {
    file = std::fopen(path.c_str(), "wb");
    if (!file) throw Error(path + ": cannot create: " + std::strerror(errno));
    std::setvbuf(file, nullptr, _IOFBF, size_t{1} << 20);
  }
  ~Stream() {
    if (file) std::fclose(file);
  }
  template <typename T>
  void put(const T* data, size_t n) {
    if (n && std::fwrite(data, sizeof(T), n, file) != n) throw Error(path + ": cannot write: " + std::strerror(errno));
  }
  void close() {
    if (file && std::fclose(file) != 0) {
      file = nullptr;
      throw Error(path + ": cannot write: " + std::strerror(errno));
    }
    file = nullptr;
  }
};

ShardWriter::ShardWriter(std::string dir, bool word_flags, bool pairs)
    : dir_(std::move(dir)), partial_(dir_ + ".partial") {
  if (fs::exists(partial_)) remove_tree(partial_);  // an interrupted encode's: start again
  std::error_code ec;
  fs::create_directories(partial_, ec);
  if (ec) throw Error("cannot create " + partial_ + ": " + ec.message());
  for (const auto& a : kArrays) streams_.push_back(std::make_unique<Stream>((fs::path(partial_) / a.name).string()));
  if (word_flags) words_ = std::make_unique<Stream>((fs::path(partial_) / kWords).string());
  if (pairs) seconds_ = std::make_unique<Stream>((fs::path(partial_) / kSeconds).string());
  const int64_t zero = 0;
  stream("offsets.bin").put(&zero, 1);
  stream("class_offsets.bin").put(&zero, 1);
}

ShardWriter::~ShardWriter() {
  if (finished_) return;
  streams_.clear();
  words_.reset();
  seconds_.reset();
  std::error_code ec;
  fs::remove_all(partial_, ec);  // an encode that failed leaves nothing half-written
}

ShardWriter::Stream& ShardWriter::stream(const char* name) {
  for (size_t i = 0; i < std::size(kArrays); ++i)
    if (std::strcmp(kArrays[i].name, name) == 0) return *streams_[i];
  throw Error(std::string("ShardWriter: no stream ") + name);
}

void ShardWriter::append(const TextDataset& part, const std::vector<int32_t>& class_map) {
  if (part.windowed() || part.mapped())
    throw Error("ShardWriter::append (" + dir_ + "): shards hold texts encoded in memory, not windowed");
  if (part.size() > 0 && part.has_pairs() != (seconds_ != nullptr))
    throw Error(fmt::format("ShardWriter::append ({}): a part {} pairs where the shard keeps {}", dir_,
                            part.has_pairs() ? "of" : "without", seconds_ ? "pairs" : "single texts"));
  if (part.size() > 0 && part.has_word_flags() != (words_ != nullptr))
    throw Error(fmt::format("ShardWriter::append: a part {} whole-word flags where the shard {} them",
                            part.has_word_flags() ? "with" : "without", words_ ? "keeps" : "keeps none of"));
  const bool classes = part.target_kind() != TargetKind::value && part.target_kind() != TargetKind::none;
  const auto n = static_cast<size_t>(part.size());
  std::vector<int32_t> ids, class_ids;
  std::vector<int64_t> offsets(n), lines(n), class_offsets(n);
  std::vector<float> values(n, 0.0f);
  ids.reserve(static_cast<size_t>(part.total_tokens()));
  for (size_t i = 0; i < n; ++i) {
    const auto s = static_cast<int64_t>(i);
    const IdPieces p = part.ids(s);
    if (part.full_length(s) != p.size())
      throw Error("ShardWriter::append: a sample was cut to max_len; shards keep every id (encode without max_len)");
    ids.insert(ids.end(), p.a, p.a + p.na);
    if (words_) words_->put(part.word_flags(s), static_cast<size_t>(p.na));
    if (seconds_) {
      const auto second = static_cast<int32_t>(part.second_start(s));
      seconds_->put(&second, 1);
    }
    tokens_ += p.na;
    offsets[i] = tokens_;
    lines[i] = part.source_line(s);
    if (classes)
      for (int64_t c : part.labels(s)) {
        class_ids.push_back(class_map.empty() ? static_cast<int32_t>(c) : class_map.at(static_cast<size_t>(c)));
        ++classes_;
      }
    class_offsets[i] = classes_;
    if (part.target_kind() == TargetKind::value) values[i] = part.value(s);
  }
  stream("ids.bin").put(ids.data(), ids.size());
  stream("offsets.bin").put(offsets.data(), n);
  stream("lines.bin").put(lines.data(), n);
  stream("classes.bin").put(class_ids.data(), class_ids.size());
  stream("class_offsets.bin").put(class_offsets.data(), n);
  stream("values.bin").put(values.data(), n);
  samples_ += static_cast<int64_t>(n);
  fault_point("shard_append", samples_);
}

void ShardWriter::remap(const std::vector<int32_t>& id_table, const std::vector<int32_t>& class_table, int threads,
                        int64_t block_ids) {
  block_ids = std::max<int64_t>(block_ids, 1);
  for (auto& st : streams_) st->close();
  // Each of `threads` threads reads, rewrites and writes back its own part of the file, a block
  // at a time (a shared writable mapping would fault every page in and write it back page by page).
  auto apply = [&](const char* name, const std::vector<int32_t>& table) {
    if (table.empty()) return;
    const std::string path = (fs::path(partial_) / name).string();
    struct Fd {
      int fd;
      ~Fd() {
        if (fd >= 0) ::close(fd);
      }
    } file{::open(path.c_str(), O_RDWR | O_CLOEXEC)};
    const int fd = file.fd;
    if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
    const auto n = static_cast<int64_t>(fs::file_size(path) / 4);
    parallel_chunks(n, std::max(threads, 1), std::max<int64_t>(block_ids / 4, 1), [&](int64_t begin, int64_t end) {
      std::vector<int32_t> block(static_cast<size_t>(std::min(end - begin, block_ids)));
      for (int64_t at = begin; at < end; at += static_cast<int64_t>(block.size())) {
        const auto count = static_cast<size_t>(std::min<int64_t>(end - at, static_cast<int64_t>(block.size())));
        pread_exactly(fd, path, block.data(), count * 4, at * 4);
        for (size_t k = 0; k < count; ++k) {
          const auto v = static_cast<size_t>(block[k]);
          if (v >= table.size()) throw Error(fmt::format("{}: id {} has no entry in the remap table", path, v));
          block[k] = table[v];
        }
        pwrite_exactly(fd, path, block.data(), count * 4, at * 4);
      }
    });
  };
  apply("ids.bin", id_table);
  fault_point("shard_remap", samples_);  // ids rewritten, classes not yet
  apply("classes.bin", class_table);
}

nlohmann::json ShardWriter::finish(nlohmann::json manifest, const Vocabulary& vocab, const LabelMap* labels,
                                   int threads) {
  threads = std::max(threads, 1);
  for (auto& s : streams_) s->close();
  if (words_) words_->close();
  if (seconds_) seconds_->close();
  vocab.save((fs::path(partial_) / "vocab.txt").string());
  if (labels) labels->save((fs::path(partial_) / "labels.txt").string());
  manifest["format"] = kShardFormat;
  manifest["version"] = seconds_ ? kShardVersion : kSingleTextVersion;
  manifest["byte_order"] = "little";
  manifest["samples"] = samples_;
  manifest["tokens"] = tokens_;
  manifest["classes"] = classes_;
  manifest["vocab"]["size"] = vocab.size();
  manifest["vocab"]["digest"] = vocab_digest(vocab);
  manifest["vocab"]["pad_id"] = vocab.pad_id();
  manifest["labels"] = labels ? nlohmann::json{{"count", labels->size()}, {"digest", labels_digest(*labels)}}
                              : nlohmann::json{{"count", 0}};
  manifest["encoded_by"] = std::string("ltk ") + version();
  manifest["word_flags"] = words_ != nullptr;
  if (seconds_) manifest["pairs"] = true;
  // Each file synced and digested on one of `threads` threads, the largest first (ids.bin is
  // most of a shard: the others are done beside it).
  std::vector<const char*> names = file_names(words_ != nullptr, seconds_ != nullptr);
  std::vector<std::string> paths, digests(names.size());
  for (const char* name : names) paths.push_back((fs::path(partial_) / name).string());
  std::vector<size_t> order(names.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return fs::file_size(paths[a]) > fs::file_size(paths[b]); });
  std::atomic<size_t> next{0};
  parallel_chunks(threads, threads, 1, [&](int64_t, int64_t) {
    for (size_t k; (k = next.fetch_add(1)) < order.size();) {
      sync_path(paths[order[k]]);
      digests[order[k]] = file_digest(paths[order[k]]);
    }
  });
  for (size_t k = 0; k < names.size(); ++k)
    manifest["files"][names[k]] = {{"bytes", fs::file_size(paths[k])}, {"digest", digests[k]}};
  for (const char* f : {"vocab.txt", "labels.txt"})
    if (fs::exists(fs::path(partial_) / f)) sync_path((fs::path(partial_) / f).string());
  write_file_atomic((fs::path(partial_) / kManifest).string(), manifest.dump(2) + "\n");
  fault_point("shard_rename", samples_);  // whole in DIR.partial, DIR as it was
  if (fs::exists(dir_))
    replace_directory_durable(partial_, dir_);
  else
    rename_durable(partial_, dir_);
  finished_ = true;
  return manifest;
}

// ---- reading ----

namespace {

struct ShardFiles {
  ShardFiles() = default;
  ShardFiles(const ShardFiles&) = delete;
  ShardFiles& operator=(const ShardFiles&) = delete;
  ~ShardFiles() {
    if (ids_fd >= 0) ::close(ids_fd);
    if (flags_fd >= 0) ::close(flags_fd);
  }
  int ids_fd = -1, flags_fd = -1;  ///< ids.bin and words.bin, read with pread (SampleStore::ids_fd)
  std::vector<MappedFile> maps;    ///< kArrays' order
  MappedFile words;                ///< words.bin, when read
  MappedFile seconds;              ///< seconds.bin, for pairs
  // The arrays read into memory (ShardReadOptions::index_in_memory); empty: read mapped.
  std::vector<int64_t> base, class_offsets;
  std::vector<uint32_t> rel;
  std::vector<int32_t> class_ids;
  std::vector<float> values;
  std::vector<int32_t> seconds_in_memory;
};

DataError damaged(const std::string& path, const std::string& what) {
  return DataError(path + ": " + what + "; the shard is damaged: encode it again (ltk-data encode)");
}

// Visits the `count` elements of type T of a mapped file in order, 8 MiB at a time, handing each
// block's pages back once visited: a pass over an index larger than memory stays small.
template <typename T, typename F>
void scan(const MappedFile& m, int64_t count, F each) {
  const T* p = reinterpret_cast<const T*>(m.data());
  constexpr int64_t kBlock = (int64_t{8} << 20) / static_cast<int64_t>(sizeof(T));
  for (int64_t s = 0; s < count; s += kBlock) {
    const int64_t e = std::min(count, s + kBlock);
    for (int64_t i = s; i < e; ++i) each(i, p[i]);
    m.release(static_cast<size_t>(s) * sizeof(T), static_cast<size_t>(e) * sizeof(T));
  }
}

// Checks that the n + 1 offsets of `m` start at 0, never fall and end at `total`; `each(i, o)`
// sees every one.
template <typename F>
void scan_offsets(const MappedFile& m, int64_t n, int64_t total, F each) {
  const auto* o = reinterpret_cast<const int64_t*>(m.data());
  if (o[0] != 0 || o[n] != total)
    throw damaged(m.path(), fmt::format("the offsets run from {} to {}, not from 0 to {}", o[0], o[n], total));
  int64_t last = 0;
  scan<int64_t>(m, n + 1, [&](int64_t i, int64_t v) {
    if (v < last) throw damaged(m.path(), fmt::format("offset {} ({}) is below offset {} ({})", i, v, i - 1, last));
    last = v;
    each(i, v);
  });
}

// A copy of the `count` elements of a mapped file, read in blocks (each handed back after).
template <typename T>
std::vector<T> copy_of(const MappedFile& m, int64_t count) {
  std::vector<T> out(static_cast<size_t>(count));
  scan<T>(m, count, [&](int64_t i, T v) { out[static_cast<size_t>(i)] = v; });
  return out;
}

// Where the text offsets are read from: compact in memory (base + 32-bit rel, 4 bytes a text)
// when within `budget` (and no block of 4096 texts spans 2^32 ids), else the mapped file.
// Returns the bytes taken from the budget.
int64_t load_offsets(ShardFiles& f, SampleStore& s, int64_t budget) {
  const MappedFile& m = f.maps[1];
  const int64_t n = s.n, blocks = (n >> SampleStore::kBlockShift) + 1;
  const int64_t bytes = (n + 1) * 4 + blocks * 8;
  bool compact = bytes <= budget;
  if (compact) {
    f.rel.resize(static_cast<size_t>(n + 1));
    f.base.resize(static_cast<size_t>(blocks));
  }
  scan_offsets(m, n, s.total, [&](int64_t i, int64_t v) {
    if (!compact) return;
    const int64_t k = i >> SampleStore::kBlockShift;
    if ((i & ((int64_t{1} << SampleStore::kBlockShift) - 1)) == 0) f.base[k] = v;
    const int64_t r = v - f.base[k];
    if (r > int64_t{std::numeric_limits<uint32_t>::max()}) compact = false;
    f.rel[i] = static_cast<uint32_t>(r);
  });
  if (compact) {
    s.base = f.base.data();
    s.rel = f.rel.data();
    return bytes;
  }
  f.rel = {};
  f.base = {};
  s.offsets = reinterpret_cast<const int64_t*>(m.data());
  return 0;
}

// The class arrays: checked (offsets, every id within the labels), then read into memory within
// `budget`. A shard where every text has one class keeps no class offsets. Returns the bytes taken.
int64_t load_classes(ShardFiles& f, SampleStore& s, int64_t classes, int64_t num_labels, int64_t budget) {
  const MappedFile &ids = f.maps[3], &co = f.maps[4];
  bool one_each = classes == s.n;
  scan_offsets(co, s.n, classes, [&](int64_t i, int64_t v) { one_each = one_each && v == i; });
  if (classes > 0)
    scan<int32_t>(ids, classes, [&](int64_t k, int32_t c) {
      if (c < 0 || c >= num_labels)
        throw damaged(ids.path(),
                      fmt::format("class id {} at entry {} is outside the shard's {} labels", c, k, num_labels));
    });
  if (classes == 0) return 0;  // no class task: class_begin = class_end = 0
  int64_t taken = 0;
  s.one_class_each = one_each;
  if (classes * 4 <= budget) {
    f.class_ids = copy_of<int32_t>(ids, classes);
    s.class_ids = f.class_ids.data();
    taken += classes * 4;
  } else {
    s.class_ids = reinterpret_cast<const int32_t*>(ids.data());
  }
  if (one_each) return taken;
  if ((s.n + 1) * 8 <= budget - taken) {
    f.class_offsets = copy_of<int64_t>(co, s.n + 1);
    s.class_offsets = f.class_offsets.data();
    taken += (s.n + 1) * 8;
  } else {
    s.class_offsets = reinterpret_cast<const int64_t*>(co.data());
  }
  return taken;
}

// Sentence pairs: seconds.bin checked (every second text starts after its pair's [CLS] a [SEP] and
// at most at the pair's last [SEP]), then read into memory within `budget`. Returns the bytes taken.
int64_t load_seconds(ShardFiles& f, SampleStore& s, const MappedFile& m, int64_t budget) {
  const bool in_memory = s.n * 4 <= budget;
  if (in_memory) f.seconds_in_memory.resize(static_cast<size_t>(s.n));
  scan<int32_t>(m, s.n, [&](int64_t i, int32_t v) {
    if (v < 2 || v > s.stored_length(i) - 1)
      throw damaged(m.path(), fmt::format("pair {}'s second text starts at id {} of its {}", i, v, s.stored_length(i)));
    if (in_memory) f.seconds_in_memory[static_cast<size_t>(i)] = v;
  });
  s.seconds = in_memory ? f.seconds_in_memory.data() : reinterpret_cast<const int32_t*>(m.data());
  return in_memory ? s.n * 4 : 0;
}

// File `name` of shard `dir`, checked against its size from the counts (`want` bytes) and what the
// manifest `recorded` (its bytes and digest, the digest when `verify`), and mapped.
MappedFile checked_file(const std::string& dir, const char* name, int64_t want,
                        const std::pair<int64_t, std::string>& recorded, bool verify) {
  const std::string path = (fs::path(dir) / name).string();
  if (!fs::is_regular_file(path)) throw DataError(path + ": missing; the shard is incomplete: encode it again");
  const auto bytes = static_cast<int64_t>(fs::file_size(path));
  if (bytes != want || recorded.first != want)
    throw DataError(
        fmt::format("{}: {} bytes where the manifest's counts make {}; the file is truncated or from "
                    "another encode: encode the shard again (ltk-data encode)",
                    path, bytes, want));
  if (verify) {
    const std::string digest = file_digest(path);
    if (digest != recorded.second)
      throw DataError(
          fmt::format("{}: digest {} where the manifest says {}; the file was changed or damaged after "
                      "encoding: encode the shard again (ltk-data encode)",
                      path, digest, recorded.second));
  }
  return MappedFile(path);
}

// task.pack: the packs of the store's texts, as the in-memory packer makes them: a text (cut to
// max_len) joins the current pack unless that would make it longer than max_len; the store's
// samples become the packs.
void build_packs(SampleStore& s, const std::string& where) {
  if (s.max_len > std::numeric_limits<int32_t>::max())
    throw ConfigError(fmt::format("config key 'data.max_len': {} is too long to pack", s.max_len));
  if (!s.specials || s.max_len < 3)
    throw ConfigError(fmt::format(
        "config key 'task.pack': packing needs a shard encoded with data.special_tokens and data.max_len of 3 or "
        "more ({}: special tokens {}, max_len {})",
        where, s.specials ? "on" : "off", s.max_len));
  s.texts = s.n;
  s.pack.reserve(static_cast<size_t>(s.n / 4 + 1));
  int64_t cur = 0;
  for (int64_t t = 0; t < s.n; ++t) {
    if (s.stored_length(t) < 2)
      throw damaged(where, fmt::format("text {} has {} ids, fewer than its [CLS] and [SEP]", t, s.stored_length(t)));
    const int64_t body = s.text_length(t) - 2;
    if (cur > 1 && cur + body + 1 > s.max_len) {
      s.pack_lengths.push_back(static_cast<int32_t>(cur));
      cur = 0;
    }
    if (cur == 0) {
      s.pack.push_back(t);
      cur = 1;
    }
    cur += body + 1;
  }
  if (cur > 0) s.pack_lengths.push_back(static_cast<int32_t>(cur));
  s.pack.push_back(s.n);
  s.pack.shrink_to_fit();
  s.pack_lengths.shrink_to_fit();
  s.n = static_cast<int64_t>(s.pack_lengths.size());
}

// data.long_text "window": every stored text cut into windows as add_windows cuts a text in
// memory; the store's samples become the windows.
void build_windows(SampleStore& s, const ShardReadOptions& o, const std::string& where) {
  const int64_t sp = s.specials ? 1 : 0, size = o.max_len - 2 * sp;
  if (o.pack || o.word_flags || o.max_len <= 0 || size <= 0)
    throw ConfigError(
        fmt::format("config key 'data.long_text': \"window\" needs single texts (no packing or whole-word masking) and "
                    "data.max_len above the shard's special tokens ({}: max_len {}, special tokens {})",
                    where, o.max_len, s.specials ? "on" : "off"));
  window_starts(0, size, o.window_overlap);  // a ConfigError naming data.window_overlap when out of range
  s.window_size = size;
  s.window_step = size - o.window_overlap;
  s.texts = s.n;
  s.window_first.resize(static_cast<size_t>(s.n + 1));
  int64_t j = 0;
  for (int64_t t = 0; t < s.n; ++t) {
    const int64_t body = s.stored_length(t) - 2 * sp;
    if (body < 0) throw damaged(where, fmt::format("text {} has {} ids, fewer than its [CLS] and [SEP]", t, body + 2));
    s.window_first[static_cast<size_t>(t)] = j;
    j += body > size ? 1 + (body - size + s.window_step - 1) / s.window_step : 1;
  }
  s.window_first.back() = j;
  s.n = j;
}

// The manifest's fields open_shard reads, their types checked.
struct ManifestFields {
  int64_t samples = 0, tokens = 0, classes = 0, num_labels = 0, positive = 1, pad_id = Vocabulary::kPadId;
  bool specials = false, word_flags = false, pairs = false;
  std::string targets, source;
  std::vector<std::pair<int64_t, std::string>> files;  ///< file_names' bytes and digests
  std::pair<int64_t, std::string> words, seconds;      ///< words.bin's and seconds.bin's, when kept
};

ManifestFields manifest_fields(const nlohmann::json& m, const std::string& dir) {
  const std::string path = (fs::path(dir) / kManifest).string();
  ManifestFields f;
  try {
    f.samples = m.at("samples").get<int64_t>();
    f.tokens = m.at("tokens").get<int64_t>();
    f.classes = m.at("classes").get<int64_t>();
    f.num_labels = m.at("labels").value("count", int64_t{0});
    f.positive = m.value("positive", int64_t{1});
    f.pad_id = m.at("vocab").value("pad_id", int64_t{Vocabulary::kPadId});
    f.specials = m.value("special_tokens", false);
    f.targets = m.value("targets", "none");
    f.source = m.value("source_path", dir);
    f.word_flags = m.value("word_flags", false);
    f.pairs = m.value("pairs", false);
    for (const char* name : file_names(f.word_flags, f.pairs)) {
      const auto& e = m.at("files").at(name);
      f.files.emplace_back(e.value("bytes", int64_t{-1}), e.value("digest", ""));
      if (std::strcmp(name, kWords) == 0) f.words = f.files.back();
      if (std::strcmp(name, kSeconds) == 0) f.seconds = f.files.back();
    }
  } catch (const nlohmann::json::exception& e) {
    throw damaged(path, std::string("a field of the wrong type (") + e.what() + ")");
  }
  constexpr int64_t kMost = int64_t{1} << 56;  // no count near overflowing a byte size
  if (f.samples >= kMost || f.tokens >= kMost || f.classes >= kMost) throw damaged(path, "counts beyond any file");
  if (f.num_labels < 0 || f.num_labels >= (int64_t{1} << 31)) throw damaged(path, "a label count out of range");
  return f;
}

// How the ids are read and the mapped pages handed back: ids larger than `release_bytes` with
// pread, and the arrays left mapped released every `release_bytes` read.
void read_ids_and_release(ShardFiles& f, SampleStore& s, int64_t release_bytes, TargetKind kind) {
  // Ids larger than the release window are read with pread: read at random through the mapping,
  // each sample mapped its page and its neighbours (a whole large folio of the page cache, up to
  // 2 MiB, on recent kernels: measured 1.2 GB resident between releases, and 9,400 samples/s).
  const auto window = static_cast<size_t>(std::max<int64_t>(release_bytes, 0));
  if (window > 0 && f.maps[0].size() > window) {
    f.ids_fd = ::open(f.maps[0].path().c_str(), O_RDONLY | O_CLOEXEC);
    if (f.ids_fd < 0) throw Error(f.maps[0].path() + ": cannot open: " + std::strerror(errno));
    s.ids_fd = f.ids_fd;
    if (s.flags) {
      f.flags_fd = ::open(f.words.path().c_str(), O_RDONLY | O_CLOEXEC);
      if (f.flags_fd < 0) throw Error(f.words.path() + ": cannot open: " + std::strerror(errno));
      s.flags_fd = f.flags_fd;
      s.flags = nullptr;
    }
  }
  // The index arrays left mapped are read at random too: their pages are handed back every
  // release_bytes read, unless all of them fit that (then the resident set is bounded already).
  s.release_bytes = release_bytes;
  std::vector<const MappedFile*> random;
  if (s.ids_fd < 0) random.push_back(&f.maps[0]);
  if (s.flags) random.push_back(&f.words);
  if (!s.rel) random.push_back(&f.maps[1]);
  if (s.class_ids && f.class_ids.empty()) random.push_back(&f.maps[3]);
  if (s.class_offsets && f.class_offsets.empty()) random.push_back(&f.maps[4]);
  if (kind == TargetKind::value && f.values.empty()) random.push_back(&f.maps[5]);
  if (s.seconds && f.seconds_in_memory.empty()) random.push_back(&f.seconds);
  size_t random_bytes = 0;
  for (const MappedFile* map : random) random_bytes += map->size();
  if (window > 0 && random_bytes > window) {
    for (const MappedFile* map : random) map->advise_random();
    s.release = [files = &f] {
      for (const auto& map : files->maps) map.release();
      files->words.release();
      files->seconds.release();
    };
  }
}

}  // namespace

TextDataset open_shard(const std::string& dir, const ShardReadOptions& options) {
  const std::string where = (fs::path(dir) / kManifest).string();
  const ManifestFields m = manifest_fields(read_shard_manifest(dir), dir);
  const int64_t n = m.samples;
  const int64_t expected[] = {m.tokens, n + 1, n, m.classes, n + 1, n};
  auto files = std::make_shared<ShardFiles>();
  for (size_t k = 0; k < std::size(kArrays); ++k)
    files->maps.push_back(
        checked_file(dir, kArrays[k].name, expected[k] * kArrays[k].element, m.files[k], options.verify));
  // The label count sizes every multi-hot target: it must be labels.txt's.
  if (m.num_labels > 0) {
    const std::string path = (fs::path(dir) / "labels.txt").string();
    if (!fs::is_regular_file(path)) throw DataError(path + ": missing; the shard is incomplete: encode it again");
    const int64_t lines = LabelMap::load(path).size();  // as a run reads them
    if (lines != m.num_labels)
      throw damaged(path, fmt::format("{} labels where the manifest counts {}", lines, m.num_labels));
  }
  const TargetKind kind = kind_of(m.targets, where);
  auto store = std::make_shared<SampleStore>();
  store->n = n;
  store->total = m.tokens;
  store->ids = reinterpret_cast<const int32_t*>(files->maps[0].data());
  store->lines = reinterpret_cast<const int64_t*>(files->maps[2].data());
  // Every sample read touches its offset and classes at random: in mapped 4 KiB pages each is a
  // TLB miss (measured: batches 2.4x slower to make on a 5 M-text shard), in memory they share huge
  // pages. So the index is read into memory, compactly, when it fits the budget; the ids stay mapped.
  int64_t budget = std::max<int64_t>(options.index_in_memory, 0);
  budget -= load_offsets(*files, *store, budget);
  budget -= load_classes(*files, *store, m.classes, m.num_labels, budget);
  if (m.pairs) {
    if (!m.specials) throw damaged(where, "sentence pairs without [CLS]/[SEP]");
    if (options.windows || options.pack || options.word_flags)
      throw ConfigError("config key 'data.long_text', 'task.pack' or 'task.whole_word': " + where +
                        " is a shard of sentence pairs, read as pairs: not in windows, packed or with whole-word "
                        "flags");
    files->seconds = checked_file(dir, kSeconds, n * 4, m.seconds, options.verify);
    budget -= load_seconds(*files, *store, files->seconds, budget);
  }
  store->values = reinterpret_cast<const float*>(files->maps[5].data());
  if (kind == TargetKind::value && n * 4 <= budget) {
    files->values = copy_of<float>(files->maps[5], n);
    store->values = files->values.data();
  }
  store->max_len = options.max_len;
  store->truncation = options.truncation == "head" ? 0 : options.truncation == "tail" ? 1 : 2;
  if (options.truncation != "head" && options.truncation != "tail" && options.truncation != "head+tail")
    throw ConfigError("config key 'data.truncation': unknown policy '" + options.truncation + "'");
  store->specials = m.specials;
  if (options.word_flags) {
    if (!m.word_flags)
      throw ConfigError(where +
                        ": this shard holds no whole-word flags (encoded without task.whole_word); encode it again "
                        "with task.whole_word set, or set task.whole_word to false");
    files->words = checked_file(dir, kWords, m.tokens, m.words, options.verify);
    store->flags = files->words.data();
    store->flags_path = files->words.path();
  }
  store->ids_path = files->maps[0].path();
  if (options.windows) {
    build_windows(*store, options, where);
  } else if (options.pack) {
    if (m.classes > 0) throw ConfigError(where + ": task.pack packs unlabelled texts (mlm); this shard has classes");
    build_packs(*store, where);
  } else {
    store->texts = n;
  }
  read_ids_and_release(*files, *store, options.release_bytes, kind);
  store->files = files;
  TextDataset data;
  if (options.windows) data.set_windowing(options.window_pool);
  data.set_store(store);
  data.set_source(m.source, kind, m.num_labels, m.positive);
  data.set_pad_id(m.pad_id);
  return data;
}

}  // namespace ltk
