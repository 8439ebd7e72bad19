#include "ltk/eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "ltk/core/error.h"
#include "ltk/core/strings.h"

namespace ltk {

namespace {

std::string tsv_field(std::string s) {
  for (char& c : s)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return s;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

struct Series {
  std::string name;
  std::string color;
  std::vector<std::pair<double, double>> points;
};

// A line chart with axes, ticks and a legend.
std::string line_chart(const std::string& title, const std::string& x_label, const std::vector<Series>& series,
                       int width = 560, int height = 260) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  std::string svg = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img">)", width, height);
  svg += fmt::format(R"(<text x="{}" y="16" font-size="14" text-anchor="middle" font-weight="bold">{}</text>)", width / 2,
                     escape(title));
  if (!std::isfinite(x0)) return svg + R"(<text x="20" y="60">no data</text></svg>)";
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) {  // a flat line sits in the middle of the chart
    double pad = y0 != 0 ? std::fabs(y0) * 0.5 : 1.0;
    y0 -= pad;
    y1 += pad;
  }
  const double L = 60, R = width - 20.0, T = 28, B = height - 40.0;
  auto sx = [&](double x) { return L + (x - x0) / (x1 - x0) * (R - L); };
  auto sy = [&](double y) { return B - (y - y0) / (y1 - y0) * (B - T); };
  svg += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="#fafafa" stroke="#999"/>)", L, T, R - L, B - T);
  for (int i = 0; i <= 4; ++i) {
    double y = y0 + (y1 - y0) * i / 4, x = x0 + (x1 - x0) * i / 4;
    svg += fmt::format(R"(<line x1="{}" y1="{:.1f}" x2="{}" y2="{:.1f}" stroke="#e0e0e0"/>)", L, sy(y), R, sy(y));
    svg += fmt::format(R"(<text x="{}" y="{:.1f}" font-size="10" text-anchor="end">{:.3g}</text>)", L - 4, sy(y) + 3, y);
    svg += fmt::format(R"(<text x="{:.1f}" y="{}" font-size="10" text-anchor="middle">{:.0f}</text>)", sx(x), B + 14, x);
  }
  svg += fmt::format(R"(<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>)", (L + R) / 2, height - 6,
                     escape(x_label));
  int legend = 0;
  for (const auto& s : series) {
    std::string path;
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) path += fmt::format("{}{:.1f},{:.1f} ", path.empty() ? "M" : "L", sx(x), sy(y));
    svg += fmt::format(R"(<path d="{}" fill="none" stroke="{}" stroke-width="2"/>)", path, s.color);
    if (s.points.size() == 1)
      svg += fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)", sx(s.points[0].first),
                         sy(s.points[0].second), s.color);
    svg += fmt::format(R"(<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>)",
                       L + 8 + legend * 130, T + 6, s.color, L + 22 + legend * 130, T + 15, escape(s.name));
    ++legend;
  }
  return svg + "</svg>";
}

std::string bar_chart(const std::string& title, const std::vector<std::string>& names, const std::vector<double>& values) {
  const int row = 18, label_w = 150, width = 560;
  int height = 30 + row * static_cast<int>(names.size()) + 10;
  std::string svg = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img">)", width, height);
  svg += fmt::format(R"(<text x="{}" y="16" font-size="14" text-anchor="middle" font-weight="bold">{}</text>)", width / 2,
                     escape(title));
  for (size_t i = 0; i < names.size(); ++i) {
    double v = std::isfinite(values[i]) ? values[i] : 0.0;
    int y = 26 + row * static_cast<int>(i);
    double w = v * (width - label_w - 60);
    svg += fmt::format(R"(<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>)", label_w - 6, y + 12,
                       escape(names[i].substr(0, 24)));
    svg += fmt::format(R"(<rect x="{}" y="{}" width="{:.1f}" height="{}" fill="#4e79a7"/>)", label_w, y + 2, w, row - 4);
    svg += fmt::format(R"(<text x="{:.1f}" y="{}" font-size="10">{:.3f}</text>)", label_w + w + 4, y + 12, v);
  }
  return svg + "</svg>";
}

std::string heatmap(const std::string& title, const std::vector<std::string>& names, const nlohmann::json& matrix) {
  const size_t C = names.size();
  const int cell = C <= 12 ? 32 : C <= 24 ? 18 : 12, label_w = 130;
  int size = label_w + cell * static_cast<int>(C) + 20;
  std::string svg = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img">)", size,
                                size + 30);
  svg += fmt::format(R"(<text x="{}" y="16" font-size="14" text-anchor="middle" font-weight="bold">{}</text>)", size / 2,
                     escape(title));
  for (size_t g = 0; g < C; ++g) {
    double row_total = 0;
    for (size_t q = 0; q < C; ++q) row_total += matrix[g][q].get<double>();
    svg += fmt::format(R"(<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>)", label_w - 4,
                       30 + static_cast<int>(g) * cell + cell / 2 + 4, escape(names[g].substr(0, 20)));
    for (size_t q = 0; q < C; ++q) {
      double v = matrix[g][q].get<double>();
      double share = row_total > 0 ? v / row_total : 0.0;  // row-normalised: recall on the diagonal
      int shade = static_cast<int>(255 - share * 200);
      svg += fmt::format(R"~(<rect x="{}" y="{}" width="{}" height="{}" fill="rgb({},{},255)" stroke="#fff"><title>{} -> {}: {}</title></rect>)~",
                         label_w + static_cast<int>(q) * cell, 30 + static_cast<int>(g) * cell, cell, cell, shade, shade,
                         escape(names[g]), escape(names[q]), static_cast<int64_t>(v));
      if (cell >= 18 && v > 0)
        svg += fmt::format(R"(<text x="{}" y="{}" font-size="9" text-anchor="middle">{}</text>)",
                           label_w + static_cast<int>(q) * cell + cell / 2, 30 + static_cast<int>(g) * cell + cell / 2 + 3,
                           static_cast<int64_t>(v));
    }
  }
  svg += fmt::format(R"(<text x="{}" y="{}" font-size="11" text-anchor="middle">predicted (columns, in label order) / gold (rows)</text>)",
                     label_w + cell * static_cast<int>(C) / 2, 30 + cell * static_cast<int>(C) + 16);
  return svg + "</svg>";
}

std::string reliability(const nlohmann::json& calibration) {
  const int width = 360, height = 300, L = 50, T = 28, S = 230;
  std::string svg = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img">)", width, height);
  svg += fmt::format(R"(<text x="{}" y="16" font-size="14" text-anchor="middle" font-weight="bold">Reliability (ECE {:.4f})</text>)",
                     width / 2, calibration.value("ece", 0.0));
  svg += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="#fafafa" stroke="#999"/>)", L, T, S, S);
  svg += fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#aaa" stroke-dasharray="4"/>)", L, T + S, L + S, T);
  for (const auto& b : calibration.at("bins")) {
    if (b.at("count").get<int64_t>() == 0) continue;
    double lo = b.at("lower").get<double>(), hi = b.at("upper").get<double>(), acc = b.at("accuracy").get<double>();
    svg += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="#f28e2b" opacity="0.8"><title>{} samples, confidence {:.3f}, accuracy {:.3f}</title></rect>)",
                       L + lo * S + 1, T + S - acc * S, (hi - lo) * S - 2, acc * S, b.at("count").get<int64_t>(),
                       b.at("confidence").get<double>(), acc);
  }
  svg += fmt::format(R"(<text x="{}" y="{}" font-size="11" text-anchor="middle">confidence</text>)", L + S / 2, T + S + 18);
  svg += fmt::format(R"~(<text x="14" y="{}" font-size="11" transform="rotate(-90 14 {})" text-anchor="middle">accuracy</text>)~",
                     T + S / 2, T + S / 2);
  return svg + "</svg>";
}

}  // namespace

int64_t write_badcases(const std::string& path, const Task& task, const LabelMap& labels,
                       const std::vector<Example>& examples, const TextDataset& data, const Predictions& p,
                       int64_t limit) {
  struct Row {
    double key;
    std::string line;
  };
  std::vector<Row> rows;
  const int64_t N = data.size();
  const std::string& type = task.type();
  auto scores = p.scores.contiguous();
  const int64_t K = scores.size(1);
  for (int64_t i = 0; i < N; ++i) {
    const float* s = scores.data_ptr<float>() + i * K;
    const auto& ex = examples[static_cast<size_t>(i)];
    std::string trunc = data.truncated(i) ? "yes" : "no";
    if (type == "regression") {
      double err = std::fabs(s[0] - data.value(i));
      rows.push_back({err, fmt::format("{}\t{}\t{:.6g}\t{:.6g}\t{}", tsv_field(ex.text), data.value(i), s[0], err, trunc)});
      continue;
    }
    auto pred = task.prediction(s);
    if (type == "multilabel") {
      std::vector<std::string> gold, got;
      for (int64_t c : data.labels(i)) gold.push_back(labels.name(c));
      for (const auto& l : pred.at("labels")) got.push_back(l.get<std::string>());
      std::sort(gold.begin(), gold.end());
      std::sort(got.begin(), got.end());
      if (gold == got) continue;
      rows.push_back({0.0, fmt::format("{}\t{}\t{}\t\t{}", tsv_field(ex.text), join(gold, ","), join(got, ","), trunc)});
      continue;
    }
    std::string gold = labels.name(data.label(i));
    std::string got = pred.at("label").get<std::string>();
    if (gold == got) continue;
    double conf = pred.at("score").get<double>();
    rows.push_back({conf, fmt::format("{}\t{}\t{}\t{:.6f}\t{}", tsv_field(ex.text), gold, got, conf, trunc)});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.key > b.key; });
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error("cannot write " + path);
  out << (type == "regression" ? "text\tgold\tpredicted\tabs_error\ttruncated\n"
                               : "text\tgold\tpredicted\tconfidence\ttruncated\n");
  int64_t written = 0;
  for (const auto& r : rows) {
    if (written >= limit) break;
    out << r.line << '\n';
    ++written;
  }
  return written;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (trim(line).empty()) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::parse_error&) {
      throw DataError(fmt::format("{}:{}: not a JSON object", path, n));
    }
  }
  return out;
}

std::string render_report(const ReportInput& in) {
  static const char* colors[] = {"#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2"};
  std::string html = R"(<!DOCTYPE html><html><head><meta charset="utf-8"><title>)" + escape(in.title) +
                     R"(</title><style>body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.grid{display:flex;flex-wrap:wrap;gap:16px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}pre{background:#f6f6f6;padding:10px;font-size:12px;overflow:auto}
</style></head><body>)";
  html += "<h1>" + escape(in.title) + "</h1>";
  // Headline figures.
  if (in.evaluation.is_object()) {
    html += "<h2>" + escape(in.evaluation_name) + "</h2><table><tr>";
    std::string values;
    for (const char* k : {"samples", "accuracy", "macro_f1", "weighted_f1", "top3_accuracy", "roc_auc", "pr_auc",
                          "subset_accuracy", "hamming_loss", "micro_f1", "mae", "rmse", "r2", "ece", "loss"}) {
      if (!in.evaluation.contains(k) || !in.evaluation.at(k).is_number()) continue;
      html += fmt::format("<th>{}</th>", k);
      values += fmt::format("<td>{:.4g}</td>", in.evaluation.at(k).get<double>());
    }
    html += "</tr><tr>" + values + "</tr></table>";
  }
  // Training curves.
  std::vector<Series> loss{{"train loss", colors[0], {}}, {"valid loss", colors[1], {}}}, lr{{"lr", colors[2], {}}};
  std::vector<Series> valid;
  const char* valid_keys[] = {"accuracy", "macro_f1", "micro_f1", "mae", "rmse"};
  for (const auto& r : in.records) {
    double step = r.value("step", 0.0);
    std::string kind = r.value("kind", "");
    if (kind == "train") {
      loss[0].points.emplace_back(step, r.value("loss", NAN));
      lr[0].points.emplace_back(step, r.value("lr", NAN));
    } else if (kind == "valid") {
      loss[1].points.emplace_back(step, r.value("loss", NAN));
      for (size_t k = 0; k < std::size(valid_keys); ++k) {
        if (!r.contains(valid_keys[k])) continue;
        auto it = std::find_if(valid.begin(), valid.end(), [&](const Series& s) { return s.name == valid_keys[k]; });
        if (it == valid.end()) {
          valid.push_back({valid_keys[k], colors[(3 + valid.size()) % 6], {}});
          it = valid.end() - 1;
        }
        it->points.emplace_back(step, r.at(valid_keys[k]).get<double>());
      }
    }
  }
  html += "<h2>Training</h2><div class=\"grid\">" + line_chart("Loss", "step", loss) + line_chart("Learning rate", "step", lr) +
          line_chart("Validation", "step", valid) + "</div>";
  // Per-class figures, confusion matrix, calibration.
  if (in.evaluation.is_object()) {
    html += "<h2>Classes and calibration</h2><div class=\"grid\">";
    if (in.evaluation.contains("per_class") && in.evaluation.contains("labels")) {
      std::vector<std::string> names;
      std::vector<double> f1;
      for (const auto& l : in.evaluation.at("labels")) {
        names.push_back(l.get<std::string>());
        f1.push_back(in.evaluation.at("per_class").at(names.back()).value("f1", 0.0));
      }
      html += bar_chart("F1 per class", names, f1);
      if (in.evaluation.contains("confusion")) html += heatmap("Confusion matrix (row-normalised)", names, in.evaluation.at("confusion"));
    }
    if (in.evaluation.contains("calibration")) html += reliability(in.evaluation.at("calibration"));
    html += "</div>";
    if (in.evaluation.contains("top_confusions") && !in.evaluation.at("top_confusions").empty()) {
      html += "<h2>Most frequent confusions</h2><table><tr><th>gold</th><th>predicted</th><th>count</th></tr>";
      for (const auto& c : in.evaluation.at("top_confusions"))
        html += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", escape(c.at("gold").get<std::string>()),
                            escape(c.at("predicted").get<std::string>()), c.at("count").get<int64_t>());
      html += "</table>";
    }
  }
  if (!in.data_stats.empty()) {
    html += "<h2>Data</h2><table>";
    for (const auto& [k, v] : in.data_stats) html += "<tr><th>" + escape(k) + "</th><td>" + escape(v) + "</td></tr>";
    html += "</table>";
  }
  html += "<h2>Config</h2><pre>" + escape(in.config.dump(2)) + "</pre></body></html>\n";
  return html;
}

std::string write_run_report(const std::string& run_dir, const nlohmann::json& config, const EvalReport* evaluation,
                             const std::string& evaluation_name,
                             const std::vector<std::pair<std::string, std::string>>& data_stats,
                             const std::string& path) {
  ReportInput in;
  in.title = "ltk run " + config.value("name", std::string("?")) + " (" + run_dir + ")";
  in.config = config;
  std::string metrics = run_dir + "/metrics.jsonl";
  std::ifstream probe(metrics);
  if (probe) in.records = read_jsonl(metrics);
  if (evaluation) in.evaluation = evaluation->metrics;
  in.evaluation_name = evaluation_name;
  in.data_stats = data_stats;
  std::string out = path.empty() ? run_dir + "/report.html" : path;
  std::ofstream f(out, std::ios::binary);
  f << render_report(in);
  if (!f) throw Error("cannot write " + out);
  return out;
}

std::vector<int> per_sample_correct(const Task& task, const TextDataset& data, const Predictions& p) {
  if (task.type() == "regression")
    throw ConfigError("comparing runs needs a classification task (task.type is regression)");
  std::vector<int> out;
  auto scores = p.scores.contiguous();
  const int64_t K = scores.size(1);
  for (int64_t i = 0; i < data.size(); ++i) {
    auto pred = task.prediction(scores.data_ptr<float>() + i * K);
    if (task.type() == "multilabel") {
      auto gold = data.labels(i);
      std::vector<int64_t> got;
      int64_t c = 0;
      for (const auto& [name, v] : pred.at("scores").items()) {
        if (v.get<double>() >= task.config().threshold) got.push_back(c);
        ++c;
      }
      std::sort(gold.begin(), gold.end());
      out.push_back(gold == got);
    } else {
      int64_t best = 0;
      const float* s = scores.data_ptr<float>() + i * K;
      if (task.type() == "binary") {
        bool pos = s[0] >= task.config().threshold;
        int64_t gold_pos = data.label(i) == data.positive_class();
        out.push_back(pos == static_cast<bool>(gold_pos));
        continue;
      }
      for (int64_t k = 1; k < K; ++k)
        if (s[k] > s[best]) best = k;
      out.push_back(best == data.label(i));
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> dataset_stats(const std::string& name, const TextDataset& data) {
  int64_t truncated = 0;
  std::vector<int64_t> lengths;
  for (int64_t i = 0; i < data.size(); ++i) {
    truncated += data.truncated(i);
    lengths.push_back(data.full_length(i));
  }
  std::sort(lengths.begin(), lengths.end());
  auto pct = [&](double q) { return lengths.empty() ? 0 : lengths[static_cast<size_t>(q * static_cast<double>(lengths.size() - 1))]; };
  return {{name + " samples", std::to_string(data.size()) + " (" + data.source() + ")"},
          {name + " tokens per sample", fmt::format("p50 {}  p90 {}  p99 {}  max {}", pct(0.5), pct(0.9), pct(0.99),
                                                     lengths.empty() ? 0 : lengths.back())},
          {name + " truncated", std::to_string(truncated)}};
}

}  // namespace ltk
