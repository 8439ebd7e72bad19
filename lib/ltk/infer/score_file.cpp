#include "ltk/infer/score_file.h"

#include <fmt/format.h>

#include <chrono>
#include <iostream>

#include "ltk/core/error.h"
#include "ltk/data/formats.h"
#include "ltk/data/shards.h"

namespace ltk {

std::vector<Example> read_labelled(const LoadedRun& run, const std::string& path, const std::string& format,
                                   bool labelled) {
  if (is_shard(path))
    throw DataError(fmt::format("{} is a shard; scoring reads the raw file (its bad cases show the texts): name {}",
                                path, read_shard_manifest(path).value("source_path", "the file it was encoded from")));
  auto options = reader_options(run.config.data, run.config.task);
  // Eval files may come in another format; "auto" keeps the run's own when it named one.
  options.format = format.empty() || format == "auto" ? run.config.data.format : format;
  if (!labelled) options.require_label = false;  // (else as the run's task reads its data: mlm needs none)
  auto read = read_examples(path, options);
  if (read.skipped) std::cerr << path << ": skipped " << read.skipped << " bad row(s); the first: " << read.first_skip << "\n";
  return std::move(read.examples);
}

ScoredFile score_file(const LoadedRun& run, const std::string& path, int64_t batch_size, const std::string& format) {
  ScoredFile s;
  s.examples = read_labelled(run, path, format);
  s.data = run.encode(s.examples, path, /*labelled=*/true);
  const auto t0 = std::chrono::steady_clock::now();
  s.predictions = predict(*run.model, *run.task, s.data, batch_size, run.device, run.vocab.size());
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.report = run.task->evaluate(s.predictions);
  return s;
}

}  // namespace ltk
