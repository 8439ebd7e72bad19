// ltk::Classifier over infer::Predictor: the JSON answers ltk-predict prints, as fields.
#include "ltk/api/classifier.h"

#include <c10/core/InferenceMode.h>

#include <mutex>

#include "ltk/core/error.h"
#include "ltk/infer/predictor.h"
#include "ltk/io/run.h"

namespace ltk {

struct Classifier::Impl {
  infer::Predictor predictor;
  ClassifierOptions options;
  std::vector<std::string> labels;
  mutable std::mutex model_mutex;  // Predictor::answer runs the model: one thread at a time

  Impl(LoadedRun run, const ClassifierOptions& o) : predictor(std::move(run)), options(o) {
    labels = predictor.run().labels.names();
  }

  std::vector<Prediction> answer(const std::vector<infer::TextInput>& inputs, int64_t top_k) const;
};

namespace {

std::vector<LabelScore> label_scores(const nlohmann::ordered_json& object) {
  std::vector<LabelScore> out;
  for (const auto& [label, score] : object.items()) out.push_back(LabelScore{label, score.get<double>()});
  return out;
}

Prediction from_json(nlohmann::ordered_json j) {
  Prediction p;
  if (j.contains("error")) p.error = j["error"].get<std::string>();
  if (j.contains("label")) p.label = j["label"].get<std::string>();
  if (j.contains("score")) p.score = j["score"].get<double>();
  if (j.contains("labels"))
    for (const auto& l : j["labels"]) p.labels.push_back(l.get<std::string>());
  if (!p.label.empty()) p.labels = {p.label};
  if (j.contains("scores")) p.scores = label_scores(j["scores"]);
  if (j.contains("top"))
    for (const auto& t : j["top"]) p.top.push_back(LabelScore{t["label"].get<std::string>(), t["score"].get<double>()});
  if (j.contains("value")) p.value = j["value"].get<double>();
  p.json = std::move(j);
  return p;
}

}  // namespace

std::vector<Prediction> Classifier::Impl::answer(const std::vector<infer::TextInput>& inputs, int64_t top_k) const {
  if (top_k < 0) throw UsageError("top_k must be >= 0, got " + std::to_string(top_k));
  std::vector<const infer::TextInput*> valid;
  for (const auto& in : inputs)
    if (in.error.empty()) valid.push_back(&in);
  const TextDataset data = predictor.encode(valid);  // tokenising needs no lock
  std::vector<nlohmann::ordered_json> answers;
  {
    std::lock_guard<std::mutex> lock(model_mutex);
    c10::InferenceMode inference;
    answers = predictor.answer(data, std::vector<int64_t>(valid.size(), top_k), options.batch_size);
  }
  std::vector<Prediction> out;
  out.reserve(inputs.size());
  size_t row = 0;
  for (const auto& in : inputs) {
    if (!in.error.empty()) {
      Prediction p;
      p.error = in.error;
      p.json = {{"error", in.error}};
      out.push_back(std::move(p));
    } else {
      out.push_back(from_json(std::move(answers[row++])));
    }
  }
  return out;
}

Classifier::Classifier(const std::string& run_dir, const ClassifierOptions& options)
    : impl_(std::make_unique<Impl>(load_run(run_dir, options.checkpoint, options.device), options)) {}
Classifier::~Classifier() = default;
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;

const Classifier::Impl& Classifier::impl() const {
  if (!impl_) throw UsageError("this ltk::Classifier was moved from: use the one it was moved to");
  return *impl_;
}

const std::string& Classifier::task() const {
  return impl().predictor.run().config.task.type;
}
const std::vector<std::string>& Classifier::labels() const {
  return impl().labels;
}
bool Classifier::pairs() const {
  return impl().predictor.pairs();
}

Prediction Classifier::classify(std::string_view text, int64_t top_k) const {
  if (pairs()) throw UsageError("this run reads sentence pairs: use classify_pair(text, pair)");
  Prediction p = std::move(impl().answer({infer::make_input(text)}, top_k).front());
  if (!p.ok()) throw DataError("cannot classify this text: " + p.error);
  return p;
}

Prediction Classifier::classify_pair(std::string_view text, std::string_view pair, int64_t top_k) const {
  if (!pairs()) throw UsageError("this run reads single texts: use classify(text)");
  Prediction p = std::move(impl().answer({infer::make_input(text, pair, true)}, top_k).front());
  if (!p.ok()) throw DataError("cannot classify this pair: " + p.error);
  return p;
}

std::vector<Prediction> Classifier::classify_batch(const std::vector<std::string>& texts, int64_t top_k) const {
  if (pairs()) throw UsageError("this run reads sentence pairs: use classify_pairs");
  std::vector<infer::TextInput> inputs;
  inputs.reserve(texts.size());
  for (const auto& t : texts) inputs.push_back(infer::make_input(t));
  return impl().answer(inputs, top_k);
}

std::vector<Prediction> Classifier::classify_pairs(const std::vector<std::pair<std::string, std::string>>& pairs,
                                                   int64_t top_k) const {
  if (!this->pairs()) throw UsageError("this run reads single texts: use classify_batch");
  std::vector<infer::TextInput> inputs;
  inputs.reserve(pairs.size());
  for (const auto& [a, b] : pairs) inputs.push_back(infer::make_input(a, b, true));
  return impl().answer(inputs, top_k);
}

}  // namespace ltk
