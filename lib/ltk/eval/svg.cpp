#include "ltk/eval/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ltk::svg {

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


// A line chart with axes, ticks and a legend.
std::string line_chart(const std::string& title, const std::string& x_label, const std::vector<Series>& series,
                       int width, int height) {
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

}  // namespace ltk::svg
