// SVG primitives of the HTML report: self-contained charts as inline <svg> strings.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace ltk::svg {

/// Escapes &, <, > and " for HTML text and attributes.
std::string escape(const std::string& s);

struct Series {
  std::string name;
  std::string color;
  std::vector<std::pair<double, double>> points;
};

/// A line chart with axes, ticks and a legend.
std::string line_chart(const std::string& title, const std::string& x_label, const std::vector<Series>& series,
                       int width = 560, int height = 260);
/// Horizontal bars, one per name.
std::string bar_chart(const std::string& title, const std::vector<std::string>& names, const std::vector<double>& values);
/// A confusion matrix as a heatmap ([gold][predicted] counts).
std::string heatmap(const std::string& title, const std::vector<std::string>& names, const nlohmann::json& matrix);
/// A reliability diagram from Calibration::to_json().
std::string reliability(const nlohmann::json& calibration);

}  // namespace ltk::svg
