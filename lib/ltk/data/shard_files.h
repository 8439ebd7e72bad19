// The files of a shard, shared by its writer (shards.cpp) and its reader (shard_reader.cpp); not
// part of ltk's API (shards.h is).
#pragma once

#include <cstddef>
#include <vector>

namespace ltk::shard_files {

inline constexpr const char* kManifest = "manifest.json";
inline constexpr const char* kWords = "words.bin";  // uint8 whole-word flags, aligned with ids.bin (mlm shards)
// Every array file of a shard, with its element size.
struct ArrayFile {
  const char* name;
  size_t element;
};
inline constexpr ArrayFile kArrays[] = {{"ids.bin", 4},     {"offsets.bin", 8},       {"lines.bin", 8},
                                        {"classes.bin", 4}, {"class_offsets.bin", 8}, {"values.bin", 4}};
inline constexpr const char* kSeconds = "seconds.bin";  // int32 x samples: where a pair's second text starts
/// The files of a shard, in the manifest's order: kArrays, then words.bin and seconds.bin when kept.
inline std::vector<const char*> file_names(bool word_flags, bool pairs) {
  std::vector<const char*> names;
  for (const auto& a : kArrays) names.push_back(a.name);
  if (word_flags) names.push_back(kWords);
  if (pairs) names.push_back(kSeconds);
  return names;
}

}  // namespace ltk::shard_files
