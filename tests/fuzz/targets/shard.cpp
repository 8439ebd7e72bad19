// The shard reader (data/shards.h: the manifest and the index of a pre-tokenised corpus) on
// arbitrary files. The first byte picks the read options (digest check on or off, max_len,
// truncation or packing, index in memory or mapped; whole-word flags are read when the archive has
// words.bin); the rest is a little archive of the shard's files, each
// [file number][4-byte little-endian length][bytes] (numbers index kFiles; make_shard_seeds.py
// packs real shards so). Then every sample is read. Checks: each sample's ids are its length, at most
// max_len; every class id lies within the shard's labels; a batch collates.
#include <array>
#include <filesystem>
#include <iterator>
#include <string>

#include "../fuzz.h"
#include "ltk/data/shards.h"

namespace {

constexpr const char* kFiles[] = {"manifest.json",     "ids.bin",    "offsets.bin", "lines.bin",  "classes.bin",
                                  "class_offsets.bin", "values.bin", "vocab.txt",   "labels.txt", "words.bin"};

}  // namespace

LTK_FUZZ_TARGET(shard) {
  const uint8_t sel = ltk::fuzz::take_byte(input);
  const std::string dir = ltk::fuzz::scratch_dir() + "/shard";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  while (input.size() >= 5) {
    const auto which = static_cast<uint8_t>(input[0]) % std::size(kFiles);
    uint32_t len = 0;
    for (int k = 0; k < 4; ++k) len |= static_cast<uint32_t>(static_cast<uint8_t>(input[1 + k])) << (8 * k);
    input.remove_prefix(5);
    const std::string_view bytes = input.substr(0, len);
    input.remove_prefix(bytes.size());
    ltk::fuzz::scratch_file(std::string("shard/") + kFiles[which], bytes);
  }
  ltk::ShardReadOptions options;
  options.word_flags = std::filesystem::exists(dir + "/words.bin");
  options.verify = sel & 1;
  options.max_len = std::array<int64_t, 4>{0, 1, 3, 8}[(sel >> 1) & 3];
  options.truncation = std::array<const char*, 3>{"head", "tail", "head+tail"}[((sel >> 3) & 3) % 3];
  options.pack = ((sel >> 3) & 3) == 3;  // (with head truncation)
  // All of the index in memory, none, or part of it (these files are small).
  options.index_in_memory = std::array<int64_t, 4>{int64_t{256} << 20, 0, 24, 56}[((sel >> 5) & 1) | ((sel >> 6) & 2)];
  options.release_bytes = (sel & 0x40) ? 64 : 0;  // (bits 5 and 7 pick the budget)
  if (!ltk::is_shard(dir)) return;
  const ltk::TextDataset data = ltk::open_shard(dir, options);
  std::vector<int64_t> first;
  for (int64_t i = 0; i < data.size(); ++i) {
    const ltk::IdPieces ids = data.ids(i);
    ltk::fuzz::fuzz_check(ids.size() == data.length(i), "sample " + std::to_string(i) + ": ids not its length");
    ltk::fuzz::fuzz_check(options.max_len < 2 || data.length(i) <= options.max_len,
                          "sample " + std::to_string(i) + ": longer than max_len");
    int64_t sum = 0;
    for (int64_t k = 0; k < ids.size(); ++k) sum += ids[k];
    data.pages_read(ids.size());
    if (data.has_word_flags()) {
      const uint8_t* flags = data.word_flags(i);
      for (int64_t k = 0; k < ids.size(); ++k) sum += flags[k];
    }
    for (int64_t c : data.labels(i))
      ltk::fuzz::fuzz_check(c >= 0 && c < data.num_classes(), "sample " + std::to_string(i) + ": class out of range");
    (void)data.value(i), (void)data.source_line(i), (void)sum;
    if (first.size() < 4) first.push_back(i);
  }
  if (!first.empty()) {
    ltk::PadCollate collate(data.pad_id());
    const ltk::Batch batch = collate(data, first);
    (void)batch;
    if (data.has_labels()) (void)data.targets(first);
  }
}
