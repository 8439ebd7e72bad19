// Shards: writing them (ShardWriter) and reading them mapped (open_shard). See shards.h.
#include "ltk/data/shards.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/mapped_file.h"
#include "ltk/core/parallel.h"
#include "ltk/core/version.h"

namespace ltk {

namespace fs = std::filesystem;

static_assert(sizeof(int32_t) == 4 && sizeof(int64_t) == 8 && sizeof(float) == 4, "shard element sizes");

namespace {

constexpr const char* kManifest = "manifest.json";
// Every array file of a shard, with its element size.
struct ArrayFile {
  const char* name;
  size_t element;
};
constexpr ArrayFile kArrays[] = {{"ids.bin", 4},     {"offsets.bin", 8},       {"lines.bin", 8},
                                 {"classes.bin", 4}, {"class_offsets.bin", 8}, {"values.bin", 4}};

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
  if (!m.is_object() || m.value("format", "") != kShardFormat) throw bad("no \"format\": \"ltk-shard\"");
  if (!m.contains("version") || !m["version"].is_number_integer()) throw bad("no integer \"version\"");
  if (m["version"].get<int>() > kShardVersion)
    throw DataError(
        fmt::format("{}: shard format version {}, newer than this ltk's {} (ltk {}); encode it again "
                    "with this ltk or use a newer one",
                    path, m["version"].get<int>(), kShardVersion, version()));
  if (m.value("byte_order", "") != "little" || !little_endian())
    throw DataError(path + ": shards are little-endian; this host or this shard is not");
  for (const char* key : {"samples", "tokens", "classes"})
    if (!m.contains(key) || !m[key].is_number_integer() || m[key].get<int64_t>() < 0)
      throw bad(fmt::format("no count \"{}\"", key));
  for (const char* key : {"files", "vocab", "labels", "tokenizer", "task"})
    if (!m.contains(key) || !m[key].is_object()) throw bad(fmt::format("no object \"{}\"", key));
  for (const auto& a : kArrays)
    if (!m["files"].contains(a.name) || !m["files"][a.name].is_object())
      throw bad(fmt::format("no entry for {}", a.name));
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

ShardWriter::ShardWriter(std::string dir) : dir_(std::move(dir)), partial_(dir_ + ".partial") {
  if (fs::exists(partial_)) remove_tree(partial_);  // an interrupted encode's: start again
  std::error_code ec;
  fs::create_directories(partial_, ec);
  if (ec) throw Error("cannot create " + partial_ + ": " + ec.message());
  for (const auto& a : kArrays) streams_.push_back(std::make_unique<Stream>((fs::path(partial_) / a.name).string()));
  const int64_t zero = 0;
  stream("offsets.bin").put(&zero, 1);
  stream("class_offsets.bin").put(&zero, 1);
}

ShardWriter::~ShardWriter() {
  if (finished_) return;
  streams_.clear();
  std::error_code ec;
  fs::remove_all(partial_, ec);  // an encode that failed leaves nothing half-written
}

ShardWriter::Stream& ShardWriter::stream(const char* name) {
  for (size_t i = 0; i < std::size(kArrays); ++i)
    if (std::strcmp(kArrays[i].name, name) == 0) return *streams_[i];
  throw Error(std::string("ShardWriter: no stream ") + name);
}

void ShardWriter::append(const TextDataset& part, const std::vector<int32_t>& class_map) {
  if (part.windowed() || part.has_pairs() || part.has_word_flags() || part.mapped())
    throw Error("ShardWriter::append: shards hold single texts encoded in memory");
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
}

void ShardWriter::remap(const std::vector<int32_t>& id_table, const std::vector<int32_t>& class_table, int threads) {
  for (auto& st : streams_) st->close();
  // Read, rewritten and written back a block at a time (a shared writable mapping would fault
  // every page in and write it back page by page).
  auto apply = [&](const char* name, const std::vector<int32_t>& table) {
    if (table.empty()) return;
    const std::string path = (fs::path(partial_) / name).string();
    std::FILE* f = std::fopen(path.c_str(), "r+b");
    if (!f) throw Error(path + ": cannot open: " + std::strerror(errno));
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(f, &std::fclose);
    std::vector<int32_t> block(size_t{1} << 22);
    for (long at = 0;; at += static_cast<long>(block.size() * 4)) {
      if (std::fseek(f, at, SEEK_SET) != 0) throw Error(path + ": cannot seek: " + std::strerror(errno));
      const size_t got = std::fread(block.data(), 4, block.size(), f);
      if (std::ferror(f)) throw Error(path + ": read error: " + std::strerror(errno));
      if (got == 0) break;
      parallel_chunks(static_cast<int64_t>(got), threads, int64_t{1} << 18, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const auto v = static_cast<size_t>(block[static_cast<size_t>(k)]);
          if (v >= table.size()) throw Error(fmt::format("{}: id {} has no entry in the remap table", path, v));
          block[static_cast<size_t>(k)] = table[v];
        }
      });
      if (std::fseek(f, at, SEEK_SET) != 0) throw Error(path + ": cannot seek: " + std::strerror(errno));
      if (std::fwrite(block.data(), 4, got, f) != got) throw Error(path + ": cannot write: " + std::strerror(errno));
      if (got < block.size()) break;
    }
    if (std::fflush(f) != 0) throw Error(path + ": cannot write: " + std::strerror(errno));
  };
  apply("ids.bin", id_table);
  apply("classes.bin", class_table);
}

nlohmann::json ShardWriter::finish(nlohmann::json manifest, const Vocabulary& vocab, const LabelMap* labels) {
  for (auto& s : streams_) s->close();
  vocab.save((fs::path(partial_) / "vocab.txt").string());
  if (labels) labels->save((fs::path(partial_) / "labels.txt").string());
  manifest["format"] = kShardFormat;
  manifest["version"] = kShardVersion;
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
  for (const auto& a : kArrays) {
    const std::string path = (fs::path(partial_) / a.name).string();
    sync_path(path);
    manifest["files"][a.name] = {{"bytes", fs::file_size(path)}, {"digest", file_digest(path)}};
  }
  for (const char* f : {"vocab.txt", "labels.txt"})
    if (fs::exists(fs::path(partial_) / f)) sync_path((fs::path(partial_) / f).string());
  write_file_atomic((fs::path(partial_) / kManifest).string(), manifest.dump(2) + "\n");
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
  std::vector<MappedFile> maps;
  std::vector<std::vector<int64_t>> copies;  ///< the index arrays read into memory (index_in_memory)
};

/// Checks that the offsets `o` (n + 1 of them) start at 0, never fall and end at `total`.
void check_offsets(const int64_t* o, int64_t n, int64_t total, const std::string& path) {
  if (o[0] != 0 || o[n] != total)
    throw DataError(
        fmt::format("{}: the offsets run from {} to {}, not from 0 to {}; the shard is damaged: encode it "
                    "again (ltk-data encode)",
                    path, o[0], o[n], total));
  for (int64_t i = 0; i < n; ++i)
    if (o[i + 1] < o[i])
      throw DataError(
          fmt::format("{}: offset {} ({}) is below offset {} ({}); the shard is damaged: encode it again "
                      "(ltk-data encode)",
                      path, i + 1, o[i + 1], i, o[i]));
}

}  // namespace

TextDataset open_shard(const std::string& dir, const ShardReadOptions& options) {
  const nlohmann::json m = read_shard_manifest(dir);
  const auto n = m["samples"].get<int64_t>(), total = m["tokens"].get<int64_t>(), classes = m["classes"].get<int64_t>();
  constexpr int64_t kMost = int64_t{1} << 56;  // no count near overflowing a byte size
  if (n >= kMost || total >= kMost || classes >= kMost)
    throw DataError(dir + "/manifest.json: counts beyond any file; the shard is damaged: encode it again");
  const int64_t expected[] = {total, n + 1, n, classes, n + 1, n};
  auto files = std::make_shared<ShardFiles>();
  for (size_t k = 0; k < std::size(kArrays); ++k) {
    const std::string path = (fs::path(dir) / kArrays[k].name).string();
    if (!fs::is_regular_file(path)) throw DataError(path + ": missing; the shard is incomplete: encode it again");
    const auto bytes = static_cast<int64_t>(fs::file_size(path));
    const int64_t want = expected[k] * static_cast<int64_t>(kArrays[k].element);
    if (bytes != want || m["files"][kArrays[k].name].value("bytes", int64_t{-1}) != want)
      throw DataError(
          fmt::format("{}: {} bytes where the manifest's counts make {}; the file is truncated or from "
                      "another encode: encode the shard again (ltk-data encode)",
                      path, bytes, want));
    if (options.verify) {
      const std::string digest = file_digest(path), stored = m["files"][kArrays[k].name].value("digest", "");
      if (digest != stored)
        throw DataError(
            fmt::format("{}: digest {} where the manifest says {}; the file was changed or damaged after "
                        "encoding: encode the shard again (ltk-data encode)",
                        path, digest, stored));
    }
    files->maps.emplace_back(path);
  }
  auto store = std::make_shared<SampleStore>();
  store->n = n;
  store->total = total;
  // Every sample read touches its offsets and classes at random: in mapped 4 KiB pages each is a
  // TLB miss (measured: batches 6x slower to make on a 5 M-text shard), in memory they share
  // huge pages. So the index arrays are copied in when they fit the budget; the ids stay mapped.
  size_t index_bytes = 0;
  for (size_t k : {1, 3, 4, 5}) index_bytes += files->maps[k].size();
  const bool copy_index = index_bytes <= static_cast<size_t>(std::max<int64_t>(options.index_in_memory, 0));
  auto at = [&](size_t k) -> const unsigned char* {
    const MappedFile& m = files->maps[k];
    if (!copy_index || k == 0 || k == 2 || m.size() == 0) return m.data();
    auto& copy = files->copies.emplace_back((m.size() + 7) / 8);
    std::memcpy(copy.data(), m.data(), m.size());
    m.release();
    return reinterpret_cast<const unsigned char*>(copy.data());
  };
  store->ids = reinterpret_cast<const int32_t*>(at(0));
  store->offsets = reinterpret_cast<const int64_t*>(at(1));
  store->lines = reinterpret_cast<const int64_t*>(at(2));
  store->class_ids = reinterpret_cast<const int32_t*>(at(3));
  store->class_offsets = reinterpret_cast<const int64_t*>(at(4));
  store->values = reinterpret_cast<const float*>(at(5));
  check_offsets(store->offsets, n, total, files->maps[1].path());
  check_offsets(store->class_offsets, n, classes, files->maps[4].path());
  const int64_t num_labels = m["labels"].value("count", int64_t{0});
  for (int64_t k = 0; k < classes; ++k)
    if (store->class_ids[k] < 0 || store->class_ids[k] >= num_labels)
      throw DataError(
          fmt::format("{}: class id {} at entry {} is outside the shard's {} labels; the shard is damaged: "
                      "encode it again (ltk-data encode)",
                      files->maps[3].path(), store->class_ids[k], k, num_labels));
  store->max_len = options.max_len;
  store->truncation = options.truncation == "head" ? 0 : options.truncation == "tail" ? 1 : 2;
  if (options.truncation != "head" && options.truncation != "tail" && options.truncation != "head+tail")
    throw ConfigError("config key 'data.truncation': unknown policy '" + options.truncation + "'");
  store->specials = m.value("special_tokens", false);
  store->release_bytes = options.release_bytes;
  if (options.release_bytes > 0)
    store->release = [f = files.get()] {
      for (const auto& m : f->maps) m.release();
    };
  store->files = files;
  const std::string where = (fs::path(dir) / kManifest).string();
  TextDataset data;
  data.set_store(store);
  data.set_source(m.value("source_path", dir), kind_of(m.value("targets", "none"), where), num_labels,
                  m.value("positive", int64_t{1}));
  data.set_pad_id(m["vocab"].value("pad_id", int64_t{Vocabulary::kPadId}));
  return data;
}

}  // namespace ltk
