// Shards: the manifest, the digests and writing them (ShardWriter). See shards.h; reading them is
// shard_reader.cpp.
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
#include "ltk/data/shard_files.h"

namespace ltk {

namespace fs = std::filesystem;
using namespace shard_files;

static_assert(sizeof(int32_t) == 4 && sizeof(int64_t) == 8 && sizeof(float) == 4, "shard element sizes");

namespace {

/// Shards without pairs stay version 1, which an older ltk reads; pairs (seconds.bin) made version 2.
constexpr int kSingleTextVersion = 1;

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
  // Each file synced, and digested, on `threads` threads, the largest first: ids.bin is most of
  // a shard, so its sync (the disk) and its digest (the page cache) run at once, and the others
  // beside them.
  std::vector<const char*> names = file_names(words_ != nullptr, seconds_ != nullptr);
  std::vector<std::string> paths, digests(names.size());
  for (const char* name : names) paths.push_back((fs::path(partial_) / name).string());
  std::vector<size_t> order(names.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return fs::file_size(paths[a]) > fs::file_size(paths[b]); });
  std::atomic<size_t> next{0};
  parallel_chunks(threads, threads, 1, [&](int64_t, int64_t) {
    for (size_t k; (k = next.fetch_add(1)) < 2 * order.size();) {
      const size_t file = order[k / 2];
      if (k % 2 == 0)
        sync_path(paths[file]);
      else
        digests[file] = file_digest(paths[file]);
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

}  // namespace ltk
