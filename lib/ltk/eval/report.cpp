#include "ltk/eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <unordered_map>

#include "ltk/core/error.h"
#include "ltk/core/files.h"
#include "ltk/core/strings.h"
#include "ltk/eval/svg.h"

namespace ltk {

using svg::bar_chart;
using svg::escape;
using svg::heatmap;
using svg::line_chart;
using svg::reliability;
using svg::Series;

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
    } catch (const nlohmann::json::exception&) {
      throw DataError(fmt::format("{}:{}: not a JSON object", path, n));
    }
  }
  return out;
}

namespace {

// The headline figures of the evaluation.
std::string headline_section(const ReportInput& in) {
  std::string html;
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
  return html;
}

// The comparison with the tf-idf linear baseline.
std::string baseline_section(const ReportInput& in) {
  std::string html;
  // The article's first question: does a traditional method already do as well?
  if (in.baseline.is_object() && in.baseline.contains("rows")) {
    const std::string model = in.baseline.value("model", "model");
    html += "<h2>Against the traditional baseline (tf-idf n-grams, linear)</h2><table><tr><th>metric</th><th>" +
            escape(model) + "</th><th>baseline</th><th>difference</th></tr>";
    for (const auto& row : in.baseline.at("rows")) {
      const double d = row.value("difference", 0.0);
      const bool better = row.value("higher_is_better", true) ? d > 0 : d < 0;
      html += fmt::format("<tr><td>{}</td><td>{:.4f}</td><td>{:.4f}</td><td style=\"color:{}\">{:+.4f}</td></tr>",
                          escape(row.value("metric", "")), row.value("model", 0.0), row.value("baseline", 0.0),
                          d == 0 ? "#222" : better ? "#2a7d2a" : "#b22222", d);
    }
    html += "</table><p>The baseline's run: " + escape(in.baseline.value("run", "")) + "</p>";
  }
  return html;
}

// The stress tests: what perturbations that keep the label do to the answers.
std::string stress_section(const ReportInput& in) {
  std::string html;
  // Stress tests: what perturbations that keep the label do to the answers.
  if (in.stress.is_object() && in.stress.contains("perturbations")) {
    const std::string metric = in.stress.value("metric", "accuracy");
    html += fmt::format("<h2>Stress tests (seed {}, {} texts, clean {} {:.4f})</h2><table><tr><th>perturbation</th>"
                        "<th>what it does</th><th>texts changed</th><th>{}</th><th>change</th><th>flipped</th>"
                        "<th>mean probability drop</th></tr>",
                        in.stress.value("seed", 0), in.stress.value("samples", 0), escape(metric),
                        in.stress.value("clean_value", 0.0), escape(metric));
    std::string worst;
    for (const auto& r : in.stress.at("perturbations")) {
      const double v = r.value("value", 0.0), d = v - r.value("clean_value", 0.0);
      html += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td>", escape(r.value("name", "")),
                          escape(r.value("summary", "")), r.value("changed", 0));
      html += r.value("changed", 0) == 0
                  ? std::string("<td colspan=\"4\">applies to no text</td></tr>")
                  : fmt::format("<td>{:.4f}</td><td style=\"color:{}\">{:+.4f}</td><td>{:.1f}%</td><td>{:.4f}</td></tr>",
                                v, d < 0 ? "#b22222" : "#222", d, 100.0 * r.value("flip_rate", 0.0),
                                r.value("mean_prob_drop", 0.0));
      for (const auto& w : r.value("worst", nlohmann::json::array()))
        worst += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} &rarr; {}</td><td>{:.3f}</td></tr>",
                             escape(r.value("name", "")), w.value("line", 0), escape(w.value("text", "")),
                             escape(w.value("perturbed", "")), escape(w.value("clean", "")),
                             escape(w.value("predicted", "")), w.value("prob_drop", 0.0));
    }
    html += "</table>";
    if (!worst.empty())
      html += "<h2>The worst flips</h2><table><tr><th>perturbation</th><th>line</th><th>text</th><th>perturbed</th>"
              "<th>label</th><th>probability drop</th></tr>" + worst + "</table>";
  }
  return html;
}

// The training curves from metrics.jsonl.
std::string training_section(const ReportInput& in) {
  std::string html;
  static const char* colors[] = {"#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2"};
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
  return html;
}

// Per-class figures, the confusion matrix, calibration.
std::string classes_section(const ReportInput& in) {
  std::string html;
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
  return html;
}

}  // namespace

std::string render_report(const ReportInput& in) {
  std::string html = R"(<!DOCTYPE html><html><head><meta charset="utf-8"><title>)" + escape(in.title) +
                     R"(</title><style>body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.grid{display:flex;flex-wrap:wrap;gap:16px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}pre{background:#f6f6f6;padding:10px;font-size:12px;overflow:auto}
</style></head><body>)";
  html += "<h1>" + escape(in.title) + "</h1>";
  html += headline_section(in) + baseline_section(in) + stress_section(in) + training_section(in) + classes_section(in);
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
                             const std::string& path, const nlohmann::json& baseline, const nlohmann::json& stress) {
  ReportInput in;
  in.baseline = baseline;
  in.stress = stress;
  in.title = "ltk run " + config.value("name", std::string("?")) + " (" + run_dir + ")";
  in.config = config;
  std::string metrics = run_dir + "/metrics.jsonl";
  std::ifstream probe(metrics);
  if (probe) in.records = read_jsonl(metrics);
  if (evaluation) in.evaluation = evaluation->metrics;
  in.evaluation_name = evaluation_name;
  in.data_stats = data_stats;
  std::string out = path.empty() ? run_dir + "/report.html" : path;
  write_file_atomic(out, render_report(in));
  return out;
}

std::vector<std::pair<std::string, std::string>> dataset_stats(const std::string& name, const TextDataset& data) {
  int64_t truncated = 0;
  // A histogram of the lengths, not a vector of them: a shard's split may hold 50 M texts.
  std::unordered_map<int64_t, int64_t> counts;
  for (int64_t i = 0; i < data.size(); ++i) {
    truncated += data.truncated(i);
    ++counts[data.full_length(i)];
  }
  std::vector<std::pair<int64_t, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());
  const int64_t n = data.size();
  auto pct = [&](double q) -> int64_t {  // the length at index q (n - 1) of the sorted lengths
    const auto at = static_cast<int64_t>(q * static_cast<double>(n - 1));
    int64_t seen = 0;
    for (const auto& [len, count] : sorted)
      if ((seen += count) > at) return len;
    return 0;
  };
  std::vector<std::pair<std::string, std::string>> rows = {
      {name + " samples", std::to_string(data.size()) + " (" + data.source() + ")"},
      {name + " tokens per sample", fmt::format("p50 {}  p90 {}  p99 {}  max {}", pct(0.5), pct(0.9), pct(0.99),
                                                sorted.empty() ? 0 : sorted.back().first)},
      {name + " truncated", std::to_string(truncated)}};
  if (data.windowed()) rows.emplace_back(name + " windows", data.windows_summary());
  return rows;
}

}  // namespace ltk
