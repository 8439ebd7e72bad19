#include "ltk/infer/linear_answers.h"

#include <filesystem>
#include <mutex>
#include <string_view>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"
#include "ltk/core/error.h"
#include "ltk/core/log.h"
#include "ltk/core/mapped_file.h"
#include "ltk/core/parallel.h"
#include "ltk/data/labels.h"
#include "ltk/data/ngrams.h"
#include "ltk/data/tfidf.h"
#include "ltk/data/tokenizer.h"
#include "ltk/data/vocab.h"
#include "ltk/io/raw_tensors.h"
#include "ltk/io/run_dir.h"
#include "ltk/models/linear_config.h"
#include "ltk/task/answer_head.h"

namespace ltk::infer {

namespace {

/// A model section of any type other than "linear": not a run answered here.
struct NotLinear {};

/// The model schema of a linear run's stored config: the linear section resolved as training
/// resolved it; the other checks passed when the run was trained.
class LinearSchema : public ModelSchema {
 public:
  nlohmann::json resolve(const std::string& type, JsonReader& section) const override {
    if (type != "linear") throw NotLinear{};
    return resolve_linear(section);
  }
  void check(const Config&) const override {}
  void complete(const nlohmann::json&, Config&) const override {}
};

}  // namespace

struct LinearAnswers::State {
  Config config;
  std::unique_ptr<Tokenizer> tokenizer;
  Vocabulary vocab;
  AnswerHead head{"regression", LabelMap{}};
  MappedFile weights;
  TfIdfTable table;
  const float* W = nullptr;
  const float* bias = nullptr;
  int64_t K = 0;
  /// Each slice's n-gram ids with their kept words, taken from here and put back, so that the
  /// words a slice looked up serve the next texts too.
  std::mutex pool_mutex;
  std::vector<std::unique_ptr<NgramIds>> pool;
  std::unique_ptr<NgramIds> take() {
    std::lock_guard<std::mutex> lock(pool_mutex);
    if (pool.empty()) return std::make_unique<NgramIds>(dynamic_cast<const NgramTokenizer&>(*tokenizer), vocab);
    auto ids = std::move(pool.back());
    pool.pop_back();
    return ids;
  }
  void give_back(std::unique_ptr<NgramIds> ids) {
    std::lock_guard<std::mutex> lock(pool_mutex);
    pool.push_back(std::move(ids));
  }
};

LinearAnswers::LinearAnswers(std::unique_ptr<State> state) : s_(std::move(state)) {}
LinearAnswers::~LinearAnswers() = default;

namespace {

// The tensor `name` of the weights file as `dtype` [sizes...] (contiguous and aligned), or null.
const void* tensor_data(const std::map<std::string, RawTensor>& tensors, const std::string& name,
                        const std::string& dtype, const std::vector<int64_t>& sizes) {
  auto it = tensors.find(name);
  if (it == tensors.end() || it->second.sizes != sizes) return nullptr;
  return it->second.data(dtype);
}

}  // namespace

std::unique_ptr<LinearAnswers> LinearAnswers::open(const std::string& path, const std::string& checkpoint) {
  auto s = std::make_unique<State>();
  const RunDirectory dir = RunDirectory::open(path);
  if (std::filesystem::exists(dir.file("deploy.json"))) return nullptr;  // a deploy artifact: LibTorch's
  try {
    s->config = parse_config(read_json_file(dir.config_path()), LinearSchema());
  } catch (const NotLinear&) {
    return nullptr;
  }
  const TaskConfig& task = s->config.task;
  if (task.type != "multiclass" && task.type != "binary" && task.type != "multilabel" && task.type != "regression")
    return nullptr;
  // What a linear run's config allows (ltk-train checked it): each text whole, on the CPU ("auto"
  // included: a linear run is answered fastest there). A config edited since goes to LibTorch,
  // which refuses what it should.
  const DataConfig& data = s->config.data;
  if (data.max_len != 0 || data.special_tokens || data.long_text != "truncate" || !data.text_pair_column.empty() ||
      !data.text_pair_field.empty() || data.vocab.source != "corpus" ||
      (s->config.device != "auto" && s->config.device != "cpu"))
    return nullptr;
  use_run_tokenizer_file(dir, s->config.data.tokenizer);
  s->tokenizer = make_run_tokenizer(s->config.data.tokenizer, s->config.model);
  s->vocab = Vocabulary::load(dir.vocab_path());
  LabelMap labels = task.type == "regression" ? LabelMap{} : LabelMap::load(dir.labels_path());
  if (task.type == "binary" && labels.size() != 2) return nullptr;  // LibTorch's task says what is wrong
  s->head = AnswerHead(task.type, labels);
  if (task.type == "binary") {
    s->head.positive = positive_label_index(task, labels);
    s->head.thresholds = configured_thresholds(task, {labels.name(s->head.positive)});
  } else if (task.type == "multilabel") {
    s->head.thresholds = configured_thresholds(task, labels.names());
  }
  const std::string weights_path = dir.checkpoint(checkpoint);
  // The weights, mapped: float32 [V, K] and [K], idf float64 [V], each block's flag int64 [V].
  s->weights = MappedFile(weights_path);
  const auto tensors = read_raw_tensors(
      std::string_view(reinterpret_cast<const char*>(s->weights.data()), s->weights.size()), weights_path);
  const int64_t V = s->vocab.size();
  s->K = s->head.width();
  s->W = static_cast<const float*>(tensor_data(tensors, "weight.weight", "float32", {V, s->K}));
  s->bias = static_cast<const float*>(tensor_data(tensors, "bias", "float32", {s->K}));
  const auto* idf = static_cast<const double*>(tensor_data(tensors, "idf", "float64", {V}));
  const auto& options = s->config.model.options;
  const bool two_blocks =
      options.at("ngram_range").at(1).get<int64_t>() > 0 && options.at("char_ngram_range").at(1).get<int64_t>() > 0;
  const auto* block = two_blocks ? static_cast<const int64_t*>(tensor_data(tensors, "block", "int64", {V})) : nullptr;
  if (!s->W || !s->bias || !idf || (two_blocks && !block)) return nullptr;  // float64 weights, or a file LibTorch reads
  for (int64_t f = 0; two_blocks && f < V; ++f)
    if (block[f] != 0 && block[f] != 1)
      throw CheckpointError(weights_path + ": tensor 'block' holds a value other than 0 or 1");
  s->table = TfIdfTable{V, options.at("sublinear_tf").get<bool>(), idf, block};
  TaskFit fit = read_task_fit(dir, weights_path);
  if (!fit.temperature.empty()) s->head.temperature = std::move(fit.temperature);
  if (!fit.thresholds.empty()) s->head.thresholds = std::move(fit.thresholds);
  s->head.check(dir.file("task.json"));
  return std::unique_ptr<LinearAnswers>(new LinearAnswers(std::move(s)));
}

std::vector<std::string> LinearAnswers::answer_texts(const std::vector<const TextInput*>& inputs, int64_t top_k,
                                                     int threads) const {
  const auto n = static_cast<int64_t>(inputs.size());
  std::vector<std::string> out(static_cast<size_t>(n));
  State& s = *s_;
  parallel_chunks(n, std::max(threads, 1), 256, [&](int64_t begin, int64_t end) {
    FeatureCounts& counts = FeatureCounts::of_thread(s.table.vocab_size);
    std::vector<double> values;
    std::vector<int32_t> ids;
    std::unique_ptr<NgramIds> terms = s.take();
    std::vector<float> logits(static_cast<size_t>(s.K)), scores(logits.size());
    for (int64_t i = begin; i < end; ++i) {
      const TextInput& in = *inputs[static_cast<size_t>(i)];
      if (!in.error.empty()) continue;
      terms->ids(in.text, ids);
      score_text(s.table, ids.data(), static_cast<int64_t>(ids.size()), s.W, s.bias, s.K, logits.data(), counts,
                 values);
      s.head.scores(logits.data(), scores.data());
      std::string& text = out[static_cast<size_t>(i)];
      text.reserve(static_cast<size_t>(24 * s.K + 64));
      s.head.write(scores.data(), top_k, text);
    }
    s.give_back(std::move(terms));  // (not when a slice throws: its cache is dropped with it)
  });
  return out;
}

}  // namespace ltk::infer
