// Shards read mapped (open_shard): the manifest's files checked against the counts and digests,
// the index read into memory within its budget, packs and windows cut. See shards.h.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>

#include "ltk/core/error.h"
#include "ltk/core/mapped_file.h"
#include "ltk/data/shard_files.h"
#include "ltk/data/shards.h"

namespace ltk {

namespace fs = std::filesystem;
using namespace shard_files;

namespace {

TargetKind kind_of(const std::string& name, const std::string& where) {
  for (auto k : {TargetKind::none, TargetKind::class_id, TargetKind::binary, TargetKind::multi_hot, TargetKind::value})
    if (name == target_kind_name(k)) return k;
  throw DataError(where + ": unknown \"targets\" '" + name +
                  "'; the shard is damaged: encode it again (ltk-data encode)");
}

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
