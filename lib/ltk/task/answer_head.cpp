#include "ltk/task/answer_head.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "ltk/core/error.h"
#include "ltk/core/strings.h"

namespace ltk {

namespace task_detail {

double round6(double x) {
  return std::round(x * 1e6) / 1e6;
}

namespace {

// Whether dump() writes r = n / 1e6 (0 <= n <= 1e6) as n's decimal digits. Grisu2 writes the
// shortest decimal inside r's rounding interval narrowed by a few 2^-64 parts of it, so it misses
// n / 1e6 (writing "0.0006489999999999999" for 649) when n / 1e6 lies within about 1/1000 of an ulp
// of the interval's edge: this answers yes only when it lies within 0.49 ulp of r (about 98% of
// n). fma gives n - r * 1e6 exactly; the test checks every n against dump().
bool dump_writes_digits(int64_t n, double r) {
  const double error = std::fma(-r, 1e6, static_cast<double>(n));
  const double ulp = std::nextafter(r, 2.0) - r;
  return std::fabs(error) < 0.49 * ulp * 1e6;
}

// n / 1e6 for 0 <= n <= 1e6 (a probability rounded to 6 decimals) as dump() writes it when
// dump_writes_digits(): n's digits in fixed notation down to 1e-4 and as "d.ddde-0k" below ("0.0",
// "1.0", "0.000123", "1.2e-05").
void append_micro(std::string& out, int64_t n) {
  if (n == 1000000) {
    out += "1.0";
    return;
  }
  char f[6];  // 0.f[0]f[1]...f[5]
  for (int i = 5; i >= 0; --i, n /= 10) f[i] = static_cast<char>('0' + n % 10);
  int last = 5;
  while (last > 0 && f[last] == '0') --last;
  int first = 0;
  while (first < last && f[first] == '0') ++first;
  if (first < 4) {  // 0.000ddd and longer
    out += "0.";
    out.append(f, static_cast<size_t>(last + 1));
    return;
  }
  out += f[first];  // 1e-05 .. 9.9e-05, 1e-06 .. 9e-06
  if (last > first) {
    out += '.';
    out.append(f + first + 1, static_cast<size_t>(last - first));
  }
  out += first == 4 ? "e-05" : "e-06";
}

}  // namespace

void append_round6(std::string& out, double x) {
  // nlohmann::json's own number writer (Grisu2, as dump() calls it): the same bytes as the JSON
  // objects ltk-serve and ltk::Classifier answer with.
  const double scaled = std::round(x * 1e6);
  const double r = scaled / 1e6;  // round6(x)
  if (scaled <= 1e6 && !std::signbit(scaled) && dump_writes_digits(static_cast<int64_t>(scaled), r)) {
    append_micro(out, static_cast<int64_t>(scaled));  // scores: their digits, without Grisu2
    return;
  }
  if (!std::isfinite(r)) {
    out += "null";
    return;
  }
  char digits[64];
  const char* end = nlohmann::detail::to_chars(digits, digits + sizeof digits, r);
  out.append(digits, static_cast<size_t>(end - digits));
}

void append_json_string(std::string& out, const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == '"' || c == '\\') {
      out += nlohmann::json(s).dump();
      return;
    }
  out += '"';
  out += s;
  out += '"';
}

void append_scores(std::string& out, const LabelMap& labels, const std::vector<double>& rounded, int64_t top_k) {
  out += "\"scores\":{";
  for (int64_t c = 0; c < labels.size(); ++c) {
    if (c) out += ',';
    append_json_string(out, labels.name(c));
    out += ':';
    append_round6(out, rounded[static_cast<size_t>(c)]);
  }
  out += '}';
  if (top_k <= 0) return;
  std::vector<int64_t> order(rounded.size());
  for (size_t c = 0; c < order.size(); ++c) order[c] = static_cast<int64_t>(c);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return rounded[static_cast<size_t>(a)] > rounded[static_cast<size_t>(b)];
  });
  out += ",\"top\":[";
  for (size_t r = 0; r < order.size() && r < static_cast<size_t>(top_k); ++r) {
    if (r) out += ',';
    out += "{\"label\":";
    append_json_string(out, labels.name(order[r]));
    out += ",\"score\":";
    append_round6(out, rounded[static_cast<size_t>(order[r])]);
    out += '}';
  }
  out += ']';
}

}  // namespace task_detail

using namespace task_detail;

void write_multiclass_answer(const LabelMap& labels, const float* scores, int64_t top_k, std::string& out) {
  const int64_t C = labels.size();
  int64_t best = 0;
  std::vector<double> rounded(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    if (scores[c] > scores[best]) best = c;
    rounded[static_cast<size_t>(c)] = round6(scores[c]);
  }
  out += "{\"label\":";
  append_json_string(out, labels.name(best));
  out += ",\"score\":";
  append_round6(out, scores[best]);
  out += ',';
  append_scores(out, labels, rounded, top_k);
  out += '}';
}

void write_binary_answer(const LabelMap& labels, int64_t positive, double threshold, const float* scores, int64_t top_k,
                         std::string& out) {
  const double p = scores[0];
  const bool pos = p >= threshold;
  out += "{\"label\":";
  append_json_string(out, labels.name(pos ? positive : 1 - positive));
  out += ",\"score\":";
  append_round6(out, pos ? p : 1 - p);
  out += ',';
  append_scores(out, labels, {round6(positive == 0 ? p : 1 - p), round6(positive == 1 ? p : 1 - p)}, top_k);
  out += '}';
}

void write_multilabel_answer(const LabelMap& labels, const std::vector<double>& thresholds, const float* scores,
                             int64_t top_k, std::string& out) {
  const int64_t C = labels.size();
  std::vector<double> rounded(static_cast<size_t>(C));
  out += "{\"labels\":[";
  bool first = true;
  for (int64_t c = 0; c < C; ++c) {
    rounded[static_cast<size_t>(c)] = round6(scores[c]);
    if (scores[c] < thresholds[static_cast<size_t>(c)]) continue;
    if (!first) out += ',';
    first = false;
    append_json_string(out, labels.name(c));
  }
  out += "],";
  append_scores(out, labels, rounded, top_k);
  out += '}';
}

void write_regression_answer(const float* scores, std::string& out) {
  out += "{\"value\":";
  append_round6(out, scores[0]);
  out += '}';
}

int64_t positive_label_index(const TaskConfig& config, const LabelMap& labels) {
  if (config.positive_label.empty()) return 1;
  const int64_t positive = labels.find(config.positive_label);
  if (positive < 0)
    throw ConfigError("config key 'task.positive_label': '" + config.positive_label + "' is not one of the labels " +
                      quoted_list(labels.names()));
  return positive;
}

std::vector<double> configured_thresholds(const TaskConfig& config, const std::vector<std::string>& names) {
  const nlohmann::json& t = config.threshold;
  std::vector<double> thresholds(names.size(), t.is_number() ? t.get<double>() : 0.5);
  if (!t.is_object()) return thresholds;
  for (auto it = t.begin(); it != t.end(); ++it) {
    auto found = std::find(names.begin(), names.end(), it.key());
    if (found == names.end())
      throw ConfigError("config key 'task.threshold." + it.key() + "': " +
                        (config.type == "binary"
                             ? "a binary task's threshold is the positive label's, '" + names[0] + "'"
                             : "not a label of the training data" + did_you_mean(it.key(), names)));
    thresholds[static_cast<size_t>(found - names.begin())] = it.value().get<double>();
  }
  return thresholds;
}

AnswerHead::AnswerHead(std::string type_, LabelMap labels_) : type(std::move(type_)), labels(std::move(labels_)) {
  if (type != "multiclass" && type != "binary" && type != "multilabel" && type != "regression")
    throw Error("a task of type " + type + " has no answer head");
}

int64_t AnswerHead::width() const {
  return type == "multiclass" || type == "multilabel" ? labels.size() : 1;
}

void AnswerHead::check(const std::string& where) const {
  const auto K = static_cast<size_t>(width());
  const size_t want = type == "binary" || type == "multilabel" ? K : 0;
  if (thresholds.size() != want)
    throw Error(where + ": " + std::to_string(thresholds.size()) + " thresholds for a " + type + " task of " +
                std::to_string(K) + " outputs");
  if (!temperature.empty() && temperature.size() != 1 && temperature.size() != K)
    throw Error(where + ": " + std::to_string(temperature.size()) + " temperatures for a task of " + std::to_string(K) +
                " outputs (one, or one per output)");
  for (double t : temperature)
    if (!(t > 0) || !std::isfinite(t))
      throw Error(where + ": a temperature of " + std::to_string(t) + " (must be > 0)");
}

void answer_scores(const std::string& type, const std::vector<double>& temperature, const float* logits, int64_t K,
                   float* out) {
  auto z = [&](int64_t k) {
    const double t = temperature.empty() ? 1.0 : temperature[temperature.size() == 1 ? 0 : static_cast<size_t>(k)];
    return static_cast<double>(logits[k]) / t;
  };
  if (type == "regression") {
    std::copy(logits, logits + K, out);
  } else if (type == "multiclass") {
    double top = z(0), sum = 0;
    for (int64_t k = 1; k < K; ++k) top = std::max(top, z(k));
    for (int64_t k = 0; k < K; ++k) sum += std::exp(z(k) - top);
    for (int64_t k = 0; k < K; ++k) out[k] = static_cast<float>(std::exp(z(k) - top) / sum);
  } else {  // binary, multilabel: each output on its own
    for (int64_t k = 0; k < K; ++k) out[k] = static_cast<float>(1.0 / (1.0 + std::exp(-z(k))));
  }
}

void AnswerHead::scores(const float* logits, float* out) const {
  answer_scores(type, temperature, logits, width(), out);
}

void AnswerHead::write(const float* scores, int64_t top_k, std::string& out) const {
  if (type == "multiclass") return write_multiclass_answer(labels, scores, top_k, out);
  if (type == "binary") return write_binary_answer(labels, positive, thresholds.at(0), scores, top_k, out);
  if (type == "multilabel") return write_multilabel_answer(labels, thresholds, scores, top_k, out);
  write_regression_answer(scores, out);
}

}  // namespace ltk
