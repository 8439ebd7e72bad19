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

void append_round6(std::string& out, double x) {
  // nlohmann::json's own number writer (Grisu2, as dump() calls it): the same bytes as the JSON
  // objects ltk-serve and ltk::Classifier answer with.
  const double r = round6(x);
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

void AnswerHead::scores(const float* logits, float* out) const {
  const int64_t K = width();
  auto z = [&](int64_t k) {
    const double t = temperature.empty() ? 1.0 : temperature[temperature.size() == 1 ? 0 : static_cast<size_t>(k)];
    return static_cast<double>(logits[k]) / t;
  };
  if (type == "regression") {
    out[0] = logits[0];
  } else if (type == "multiclass") {
    double top = z(0), sum = 0;
    for (int64_t k = 1; k < K; ++k) top = std::max(top, z(k));
    for (int64_t k = 0; k < K; ++k) sum += std::exp(z(k) - top);
    for (int64_t k = 0; k < K; ++k) out[k] = static_cast<float>(std::exp(z(k) - top) / sum);
  } else {  // binary, multilabel: each output on its own
    for (int64_t k = 0; k < K; ++k) out[k] = static_cast<float>(1.0 / (1.0 + std::exp(-z(k))));
  }
}

void AnswerHead::write(const float* scores, int64_t top_k, std::string& out) const {
  if (type == "multiclass") return write_multiclass_answer(labels, scores, top_k, out);
  if (type == "binary") return write_binary_answer(labels, positive, thresholds.at(0), scores, top_k, out);
  if (type == "multilabel") return write_multilabel_answer(labels, thresholds, scores, top_k, out);
  write_regression_answer(scores, out);
}

}  // namespace ltk
