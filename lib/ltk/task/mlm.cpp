// Masked-language-model pretraining: the masking recipe, the loss on the selected positions, and
// masked-token accuracy and perplexity.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "ltk/core/error.h"
#include "ltk/task/task.h"
#include "ltk/task/task_util.h"

namespace ltk {

namespace F = torch::nn::functional;

namespace {

/// splitmix64: a small, portable generator (the same masks on every machine and library).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

}  // namespace

MaskedLmTask::MaskedLmTask(TaskConfig config) : Task(std::move(config), {}) {}

void MaskedLmTask::set_vocabulary(const Vocabulary& vocab) {
  vocab_size_ = vocab.size();
  mask_id_ = vocab.special_id("[MASK]");
  cls_id_ = vocab.special_id("[CLS]");
  sep_id_ = vocab.special_id("[SEP]");
  pad_id_ = vocab.pad_id();
  if (mask_id_ < 0 || cls_id_ < 0 || sep_id_ < 0)
    throw DataError("task.type \"mlm\" needs a WordPiece vocabulary with [MASK], [CLS] and [SEP]");
}

void MaskedLmTask::prepare_batch(Batch& batch, uint64_t seed) const {
  if (mask_id_ < 0) throw Error("mlm: set_vocabulary was not called");
  const int64_t B = batch.ids.size(0), T = batch.ids.size(1);
  auto ids = batch.ids.clone();
  auto labels = torch::full({B, T}, kIgnore, torch::kLong);
  int64_t* ip = ids.data_ptr<int64_t>();
  int64_t* lp = labels.data_ptr<int64_t>();
  const int64_t* len = batch.lengths.data_ptr<int64_t>();
  const bool* cont = batch.continues.defined() ? batch.continues.data_ptr<bool>() : nullptr;
  const bool whole = config_.whole_word && cont;
  const double p = config_.mask_prob;
  const int64_t* index = batch.indices.data_ptr<int64_t>();
  std::vector<std::pair<int64_t, int64_t>> words;  // [start, end) of each word of a sample
  for (int64_t b = 0; b < B; ++b) {
    // Each sample's masks from (seed, its index) alone: the same whatever batch it lands in.
    Rng rng(seed ^ (static_cast<uint64_t>(index[b]) * 0x9E3779B97F4A7C15ull));
    int64_t* row = ip + b * T;
    auto special = [&](int64_t t) { return row[t] == cls_id_ || row[t] == sep_id_ || row[t] == pad_id_; };
    std::vector<char> selected(static_cast<size_t>(len[b]), 0);
    if (!whole) {  // every piece on its own, with probability p (DataCollatorForLanguageModeling)
      for (int64_t t = 0; t < len[b]; ++t) selected[static_cast<size_t>(t)] = !special(t) && rng.uniform() < p;
    } else {  // whole words, in a random order, up to round(p x length) pieces (DataCollatorForWholeWordMask)
      words.clear();
      for (int64_t t = 0; t < len[b]; ++t) {
        if (special(t)) continue;
        if (!cont[b * T + t] || words.empty() || words.back().second != t) words.emplace_back(t, t + 1);
        else words.back().second = t + 1;
      }
      for (size_t i = words.size(); i > 1; --i) std::swap(words[i - 1], words[static_cast<size_t>(rng.below(static_cast<int64_t>(i)))]);
      // As Hugging Face counts: the length with [CLS] and [SEP], Python's round (half to even), at
      // most 512.
      const auto target = std::min<int64_t>(
          512, std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(static_cast<double>(len[b]) * p))));
      int64_t taken = 0;
      for (const auto& [start, end] : words) {
        if (taken >= target) break;
        if (taken + (end - start) > target) continue;
        for (int64_t t = start; t < end; ++t) selected[static_cast<size_t>(t)] = 1;
        taken += end - start;
      }
    }
    for (int64_t t = 0; t < len[b]; ++t) {
      if (!selected[static_cast<size_t>(t)]) continue;
      lp[b * T + t] = row[t];
      double r = rng.uniform();
      if (r < 0.8) row[t] = mask_id_;
      else if (r < 0.9) row[t] = rng.below(vocab_size_);
    }
  }
  batch.ids = ids;
  batch.labels = labels;
}

torch::Tensor MaskedLmTask::loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  if (!targets.defined()) throw TrainError("mlm loss: the batch has no masked targets (prepare_batch)");
  auto gold = targets.masked_select(targets != kIgnore);
  if (outputs.dim() != 2 || outputs.size(0) != gold.size(0))
    throw TrainError(fmt::format("mlm loss: {} logit rows for {} masked positions", task_detail::shape_of(outputs),
                                 gold.size(0)));
  if (gold.numel() == 0) return outputs.sum() * 0.0;  // nothing selected in this batch
  return F::cross_entropy(outputs, gold,
                          task_detail::with_reduction(F::CrossEntropyFuncOptions(), config_.reduction));
}

torch::Tensor MaskedLmTask::per_sample_loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  // Per masked position (what evaluation sums).
  return F::cross_entropy(outputs, targets.masked_select(targets != kIgnore), F::CrossEntropyFuncOptions().reduction(torch::kNone));
}

nlohmann::ordered_json MaskedLmTask::prediction(const float*) const {
  throw ConfigError("an mlm run predicts masked pieces: ltk-predict --run RUN --top-k K fills each [MASK]");
}

EvalReport MaskedLmTask::evaluate(const Predictions& p) const {
  EvalReport r;
  const double tokens = static_cast<double>(std::max<int64_t>(p.tokens, 1));
  const double loss = p.loss_sum / tokens;
  r.metrics = {{"samples", p.samples},
               {"masked_tokens", p.tokens},
               {"loss", task_detail::round6(loss)},
               {"masked_accuracy", task_detail::round6(static_cast<double>(p.correct) / tokens)},
               {"perplexity", task_detail::round6(std::exp(loss))}};
  r.table = fmt::format("masked pieces {}: accuracy {:.4f}, perplexity {:.2f}, loss {:.4f}\n", p.tokens,
                        static_cast<double>(p.correct) / tokens, std::exp(loss), loss);
  return r;
}

bool MaskedLmTask::is_correct(const float*, const TextDataset&, int64_t) const {
  throw ConfigError("an mlm task is scored per masked piece, not per sample");
}

std::optional<BadCase> MaskedLmTask::bad_case(const float*, const TextDataset&, int64_t) const { return std::nullopt; }

}  // namespace ltk
