// Text to ids: tokenise, truncate, numericalise, encode targets (the one encoding loop).
#include "ltk/data/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "ltk/core/error.h"
#include "ltk/core/parallel.h"
#include "ltk/core/strings.h"
#include "ltk/data/utf8.h"

namespace ltk {

void truncate_ids(std::vector<int32_t>& ids, int64_t max_len, const std::string& policy) {
  if (max_len <= 0 || static_cast<int64_t>(ids.size()) <= max_len) return;
  auto n = static_cast<size_t>(max_len);
  if (policy == "head") {
    ids.resize(n);
  } else if (policy == "tail") {
    ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(n));
  } else if (policy == "head+tail") {
    size_t head = (n + 1) / 2, tail = n - head;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(head), ids.end() - static_cast<std::ptrdiff_t>(tail));
  } else {
    throw ConfigError("config key 'data.truncation': unknown policy '" + policy + "'");
  }
}

std::pair<int64_t, int64_t> pair_lengths(int64_t a, int64_t b, int64_t budget) {
  // Hugging Face's fast tokenizers (what AutoTokenizer loads): when both do not fit, the shorter
  // keeps all it can up to half the budget, the longer takes the rest; when both exceed half,
  // the shorter keeps budget/2 and the longer the other half (the odd one goes to the second
  // text at a tie).
  budget = std::max<int64_t>(budget, 0);
  int64_t n1 = a, n2 = b;
  if (n1 + n2 <= budget) return {a, b};
  const bool swapped = n1 > n2;
  if (swapped) std::swap(n1, n2);  // n1: the shorter
  n2 = n1 > budget ? n1 : std::max(n1, budget - n1);
  if (n1 + n2 > budget) {
    n1 = budget / 2;
    n2 = n1 + budget % 2;
  }
  if (swapped) std::swap(n1, n2);
  return {std::min(n1, a), std::min(n2, b)};
}

void truncate_pair(std::vector<int32_t>& a, std::vector<int32_t>& b, int64_t budget) {
  const auto [n1, n2] = pair_lengths(static_cast<int64_t>(a.size()), static_cast<int64_t>(b.size()), budget);
  a.resize(static_cast<size_t>(n1));
  b.resize(static_cast<size_t>(n2));
}

std::vector<int64_t> window_starts(int64_t n, int64_t size, int64_t overlap) {
  if (size <= 0 || overlap < 0 || overlap >= size)
    throw ConfigError(
        fmt::format("data.window_overlap {} must be at least 0 and below the window's {} tokens", overlap, size));
  std::vector<int64_t> starts{0};
  while (starts.back() + size < n) starts.push_back(starts.back() + size - overlap);
  return starts;
}

std::unique_ptr<Tokenizer> word_segmenter(const TaskConfig& task) {
  if (task.type != "mlm" || !task.whole_word || task.word_segmenter != "jieba") return nullptr;
  TokenizerConfig jieba;
  jieba.type = "jieba";
  return make_tokenizer(jieba);
}

EncodeOptions encode_options(const DataConfig& data, const Vocabulary& vocab, const TaskConfig* task,
                             const Tokenizer* segmenter) {
  EncodeOptions o{data.max_len, data.truncation, -1, -1};
  o.pairs = !data.text_pair_column.empty() || !data.text_pair_field.empty();
  o.windows = data.long_text == "window";
  o.window_overlap = data.window_overlap;
  o.window_pool = data.window_pool;
  if (task && task->type == "mlm") {
    o.word_flags = task->whole_word;
    o.words = segmenter;
    o.pack = task->pack;
  }
  if (data.special_tokens) {
    o.cls_id = vocab.special_id("[CLS]");
    o.sep_id = vocab.special_id("[SEP]");
    if (o.cls_id < 0 || o.sep_id < 0)
      throw DataError("data.special_tokens: the vocabulary (data.tokenizer.dict) has no [CLS] or [SEP] token");
  }
  return o;
}

TokenCounter count_tokens(const std::vector<Example>& examples, const Tokenizer& tokenizer) {
  TokenCounter counter;
  std::string scratch;
  std::vector<std::string_view> tokens;
  for (const auto& ex : examples) {
    tokenizer.tokenize(ex.text, scratch, tokens);
    for (auto t : tokens) counter.add(t);
  }
  return counter;
}

namespace {

/// The id of class `name`; a DataError naming the file and line when the model has no such label.
int64_t class_id_of(const LabelMap& labels, std::string_view name, const std::string& source, int64_t line) {
  int64_t id = labels.find(name);
  if (id < 0) {
    std::vector<std::string> known = labels.names();
    std::string listed = known.size() <= 20 ? quoted_list(known) : fmt::format("{} labels", known.size());
    throw DataError(
        fmt::format("{}:{}: label '{}' is not one of the model's labels ({}){}; "
                    "a model can only be evaluated on the labels it was trained on",
                    source, line, name, listed, did_you_mean(std::string(name), known)));
  }
  return id;
}

/// The targets of one example: class ids (one, or a multi-hot list) or a regression value.
void example_targets(const Example& ex, const TargetEncoder* targets, const std::string& source,
                     std::vector<int64_t>& classes, float& value) {
  classes.clear();
  value = 0;
  const TargetKind kind = targets ? targets->kind : TargetKind::none;
  if (kind == TargetKind::class_id || kind == TargetKind::binary) {
    classes.push_back(class_id_of(*targets->labels, ex.label, source, ex.line));
  } else if (kind == TargetKind::multi_hot) {
    for (auto part : split(ex.label, targets->separator.empty() ? ',' : targets->separator[0])) {
      part = trim(part);
      if (part.empty()) continue;  // "a,,b" and a trailing separator are tolerated
      int64_t id = class_id_of(*targets->labels, part, source, ex.line);
      if (std::find(classes.begin(), classes.end(), id) == classes.end()) classes.push_back(id);
    }
  } else if (kind == TargetKind::value) {
    value = parse_target_value(ex.label, source, ex.line);
  }
}

/// Whole-word flags of CJK pieces from a word segmenter. The segmenter decides only which CJK
/// ideographs belong together: WordPiece makes each one a piece of its own, in text order, so the
/// k-th ideograph piece is the k-th ideograph of the segmenter's words (the pieces, and so the
/// ids, stay exactly those of the tokenizer).
void mark_cjk_words(const std::string& text, const std::vector<std::string_view>& tokens, const Tokenizer& segmenter,
                    std::vector<uint8_t>& word_flags) {
  std::string word_scratch;
  std::vector<std::string_view> words;
  segmenter.tokenize(text, word_scratch, words);
  std::vector<uint8_t> cjk_continues;
  for (auto w : words) {
    size_t i = 0, k = 0;
    while (i < w.size()) {
      char32_t c = utf8::next(w, i);
      if (is_cjk_ideograph(c)) cjk_continues.push_back(k > 0);
      ++k;
    }
  }
  size_t next = 0;
  for (size_t k = 0; k < tokens.size() && next < cjk_continues.size(); ++k) {
    size_t i = 0;
    char32_t c = utf8::next(tokens[k], i);
    if (i == tokens[k].size() && is_cjk_ideograph(c)) word_flags[k] = cjk_continues[next++];
  }
}

/// Truncates ids and their whole-word flags alike to `budget`; a kept piece after a cut starts a word.
void truncate_with_flags(std::vector<int32_t>& ids, std::vector<uint8_t>& flags, int64_t budget,
                         const std::string& truncation) {
  std::vector<int32_t> keep(ids.size());
  for (size_t k = 0; k < keep.size(); ++k) keep[k] = static_cast<int32_t>(k);
  truncate_ids(keep, budget, truncation);
  std::vector<int32_t> kept_ids;
  std::vector<uint8_t> kept_flags;
  for (size_t i = 0; i < keep.size(); ++i) {
    const auto k = static_cast<size_t>(keep[i]);
    kept_ids.push_back(ids[k]);
    kept_flags.push_back(i == 0 || keep[i] != keep[i - 1] + 1 ? 0 : flags[k]);
  }
  ids.swap(kept_ids);
  flags.swap(kept_flags);
}

/// task.pack: texts as [CLS] a [SEP] b [SEP] ... sequences of at most max_len; a text that does
/// not fit starts the next sequence.
class Packer {
 public:
  Packer(TextDataset& data, const EncodeOptions& options, bool flags) : data_(data), options_(options), flags_(flags) {}

  void add(const std::vector<int32_t>& ids, const std::vector<uint8_t>& flags, int64_t line) {
    if (ids_.size() > 1 && static_cast<int64_t>(ids_.size() + ids.size() + 1) > options_.max_len) flush();
    if (ids_.empty()) {
      ids_.push_back(options_.cls_id);
      flags_out_.push_back(0);
      line_ = line;
    }
    ids_.insert(ids_.end(), ids.begin(), ids.end());
    ids_.push_back(options_.sep_id);
    if (flags_) flags_out_.insert(flags_out_.end(), flags.begin(), flags.end());
    flags_out_.push_back(0);
  }

  void flush() {
    if (ids_.empty()) return;
    data_.add(ids_, static_cast<int64_t>(ids_.size()), {}, 0.0f, line_);
    if (flags_) data_.set_word_flags(flags_out_);
    ids_.clear();
    flags_out_.clear();
  }

 private:
  TextDataset& data_;
  const EncodeOptions& options_;
  const bool flags_;
  std::vector<int32_t> ids_;
  std::vector<uint8_t> flags_out_;
  int64_t line_ = 0;
};

/// The windows of one text's `ids` (options.windows) as samples of `data`, each with its
/// [CLS]/[SEP] when the options have them.
void add_windows(TextDataset& data, const std::vector<int32_t>& ids, const EncodeOptions& options,
                 const std::vector<int64_t>& classes, float value, int64_t line) {
  const bool specials = options.cls_id >= 0;
  const int64_t size = options.max_len - (specials ? 2 : 0), n = static_cast<int64_t>(ids.size());
  std::vector<int32_t> window;
  data.begin_text();
  for (int64_t start : window_starts(n, size, options.window_overlap)) {
    window.clear();
    if (specials) window.push_back(options.cls_id);
    window.insert(window.end(), ids.begin() + start, ids.begin() + std::min(n, start + size));
    if (specials) window.push_back(options.sep_id);
    data.add(window, static_cast<int64_t>(window.size()), classes, value, line);
  }
}

/// A run of examples (a slice of a split, encoded by one thread).
struct ExampleSpan {
  const Example* first;
  const Example* last;
  ExampleSpan(const std::vector<Example>& v) : first(v.data()), last(v.data() + v.size()) {}
  ExampleSpan(const Example* f, const Example* l) : first(f), last(l) {}
  const Example* begin() const { return first; }
  const Example* end() const { return last; }
};

/// The one encoding loop: `token_ids(tokens, out)` numericalises a text's tokens, appending their
/// ids to `out` (vocabulary lookups, or the token counter's running ids when the vocabulary is built
/// in the same pass).
template <typename TokenIds>
TextDataset encode_with(ExampleSpan examples, const std::string& source, const Tokenizer& tokenizer,
                        TokenIds&& token_ids, const TargetEncoder* targets, const EncodeOptions& options) {
  TextDataset data;
  TargetKind kind = targets ? targets->kind : TargetKind::none;
  const LabelMap* labels = targets ? targets->labels : nullptr;
  if (kind != TargetKind::none && kind != TargetKind::value && !labels)
    throw Error("encoding a dataset: a class task needs a label map");
  data.set_source(source, kind, labels ? labels->size() : 0, targets ? targets->positive : 1);
  const bool specials = options.cls_id >= 0;
  const bool pairs = options.pairs;
  if (pairs && !specials) throw ConfigError("sentence pairs need data.special_tokens ([CLS] a [SEP] b [SEP])");
  std::string scratch;
  std::vector<std::string_view> tokens;
  std::vector<int32_t> ids, second;
  std::vector<int64_t> classes;
  std::vector<uint8_t> flags;
  std::vector<uint8_t>* flags_out = options.word_flags ? &flags : nullptr;
  if (options.pack && (!specials || pairs || options.max_len < 3))
    throw ConfigError("task.pack needs special tokens, single texts and data.max_len >= 3");
  if (options.windows) {
    if (pairs || options.pack || options.word_flags || options.max_len <= (specials ? 2 : 0))
      throw ConfigError(
          "data.long_text \"window\" needs single texts (no pairs, packing or whole-word masking) and "
          "data.max_len above its special tokens");
    data.set_windowing(options.window_pool);
  }
  // The pieces of one text, and (with `word_flags`) whether each continues the previous word.
  auto body = [&](const std::string& text, std::vector<int32_t>& out, std::vector<uint8_t>* word_flags) {
    out.clear();
    if (word_flags) word_flags->clear();
    tokenizer.tokenize(text, scratch, tokens);
    token_ids(tokens, out);
    if (word_flags)
      for (auto t : tokens) word_flags->push_back(t.size() > 2 && t[0] == '#' && t[1] == '#');
    if (word_flags && options.words) mark_cjk_words(text, tokens, *options.words, *word_flags);
  };
  Packer packer(data, options, flags_out != nullptr);
  for (const auto& ex : examples) {
    float value = 0;
    example_targets(ex, targets, source, classes, value);
    body(ex.text, ids, flags_out);
    int64_t full = static_cast<int64_t>(ids.size());
    if (options.windows) {
      add_windows(data, ids, options, classes, value, ex.line);
      continue;
    }
    if (!specials) {
      truncate_ids(ids, options.max_len, options.truncation);
      data.add(ids, full, classes, value, ex.line);
      continue;
    }
    // [CLS] a [SEP] (b [SEP]): max_len counts the special tokens.
    if (pairs != !ex.text_pair.empty())
      throw DataError(fmt::format("{}:{}: {} second text", source, ex.line, pairs ? "no" : "an unexpected"));
    const int64_t budget = options.max_len > 0 ? options.max_len - (pairs ? 3 : 2) : INT64_MAX;
    if (pairs) {
      body(ex.text_pair, second, nullptr);
      full += static_cast<int64_t>(second.size()) + 3;
      truncate_pair(ids, second, budget);
    } else if (flags_out && static_cast<int64_t>(ids.size()) > budget) {  // ids and flags truncated alike
      if (budget == 0) {                                                  // max_len 2: [CLS] [SEP] only
        ids.clear();
        flags.clear();
      } else {
        truncate_with_flags(ids, flags, budget, options.truncation);
      }
      full += 2;
    } else {
      full += 2;
      if (budget == 0) ids.clear();  // max_len 2: [CLS] [SEP] only
      else truncate_ids(ids, budget, options.truncation);
    }
    if (options.pack) {
      packer.add(ids, flags, ex.line);
      continue;
    }
    ids.insert(ids.begin(), options.cls_id);
    ids.push_back(options.sep_id);
    const auto second_start = static_cast<int64_t>(ids.size());
    if (pairs) {
      ids.insert(ids.end(), second.begin(), second.end());
      ids.push_back(options.sep_id);
    }
    data.add(ids, full, classes, value, ex.line);
    if (pairs) data.set_second_start(second_start);
    if (flags_out) {
      flags.insert(flags.begin(), 0);
      flags.push_back(0);
      data.set_word_flags(flags);
    }
  }
  if (options.pack) packer.flush();
  data.shrink_to_fit();
  return data;
}

}  // namespace

namespace {

/// Whether `options` let a split be encoded in slices on several threads.
int64_t slices_for(const EncodeOptions& options, size_t examples) {
  if (options.threads <= 1 || options.pack || options.word_flags || options.pairs) return 1;
  return std::clamp<int64_t>(static_cast<int64_t>(examples) / 2048, 1, options.threads);
}

/// Appends every sample of `part` to `into`, its ids mapped through `table` (empty: as they are).
void append_encoded(TextDataset& into, const TextDataset& part, const std::vector<int32_t>& table) {
  std::vector<int32_t> ids;
  if (part.windowed() && !into.windowed()) into.set_windowing(part.window_pool());
  int64_t text = 0;
  for (int64_t i = 0; i < part.size(); ++i) {
    if (part.windowed() && text < part.num_texts() && part.text_sample(text) == i) {
      into.begin_text();
      ++text;
    }
    const int32_t* from = part.tokens(i);
    ids.assign(from, from + part.length(i));
    if (!table.empty())
      for (auto& id : ids) id = table[static_cast<size_t>(id)];
    into.add(ids, part.full_length(i), part.labels(i), part.value(i), part.source_line(i));
  }
}

/// encode_with over `slices` slices of `examples`, one per thread, each with its own token ids
/// from `make_ids(slice)`; `merge(slice, part)` folds each part into the whole, in order.
template <typename MakeIds, typename Merge>
void encode_in_slices(const std::vector<Example>& examples, int64_t slices, const std::string& source,
                      const Tokenizer& tokenizer, const TargetEncoder* targets, const EncodeOptions& options,
                      MakeIds&& make_ids, Merge&& merge) {
  std::vector<TextDataset> parts(static_cast<size_t>(slices));
  const auto n = static_cast<int64_t>(examples.size());
  parallel_chunks(slices, static_cast<int>(slices), 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s)
      parts[static_cast<size_t>(s)] =
          encode_with(ExampleSpan(examples.data() + n * s / slices, examples.data() + n * (s + 1) / slices), source,
                      tokenizer, make_ids(s), targets, options);
  });
  for (int64_t s = 0; s < slices; ++s) merge(s, parts[static_cast<size_t>(s)]);
}

}  // namespace

TextDataset encode_examples(const std::vector<Example>& examples, const std::string& source,
                            const Tokenizer& tokenizer, const Vocabulary& vocab, const TargetEncoder* targets,
                            const EncodeOptions& options) {
  auto lookup = [&](const std::vector<std::string_view>& tokens, std::vector<int32_t>& out) {
    vocab.append_ids(tokens, out);
  };
  const int64_t slices = slices_for(options, examples.size());
  TextDataset data;
  if (slices == 1) {
    data = encode_with(examples, source, tokenizer, lookup, targets, options);
  } else {
    encode_in_slices(
        examples, slices, source, tokenizer, targets, options, [&](int64_t) { return lookup; },
        [&](int64_t s, const TextDataset& part) {
          if (s == 0)
            data = part;
          else
            append_encoded(data, part, {});
        });
    data.shrink_to_fit();
  }
  data.set_pad_id(vocab.pad_id());
  return data;
}

std::pair<TokenCounter, TextDataset> count_and_encode(const std::vector<Example>& examples, const std::string& source,
                                                      const Tokenizer& tokenizer, const TargetEncoder* targets,
                                                      const EncodeOptions& options) {
  TokenCounter counter;
  // Room for a distinct token in eight texts (a piece of short texts holds about that many):
  // the table then grows a few times, not from its smallest size.
  counter.reserve(std::min<size_t>(examples.size() / 8 + 64, size_t{1} << 20));
  TextDataset data = encode_with(
      examples, source, tokenizer,
      [&](const std::vector<std::string_view>& tokens, std::vector<int32_t>& out) { counter.add_all(tokens, out); },
      targets, options);
  return {std::move(counter), std::move(data)};
}

std::pair<Vocabulary, TextDataset> build_vocab_and_encode(const std::vector<Example>& examples,
                                                          const std::string& source, const Tokenizer& tokenizer,
                                                          int64_t min_freq, int64_t max_size,
                                                          const TargetEncoder* targets, const EncodeOptions& options) {
  // One tokenisation pass: every token is counted and stored under the counter's id; once the
  // vocabulary is known those ids are mapped to its ids (one lookup per distinct token). On
  // several threads each slice counts on its own and the counters are merged in slice order; the
  // vocabulary's order (by count, then bytes) does not depend on how the split was sliced.
  TokenCounter counter;
  TextDataset data;
  const int64_t slices = slices_for(options, examples.size());
  if (slices == 1) {
    data = encode_with(
        examples, source, tokenizer,
        [&](const std::vector<std::string_view>& tokens, std::vector<int32_t>& out) { counter.add_all(tokens, out); },
        targets, options);
  } else {
    std::vector<TokenCounter> counters(static_cast<size_t>(slices));
    encode_in_slices(
        examples, slices, source, tokenizer, targets, options,
        [&](int64_t s) {
          TokenCounter* mine = &counters[static_cast<size_t>(s)];
          return [mine](const std::vector<std::string_view>& tokens, std::vector<int32_t>& out) {
            mine->add_all(tokens, out);
          };
        },
        [&](int64_t s, const TextDataset& part) {
          const TokenCounter& c = counters[static_cast<size_t>(s)];
          std::vector<int32_t> table(c.size());
          for (size_t id = 0; id < table.size(); ++id)
            table[id] = counter.add(c.token(static_cast<int32_t>(id)), c.count(static_cast<int32_t>(id)));
          if (s == 0) data.set_source(part.source(), part.target_kind(), part.num_classes(), part.positive_class());
          append_encoded(data, part, table);
        });
    data.shrink_to_fit();
  }
  Vocabulary vocab = Vocabulary::build(counter, min_freq, max_size);
  std::vector<int32_t> table(counter.size());
  for (size_t i = 0; i < table.size(); ++i) table[i] = vocab.id(counter.token(static_cast<int32_t>(i)));
  data.map_ids(table);
  return {std::move(vocab), std::move(data)};
}

}  // namespace ltk
